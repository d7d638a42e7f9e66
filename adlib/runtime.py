"""Seeding and device selection (the two calls every notebook's Setup makes)."""

from __future__ import annotations

import random

import numpy as np
import torch


class DeviceError(ValueError):
    """The requested device is not available on this machine."""


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices).

    Args:
        seed: the seed.
        deterministic: also ask cuDNN for deterministic kernels (slower on GPU, no effect on CPU).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"``, ``"cpu"`` or ``"cuda"`` (``"cuda:1"``) to a ``torch.device``.

    Raises:
        DeviceError: ``"cuda"`` was asked for but no CUDA GPU is visible, or the name is unknown.
    """
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"DEVICE={str(device)!r} but no CUDA GPU is visible to torch {torch.__version__}; "
                'set DEVICE = "auto" or "cpu" (or install a CUDA build of torch).'
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"DEVICE={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return dev
    raise DeviceError(f'Unknown DEVICE={str(device)!r}: expected "auto", "cpu" or "cuda".')
