"""Model bundles: one file with everything ``adlib score`` needs to score new images.

A bundle is written beside each results JSON (``<results name>.model.pt``; the JSON records it as
``model_bundle``). It holds:

* ``family``: which scorer reads it (:data:`adlib.scoring.FAMILIES`);
* ``nets``: the networks' constructor arguments and weights (``{name: {"kwargs", "state"}}``);
* ``preprocess``: working size, channels and how an image file becomes the network's input;
* ``post``: how the network's output becomes an anomaly map and an image score (map kind,
  smoothing, score rule, ...);
* ``thresholds``: the honest image and pixel thresholds with their source (validation data);
* ``meta``: the adlib version, notebook, method, dataset, category and run that made it.

Only tensors, numbers, strings, lists and dicts are stored, so :func:`load_bundle` reads it with
``torch.load(weights_only=True)``: a bundle cannot run code when it is opened. A bundle of another
:data:`FORMAT_VERSION` or another adlib major version is refused with a message that says how to
make a new one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["BundleError", "Bundle", "FORMAT", "FORMAT_VERSION", "SUFFIX", "save_bundle", "load_bundle",
           "bundle_path", "save_beside", "threshold_dict"]

FORMAT = "adlib-model-bundle"
FORMAT_VERSION = 1
"""Raised whenever the layout of a bundle changes; older bundles are then refused."""
SUFFIX = ".model.pt"


class BundleError(ValueError):
    """A bundle that cannot be read or was made by an incompatible adlib."""


@dataclass
class Bundle:
    """The content of one model bundle (see the module docstring)."""

    family: str
    method: str
    nets: dict[str, dict[str, Any]]
    preprocess: dict[str, Any]
    post: dict[str, Any]
    thresholds: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    """Where it was loaded from (None for a bundle built in memory)."""

    @property
    def image_threshold(self) -> float:
        """The honest image threshold (a score above it is anomalous)."""
        return float(self.thresholds["image"]["value"])

    @property
    def pixel_threshold(self) -> float | None:
        """The honest pixel threshold, None when the notebook had none."""
        t = self.thresholds.get("pixel")
        return None if t is None else float(t["value"])

    def to_dict(self) -> dict[str, Any]:
        """The stored dictionary (format tag and version included)."""
        from adlib.results import version_string

        return {"format": FORMAT, "format_version": FORMAT_VERSION, "family": self.family,
                "method": self.method, "nets": self.nets, "preprocess": self.preprocess,
                "post": self.post, "thresholds": self.thresholds,
                "meta": {"adlib_version": version_string(), **self.meta}}


def threshold_dict(t: Any) -> dict[str, Any] | None:
    """``{"value", "source"}`` of an :class:`adlib.thresholds.Threshold` (None stays None)."""
    if t is None:
        return None
    return {"value": float(t.value), "source": str(t.source)}


def bundle_path(json_path: str | os.PathLike) -> Path:
    """The bundle beside a results JSON: ``<stem>.model.pt``."""
    p = Path(json_path)
    return p.with_name(p.name[: -len(".json")] + SUFFIX if p.name.endswith(".json") else p.name + SUFFIX)


def _plain(obj: Any, where: str) -> Any:
    """Convert tuples and numpy scalars to what ``weights_only`` loading accepts; refuse the rest."""
    import numpy as np

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().contiguous()
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, where) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise BundleError(f"bundle: {where} holds a {type(obj).__name__}; only tensors, numbers, strings, "
                      "lists and dicts can be stored.")


def save_bundle(bundle: Bundle, path: str | os.PathLike) -> Path:
    """Write ``bundle`` atomically (temporary file + rename) and return its path."""
    from adlib.checkpoints import save_checkpoint

    return save_checkpoint(_plain(bundle.to_dict(), "bundle"), path)


def save_beside(bundle: Bundle, folder: str | os.PathLike, results_json_name: str) -> str:
    """Write ``bundle`` as ``<results name>.model.pt`` in ``folder``; returns the file name (the
    results JSON's ``model_bundle``)."""
    name = bundle_path(results_json_name).name
    save_bundle(bundle, Path(folder) / name)
    return name


def _major(version: str) -> str:
    return str(version).split("+")[0].split(".")[0]


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read a bundle with ``weights_only=True``.

    Raises:
        BundleError: missing or unreadable file, not a bundle, another format version or another
            adlib major version (each message names the file and the fix).
    """
    import adlib

    p = Path(path)
    fix = ("Fix: re-run the notebook that trained the model (it writes the bundle beside its "
           "results JSON) and pass that <name>.model.pt file.")
    if not p.is_file():
        raise BundleError(f"{p}: no such model bundle. {fix}")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is reported the same way
        raise BundleError(f"{p}: cannot be read as a model bundle ({type(exc).__name__}: {exc}). {fix}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BundleError(f"{p}: not an adlib model bundle (a training checkpoint?). {fix}")
    version = str(raw.get("meta", {}).get("adlib_version", "?"))
    if raw.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{p}: bundle format {raw.get('format_version')} (written by adlib {version}); "
                          f"this adlib {adlib.__version__} reads format {FORMAT_VERSION}. {fix}")
    if _major(version) != _major(adlib.__version__):
        raise BundleError(f"{p}: written by adlib {version}, incompatible with adlib {adlib.__version__} "
                          f"(major version differs). {fix}")
    return Bundle(family=raw["family"], method=raw["method"], nets=raw["nets"], preprocess=raw["preprocess"],
                  post=raw["post"], thresholds=raw["thresholds"], meta=raw.get("meta", {}), path=p)
