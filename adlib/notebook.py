"""One call for the ``## Setup`` section of every notebook.

``setup()`` resolves the run profile, seeds every random generator, picks the device, makes
matplotlib safe for headless runs (papermill, nbmake, CI) and prints the versions a reader needs
to reproduce a result::

    from adlib import notebook
    env = notebook.setup(PROFILE, device=DEVICE, seed=SEED, results_dir=RESULTS_DIR)

``setup`` is strict: a parameter that papermill injected but the notebook does not declare, a
``SEED`` that is not an integer or a ``RESULTS_DIR`` that cannot be written stops the notebook
here, before any data is read or anything is written (:func:`check_parameters`).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

_INJECTED_HEADER = "# Parameters"
"""First line of the cell that papermill inserts after the ``parameters`` cell."""


def _assigned_names(source: str) -> list[str]:
    """Names assigned at the top level of a cell's source (``A = 1``, ``A: int = 1``)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def unknown_parameters(history: list[str]) -> list[str]:
    """Parameters set by papermill's injected cell that the ``parameters`` cell never declares.

    Args:
        history: the sources of the executed cells, in order (IPython's ``In``).

    The ``parameters`` cell is the first executed cell that assigns ``PROFILE``; the injected
    cell starts with ``# Parameters``. Without an injected cell nothing is unknown.
    """
    declared: set[str] | None = None
    injected: list[str] = []
    for source in history:
        if not isinstance(source, str):
            continue
        names = _assigned_names(source)
        if source.lstrip().startswith(_INJECTED_HEADER):
            injected += names
        elif declared is None and "PROFILE" in names:
            declared = set(names)
    if declared is None:
        return []
    return [n for n in dict.fromkeys(injected) if n not in declared]


def check_parameters(seed: Any = 0, results_dir: str | os.PathLike | None = None) -> None:
    """Refuse unknown papermill parameters, a non-integer ``SEED`` and an unwritable ``RESULTS_DIR``.

    Raises:
        adlib.experiment.SettingsError: naming the parameter and the fix.
    """
    from adlib.config import SettingsError, check_results_dir

    history: list[str] = []
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            history = list(shell.user_ns.get("In", []))
    except ImportError:  # pragma: no cover - IPython comes with jupyter
        pass
    unknown = unknown_parameters(history)
    if unknown:
        raise SettingsError(
            f"Unknown parameter(s) {', '.join(unknown)}: this notebook's parameters cell does not "
            "declare them, so they would be ignored. Fix: check the spelling against the "
            "parameters cell (papermill --help-notebook <notebook> lists them)."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SettingsError(f"SEED={seed!r} must be an integer. Fix: -p SEED 0.")
    if results_dir is not None:
        check_results_dir(results_dir)


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
    results_dir: str | os.PathLike | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Prepare a notebook run and print the environment.

    Args:
        profile: ``"smoke"``, ``"cpu"`` or ``"paper"``; ``None`` reads ``$ADLIB_PROFILE``
            (default ``"cpu"``).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        seed: seed for Python, NumPy and torch (see :func:`adlib.train.seed_everything`).
        results_dir: the notebook's ``RESULTS_DIR``, created and checked for writing.
        quiet: do not print anything.

    Returns:
        ``{"profile": str, "device": torch.device, "seed": int, "data_root": Path}``.

    Raises:
        ValueError: unknown profile, or ``device="cuda"`` without a CUDA GPU.
        adlib.experiment.SettingsError: see :func:`check_parameters`.
    """
    import torch

    from adlib import config
    from adlib.train import seed_everything, select_device

    check_parameters(seed, results_dir)
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
