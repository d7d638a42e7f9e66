"""Reader for the NanoTWICE SEM nanofibre layout and the 32x32 patch extraction of seed 003."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adlib.data.io import find_child, list_images, read_image, require_dir, require_images
from adlib.data.patches import PatchSet, Size, _hw, labelled_grid_patches, random_patches
from adlib.data.types import GOOD, DataError, Sample, Split
from adlib.data.validate import checked

DEFECT = "defect"
SEM_LAYOUT = """  <root>/Normal/*.tif               defect-free SEM images
  <root>/Anomalous/images/*.tif     images with defects (beads, flattened areas)
  <root>/Anomalous/gt/<stem>*.png   one 0/255 mask per anomalous image, matched by file stem
                                    (<stem>.png, <stem>_gt.png or <stem>_mask.png)"""

_FIX = ("pass DATA_ROOT = the NanoTWICE folder (Carrera et al. 2016, \"Defect detection in SEM "
        "images of nanofibrous materials\"), or use DATA_ROOT = None for the synthetic stand-in.")

_MASK_SUFFIXES = ("", "_gt", "_mask", "-gt", "_label")


def _match_masks(images: list[Path], gt_dir: Path) -> dict[Path, Path]:
    by_stem = {p.stem.lower(): p for p in list_images(gt_dir)}
    matched, missing = {}, []
    for img in images:
        hit = next((by_stem[img.stem.lower() + suffix] for suffix in _MASK_SUFFIXES
                    if img.stem.lower() + suffix in by_stem), None)
        if hit is None:
            missing.append(img.name)
        else:
            matched[img] = hit
    if missing:
        raise DataError(f"{len(missing)} anomalous SEM image(s) have no mask in {gt_dir}: "
                        f"{', '.join(missing[:10])}.\nExpected layout:\n{SEM_LAYOUT}\nFix: {_FIX}")
    return matched


def read_sem(
    root: str | Path, *, category: str = "nanofibres", check_images: bool = False,
    progress: bool = True,
) -> Split:
    """Read the SEM nanofibre dataset: ``Normal`` -> train, ``Anomalous/images`` -> test.

    Every test image is defective, so image-level metrics are undefined; evaluate patches
    (:func:`sem_patches`) or pixels.

    Raises:
        DataError: naming the path, the expected layout and the fix.
    """
    root = require_dir(Path(root), "SEM root folder", SEM_LAYOUT, _FIX)
    normal = find_child(root, "Normal") or root / "Normal"
    anomalous = find_child(root, "Anomalous") or root / "Anomalous"
    train = [Sample(p, 0, GOOD) for p in require_images(normal, "SEM folder", SEM_LAYOUT, _FIX)]
    image_dir = find_child(anomalous, "images") or anomalous / "images"
    images = require_images(image_dir, "SEM folder", SEM_LAYOUT, _FIX)
    gt_dir = require_dir(find_child(anomalous, "gt") or anomalous / "gt", "SEM mask folder",
                         SEM_LAYOUT, _FIX)
    masks = _match_masks(images, gt_dir)
    test = [Sample(p, 1, DEFECT, masks[p]) for p in images]
    split = Split("sem", category, root, train, test, has_masks=True, channels=0)
    return checked(split, check_images=check_images, progress=progress)


def sem_patches(
    split: Split,
    size: Size = 32,
    *,
    n_train: int = 10000,
    stride: Size | None = 16,
    min_fraction: float = 0.0,
    min_pixels: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> PatchSet:
    """The seed-003 protocol: random ``size`` patches of the normal images for training,
    overlapping grid patches (``stride``) of the test images, labelled from their masks.

    Args:
        split: a :func:`read_sem` split (or any split with masks).
        size: patch size.
        n_train: number of random training patches.
        stride: grid step for test patches (``size`` = no overlap).
        min_fraction, min_pixels: when a test patch counts as anomalous
            (see :func:`adlib.data.patches.patch_labels`).
        seed: seed of the random training positions.
        progress: progress bars.
    """
    ph, pw = _hw(size)
    images = [read_image(s.path, channels=1) for s in split.train]
    try:
        train, coords = random_patches(images, (ph, pw), n_train, np.random.default_rng(seed))
    except ValueError as err:
        raise DataError(f"SEM training images at {split.root}: {err}") from err
    test, labels, masks, source, test_coords = labelled_grid_patches(
        split.test, (ph, pw), stride, channels=1, cover=True, min_fraction=min_fraction,
        min_pixels=min_pixels, progress=progress)
    return PatchSet(
        train=train, test=test, test_labels=labels, test_masks=masks, test_source=source,
        test_coords=test_coords, train_source=coords[:, 0], train_coords=coords[:, 1:],
        train_samples=list(split.train), test_samples=list(split.test), patch_size=(ph, pw))
