"""Synthetic stand-ins written in the ORIGINAL dataset layouts, generated once and cached.

Example:
    >>> from adlib.data.mvtec import read_mvtec
    >>> split = read_mvtec(ensure_synthetic("mvtec", "hazelnut"), "hazelnut")  # doctest: +SKIP

Each dataset family has one generator (``make_*_like``) that writes exactly the layout its
reader expects, so that the same reader serves real and synthetic data.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .dagm_like import make_dagm_like
from .mvtec_like import CATEGORIES as MVTEC_CATEGORIES
from .mvtec_like import make_mvtec_like
from .rsdd_like import make_rsdd_like
from .sem_like import make_sem_like

__all__ = [
    "GENERATOR_VERSION",
    "KINDS",
    "MVTEC_CATEGORIES",
    "SIZES",
    "SyntheticError",
    "ensure_synthetic",
    "make_dagm_like",
    "make_mvtec_like",
    "make_rsdd_like",
    "make_sem_like",
    "synthetic_params",
]

GENERATOR_VERSION = "7"
"""Bump when a generator changes its output: cached data sets are then regenerated."""

KINDS: tuple[str, ...] = ("mvtec", "dagm", "rsdd", "sem")
DEFAULT_CATEGORY = {"mvtec": "hazelnut", "dagm": "Class8", "rsdd": "type-I", "sem": "nanofibres"}

# Test images per defect type so that each MVTec-like category has about 40 test images.
_MVTEC_PER_DEFECT = {"hazelnut": 8, "bottle": 10, "carpet": 6}

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "mvtec": {
        "tiny": {"n_train": 8, "n_test_per_defect": 2, "n_test_good": 3, "size": 96},
        "default": {"n_train": 120, "n_test_per_defect": None, "n_test_good": 24, "size": 256},
    },
    "dagm": {
        "tiny": {"n_train_normal": 8, "n_train_defective": 2, "n_test_normal": 4,
                 "n_test_defective": 4, "size": 96},
        "default": {"n_train_normal": 130, "n_train_defective": 20, "n_test_normal": 35,
                    "n_test_defective": 25, "size": 256},
    },
    "rsdd": {
        "tiny": {"n_strips": 4, "height": 400, "width": 160},
        "default": {"n_strips": 40, "height": 800, "width": 160},
    },
    "sem": {
        "tiny": {"n_normal": 2, "n_anomalous": 2, "size": 128},
        "default": {"n_normal": 5, "n_anomalous": 40, "size": 512},  # NanoTWICE's 45; 512x348 crops
    },
}
"""Generator parameters per kind and size name (``tiny``: tests; ``default``: CPU profile)."""


class SyntheticError(ValueError):
    """A bad request for a synthetic data set (unknown kind, category or size)."""


def synthetic_params(kind: str, category: str | None = None, size: str = "default") -> dict[str, Any]:
    """The generator keyword arguments for ``kind``/``category`` at ``size`` (without ``seed``).

    Raises:
        SyntheticError: unknown kind, category or size.
    """
    if kind not in KINDS:
        raise SyntheticError(f"Unknown synthetic kind {kind!r}: expected one of {', '.join(KINDS)}.")
    if size not in SIZES[kind]:
        raise SyntheticError(f"Unknown size {size!r} for {kind}: expected one of {', '.join(SIZES[kind])}.")
    params = dict(SIZES[kind][size])
    category = category or DEFAULT_CATEGORY[kind]
    if kind == "mvtec":
        if category not in MVTEC_CATEGORIES:
            raise SyntheticError(
                f"No synthetic MVTec-like category {category!r}: expected one of {sorted(MVTEC_CATEGORIES)}."
            )
        if params["n_test_per_defect"] is None:
            params["n_test_per_defect"] = _MVTEC_PER_DEFECT[category]
    elif kind in ("rsdd", "sem") and category != DEFAULT_CATEGORY[kind]:
        raise SyntheticError(f"{kind} has a single category {DEFAULT_CATEGORY[kind]!r}, not {category!r}.")
    return params


def _unit(kind: str, root: Path, category: str) -> Path:
    """The folder generated as one piece (renamed atomically) and holding ``manifest.json``.

    For MVTec and DAGM this is the category/class folder (real MVTec category folders also hold
    extra files such as ``license.txt``); for RSDDs and SEM the whole root.
    """
    return root / category if kind in ("mvtec", "dagm") else root


def _generate(kind: str, target_root: Path, category: str, params: dict, seed: int, progress: bool) -> None:
    if kind == "mvtec":
        make_mvtec_like(target_root, category, seed=seed, progress=progress, **params)
    elif kind == "dagm":
        make_dagm_like(target_root, category, seed=seed, progress=progress, **params)
    elif kind == "rsdd":
        make_rsdd_like(target_root, seed=seed, progress=progress, **params)
    else:
        make_sem_like(target_root, seed=seed, progress=progress, **params)


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_synthetic(
    kind: str,
    category: str | None = None,
    *,
    size: str = "default",
    seed: int = 0,
    root: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Generate a synthetic stand-in once (cached) and return the root to pass to its reader.

    The data set lives in ``<root>/<kind>-<size>-seed<seed>/`` (``root`` defaults to
    :func:`adlib.config.synthetic_root`). It is written to a temporary folder and renamed into
    place, with a ``manifest.json`` (generator version and parameters); a cached copy whose
    manifest differs is regenerated.

    Args:
        kind: ``"mvtec"``, ``"dagm"``, ``"rsdd"`` or ``"sem"``.
        category: MVTec-like category (default ``"hazelnut"``) or DAGM class (default ``"Class8"``).
        size: ``"tiny"`` (tests, seconds) or ``"default"`` (CPU profile).
        seed: generator seed.
        root: parent folder for the cache, overriding the configured synthetic root.
        progress: show a tqdm bar while generating.

    Returns:
        The dataset root, e.g. for ``read_mvtec(path, category)`` or ``read_dagm(path, "Class8")``.
    """
    params = synthetic_params(kind, category, size)
    category = category or DEFAULT_CATEGORY[kind]
    if root is None:
        from adlib import config

        root = config.synthetic_root()
    data_root = Path(root) / f"{kind}-{size}-seed{seed}"
    unit = _unit(kind, data_root, category)
    manifest = {
        "generator": "adlib.data.synthetic",
        "version": GENERATOR_VERSION,
        "kind": kind,
        "category": category,
        "size": size,
        "seed": seed,
        "params": params,
    }
    if _read_manifest(unit / "manifest.json") == manifest:
        return data_root

    staging_parent = data_root if unit != data_root else data_root.parent
    staging_parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{kind}-", dir=staging_parent))
    try:
        if unit == data_root:
            _generate(kind, staging, category, params, seed, progress)
            final_staged = staging
        else:
            _generate(kind, staging, category, params, seed, progress)
            final_staged = staging / category
        (final_staged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if unit.exists():  # stale or broken copy: move it aside, then delete it
            trash = Path(tempfile.mkdtemp(prefix=f".old-{kind}-", dir=staging_parent))
            os.rename(unit, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(final_staged, unit)
        except OSError:
            # Another process finished first: keep its copy if it is the one we want.
            if _read_manifest(unit / "manifest.json") != manifest:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_root
