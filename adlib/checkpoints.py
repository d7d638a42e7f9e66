"""Checkpoint files and random-number states for :func:`adlib.train.fit`.

Checkpoints are written atomically (temporary file in the same folder, flushed, then
``os.replace``) and load with ``torch.load(..., weights_only=True)``. They hold every
random-number state (Python, NumPy, torch, CUDA and the data loader's generator), so a resumed
run continues exactly where it stopped. A run killed while writing leaves only a hidden
``.<name>.*.tmp`` file beside the checkpoint: :func:`clean_stale_temporaries` removes those at the
next start and says so.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file cannot be used (unreadable, wrong format or for another model)."""


# --------------------------------------------------------------------------- RNG state


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """The ``torch.Generator`` objects that drive a DataLoader's shuffling (deduplicated)."""
    found: list[torch.Generator] = []
    candidates = [
        getattr(loader, "generator", None),
        getattr(getattr(loader, "sampler", None), "generator", None),
        getattr(getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None),
    ]
    for gen in candidates:
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def get_rng_state(loader: Any = None) -> dict[str, Any]:
    """Every random-number state needed to continue a run identically, as tensors/lists."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": [g.get_state() for g in _loader_generators(loader)] if loader is not None else [],
    }
    return state


def set_rng_state(state: Mapping[str, Any], loader: Any = None) -> None:
    """Restore the states saved by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    if loader is not None:
        gens = _loader_generators(loader)
        saved = state.get("loader") or []
        if len(saved) != len(gens):
            warnings.warn(
                f"The checkpoint holds {len(saved)} data-loader generator state(s) but the loader has "
                f"{len(gens)}; the resumed shuffling order will differ from an uninterrupted run.",
                stacklevel=3,
            )
        for gen, gen_state in zip(gens, saved, strict=False):
            gen.set_state(gen_state.cpu())


# --------------------------------------------------------------------------- checkpoint files


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` atomically.

    The data go to a temporary file in the same folder, are flushed to disk, then renamed over
    ``path`` with ``os.replace``; a crash or ``KeyboardInterrupt`` at any moment leaves either
    the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file is unreadable or not an adlib training checkpoint.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name and the fix
        raise CheckpointError(
            f"Cannot read checkpoint {path}: {exc}. Delete the file to retrain from scratch."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not an adlib training checkpoint (format {CHECKPOINT_FORMAT}); "
            "delete it to retrain from scratch."
        )
    return state


def restore_state(
    state: Mapping[str, Any],
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: Any,
) -> None:
    """Load a checkpoint's weights, optimizer, scheduler and scaler states in place."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"The checkpoint does not fit this model ({exc}); delete it or pass another path."
        ) from exc
    saved_opts = state.get("optimizers", {})
    if optimizers and set(saved_opts) != set(optimizers):
        raise CheckpointError(
            f"The checkpoint holds optimizers {sorted(saved_opts)} but fit() got {sorted(optimizers)}."
        )
    for name, opt in optimizers.items():
        opt.load_state_dict(saved_opts[name])
    for name, sched in schedulers.items():
        if name in state.get("schedulers", {}):
            sched.load_state_dict(state["schedulers"][name])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that a killed :func:`save_checkpoint` left beside ``path``.

    Only files named like this module's own temporaries (``.<checkpoint name>.*.tmp``) are
    touched; each removal is printed with its size.
    """
    from adlib.tmpfiles import clean_stale

    target = Path(path)
    if not target.parent.is_dir():
        return []
    return clean_stale(target.parent, [f".{target.name}.*.tmp"])
