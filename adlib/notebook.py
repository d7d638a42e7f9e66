"""One call for the ``## Setup`` section of every notebook.

``setup()`` resolves the run profile, seeds every random generator, picks the device, makes
matplotlib safe for headless runs (papermill, nbmake, CI) and prints the versions a reader needs
to reproduce a result::

    from adlib import notebook
    env = notebook.setup(PROFILE, device=DEVICE, seed=SEED)
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any


def _configure_matplotlib() -> None:
    """Use a headless-safe backend when no display is available and set a readable style."""
    import matplotlib

    in_kernel = "ipykernel" in sys.modules
    backend = matplotlib.get_backend().lower()
    if not in_kernel and "inline" not in backend and not os.environ.get("DISPLAY"):
        # Plain Python without a display: never try to open a window.
        matplotlib.use("Agg", force=True)
    if in_kernel:
        try:  # inline figures inside Jupyter (also under papermill / nbmake)
            from IPython import get_ipython

            shell = get_ipython()
            if shell is not None:
                shell.run_line_magic("matplotlib", "inline")
        except Exception:  # noqa: BLE001 - purely cosmetic, never fail the notebook here
            pass
    matplotlib.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 120,
            "figure.figsize": (8.0, 4.5),
            "axes.grid": False,
            "image.cmap": "gray",
            "figure.max_open_warning": 0,
        }
    )


def _versions() -> dict[str, str]:
    import numpy
    import torch

    import adlib

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "adlib": getattr(adlib, "__version__", "unknown"),
    }
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        out["torchvision"] = "not installed"
    return out


def device_name(device: Any) -> str:
    """A human-readable name for a ``torch.device`` (GPU model for CUDA, CPU model otherwise)."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def setup(
    profile: str | None = None,
    device: str = "auto",
    seed: int = 0,
    *,
    quiet: bool = False,
) -> dict[str, Any]:
    """Prepare a notebook run and print the environment.

    Args:
        profile: ``"smoke"``, ``"cpu"`` or ``"paper"``; ``None`` reads ``$ADLIB_PROFILE``
            (default ``"cpu"``).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        seed: seed for Python, NumPy and torch (see :func:`adlib.train.seed_everything`).
        quiet: do not print anything.

    Returns:
        ``{"profile": str, "device": torch.device, "seed": int, "data_root": Path}``.

    Raises:
        ValueError: unknown profile, or ``device="cuda"`` without a CUDA GPU.
    """
    import torch

    from adlib import config
    from adlib.train import seed_everything, select_device

    name = config.resolve_profile(profile)
    dev = select_device(device)
    seed_everything(seed)
    _configure_matplotlib()
    root: Path = config.data_root()

    if not quiet:
        v = _versions()
        cpus = os.cpu_count()
        print(
            f"Python {v['python']} | torch {v['torch']} | torchvision {v['torchvision']} | "
            f"numpy {v['numpy']} | adlib {v['adlib']}"
        )
        print(f"Device: {device_name(dev)} | CPUs: {cpus} | torch threads: {torch.get_num_threads()}")
        print(f"Profile: {name} | seed: {seed} | data root: {root}")
    return {"profile": name, "device": dev, "seed": seed, "data_root": root}
