"""Check a :class:`~adlib.data.types.Split` before any training.

The cheap checks (readers always run them) read file headers only; the full check decodes every
image and mask once and can keep the arrays so that :mod:`adlib.data.torchdata` never decodes
twice.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from adlib.data.io import probe_image, read_image, read_mask
from adlib.data.types import DataError, Sample, Split

MAX_LISTED = 20
"""How many offending files an error message lists before summarising."""


@dataclass
class ValidationReport:
    """What :func:`validate_split` checked.

    Attributes:
        n_files: images (and masks) inspected.
        channels: channel count of every image (after dropping alpha).
        sizes: how many images have each (H, W).
        decoded: True when pixels were decoded (full check), False for headers only.
        images: decoded HxWxC uint8 arrays by path (only with ``keep_arrays=True``).
        masks: decoded HxW bool masks by path (only with ``keep_arrays=True``).
        seconds: wall time of the check.
    """

    n_files: int = 0
    channels: int = 0
    sizes: Counter = field(default_factory=Counter)
    decoded: bool = False
    images: dict[Path, np.ndarray] = field(default_factory=dict)
    masks: dict[Path, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in self.sizes.most_common(3))
        return (f"{self.n_files} files {'decoded' if self.decoded else 'probed'} in "
                f"{self.seconds:.1f} s; channels {self.channels}; sizes {sizes}")


def _fail(problems: list[str], split: Split, what: str) -> None:
    if not problems:
        return
    listed = "\n  - ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise DataError(
        f"{split.dataset}/{split.category} at {split.root}: {what}:\n  - {listed}{more}"
    )


def _content_hash(arr: np.ndarray) -> str:
    h = hashlib.sha1(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _label(name: str, s: Sample) -> str:
    return f"{name} {'defective' if s.label else 'good'} ({s.defect})"


def _same_files(split: Split) -> tuple[list[str], list[str]]:
    """Files (after resolving links) listed in test and another list, and files listed twice.

    The second catches e.g. a defect folder that is a symbolic link to ``good``: every good
    image is then listed again as a defect.
    """
    by_file: dict[Path, list[tuple[str, Sample]]] = {}
    for name, samples in split.sample_lists().items():
        for s in samples:
            by_file.setdefault(Path(s.path).resolve(), []).append((name, s))
    overlap, twice = [], []
    for real, uses in by_file.items():
        if len(uses) < 2:
            continue
        names = {name for name, _ in uses}
        listed = "; ".join(f"{s.path} as {_label(name, s)}" for name, s in uses)
        if "test" in names and len(names) > 1:
            overlap.append(f"{real}: {listed}")
        else:
            twice.append(f"{real} is listed {len(uses)} times: {listed}")
    return overlap, twice


def _content_problems(hashes: dict[str, dict[str, list[tuple[Path, Sample]]]]) -> tuple[
        list[str], list[str]]:
    """Test images with the pixels of a non-test image, and identical test images whose labels
    differ (e.g. a defect folder that is a copy of ``good``)."""
    test = hashes.get("test", {})
    leaked = [f"test image {t} has the same pixels as {name} image {p}"
              for name, table in hashes.items() if name != "test"
              for key, uses in table.items() if key in test
              for p, _ in uses[:1] for t, _ in test[key]]
    conflicting = []
    for uses in test.values():
        if len({(s.label, s.defect) for _, s in uses}) > 1:
            conflicting.append(" = ".join(f"{p} ({_label('test', s)})" for p, s in uses))
    return leaked, conflicting


def validate_split(
    split: Split,
    *,
    check_images: bool = True,
    keep_arrays: bool = False,
    progress: bool = True,
) -> ValidationReport:
    """Check a split; raise :class:`DataError` listing every offending file.

    Always (cheap, headers only): non-empty train (unless ``split.extra["patch_protocol"]``) and
    test; no file (after resolving symbolic links) shared by test and any other list (``train``,
    DAGM's ``train_defective``, ...) or listed twice; a mask file for every defective test image
    when ``split.has_masks``; one channel count for all images; mask size == image size.
    With ``check_images``: every image and mask is decoded once (corrupt files, binary masks);
    a test image with the same decoded pixels as an image of any other list, identical test
    images with different labels, and defective images whose mask is all zero are reported.
    These checks are the same for every layout.

    Args:
        split: what a reader returned.
        check_images: decode every file (slower) instead of reading headers.
        keep_arrays: keep the decoded arrays in the report (implies ``check_images``).
        progress: show a tqdm bar while decoding.

    Returns:
        A :class:`ValidationReport`.
    """
    start = time.perf_counter()
    check_images = check_images or keep_arrays
    where = f"{split.dataset}/{split.category} at {split.root}"
    if not split.train and not split.extra.get("patch_protocol"):
        raise DataError(f"{where}: no training (defect-free) images. Fix: check the train folder "
                        "of the expected layout.")
    if not split.test:
        raise DataError(f"{where}: no test images. Fix: check the test folder of the layout.")

    overlap, twice = _same_files(split)
    _fail(overlap, split, "train/test overlap (same file in both; the test would be leaked). "
          "Fix: remove these files from one of the folders")
    _fail(twice, split, "the same file is listed more than once (a folder that is a symbolic "
          "link to another one, e.g. a defect folder linked to good?). Fix: replace the link by "
          "the real folder, or remove it")

    if split.has_masks:
        missing = [f"{s.path}: defective but no mask" for s in split.test
                   if s.label == 1 and s.mask_path is None]
        _fail(missing, split, "defective test images without a mask (has_masks=True)")

    lists = split.sample_lists()
    samples: list[tuple[str, Sample]] = [(name, s) for name, lst in lists.items() for s in lst]
    report = ValidationReport(decoded=check_images)
    problems: list[str] = []
    empty: list[str] = []
    channels: dict[int, list[Path]] = {}
    hashes: dict[str, dict[str, list[tuple[Path, Sample]]]] = {name: {} for name in lists}
    bar = tqdm(samples, desc=f"validate {split.dataset}/{split.category}", unit="img",
               disable=not (progress and check_images), leave=False)
    for name, s in bar:
        try:
            if check_images:
                img = read_image(s.path)
                h, w, c = img.shape
                if keep_arrays:
                    report.images[Path(s.path)] = img
                hashes[name].setdefault(_content_hash(img), []).append((Path(s.path), s))
            else:
                h, w, c = probe_image(s.path)
            report.n_files += 1
            report.sizes[(h, w)] += 1
            channels.setdefault(c, []).append(Path(s.path))
            if s.mask_path is not None:
                if check_images:
                    mask = read_mask(s.mask_path, shape=(h, w))
                    if keep_arrays:
                        report.masks[Path(s.mask_path)] = mask
                    if s.label == 1 and not mask.any():
                        empty.append(f"{s.mask_path}: all zero, but its image {s.path} is "
                                     f"labelled defective ({s.defect})")
                else:
                    mh, mw, _ = probe_image(s.mask_path)
                    if (mh, mw) != (h, w):
                        problems.append(f"{s.mask_path}: mask is {mh}x{mw}, image {s.path} "
                                        f"is {h}x{w}")
                report.n_files += 1
        except DataError as err:
            problems.append(str(err))
    _fail(problems, split, "unreadable or inconsistent files")

    if len(channels) > 1:
        majority = max(channels, key=lambda k: len(channels[k]))
        odd = [f"{p}: {c} channel(s), most images have {majority}"
               for c, paths in sorted(channels.items()) if c != majority for p in paths]
        _fail(odd, split, "inconsistent channel count (fix: convert these files, or delete them)")
    report.channels = next(iter(channels)) if channels else 0

    if check_images:
        _fail(empty, split, "defective images with an empty mask: pixel metrics would score "
              "them as defect-free (e.g. pixel F1 0.0). Fix: draw the defect in the mask, or "
              "label the image as good")
        leaked, conflicting = _content_problems(hashes)
        _fail(leaked, split, "train/test overlap (identical pixel content; the test would be "
              "leaked). Fix: delete the copy, or replace it by the right image")
        _fail(conflicting, split, "identical test images with different labels (a defect folder "
              "that is a copy of another?). Fix: remove the copies")
    report.seconds = time.perf_counter() - start
    return report


def checked(split: Split, check_images: bool = False, progress: bool = True) -> Split:
    """Validate ``split`` (see :func:`validate_split`), set its channel count, and return it."""
    report = validate_split(split, check_images=check_images, progress=progress)
    split.channels = report.channels
    return split
