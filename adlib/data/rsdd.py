"""Reader for RSDDs Type-I (rail surface strips) and the 200x160 patch protocol of seed 002."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adlib.data.io import find_child, list_images, read_image, read_mask
from adlib.data.patches import PatchSet, Size, _hw, _windows, grid_patches, labelled_grid_patches
from adlib.data.types import GOOD, DataError, Sample, Split
from adlib.data.validate import checked

DEFECT = "defect"
TYPE_I = "Type-I RSDDs dataset"
IMAGES = "Rail surface images"
GROUND_TRUTH = "GroundTruth"

RSDD_LAYOUT = f"""  <root>/{TYPE_I}/{IMAGES}/*.jpg   rail strips (~160 px wide)
  <root>/{TYPE_I}/{GROUND_TRUTH}/*.jpg          one mask per strip, same file stem"""

RSDD_SOURCE = (
    "RSDDs has no stable public download URL, so adlib cannot fetch it. It was published with "
    "J. Gan, Q. Li, J. Wang and H. Yu, \"A hierarchical extractor-based visual rail surface "
    "inspection system\", IEEE Sensors Journal 17(23), 2017: ask the authors, or use a copy "
    "shared for research, and extract it so that the layout below holds. Without it, use "
    "DATA_ROOT = None (the synthetic stand-in)."
)


def _locate(root: Path) -> Path:
    """The ``Type-I RSDDs dataset`` folder under ``root`` (or ``root`` itself, or one level down)."""
    candidates = [root / TYPE_I, root]
    if root.is_dir():
        candidates += [child / TYPE_I for child in sorted(root.iterdir()) if child.is_dir()]
    for folder in candidates:
        if find_child(folder, IMAGES) is not None and find_child(folder, GROUND_TRUTH) is not None:
            return folder
    state = "does not exist" if not root.exists() else f"has no {TYPE_I}/{IMAGES} and {GROUND_TRUTH}"
    raise DataError(f"RSDDs folder {root} {state}.\n{RSDD_SOURCE}\nExpected layout:\n{RSDD_LAYOUT}")


def read_rsdd(root: str | Path, *, check_images: bool = False, progress: bool = True) -> Split:
    """Read RSDDs Type-I: every strip goes to ``test`` (labelled from its mask).

    The strips are not split into defect-free training images: most hold a defect. Training uses
    the defect-free *patches* of a disjoint set of strips, see :func:`rsdd_patches`; ``train`` is
    empty and ``split.extra["patch_protocol"]`` says so.

    Raises:
        DataError: missing folder (with where to get RSDDs), missing or non-binary masks.
    """
    root = Path(root)
    folder = _locate(root)
    image_dir, gt_dir = find_child(folder, IMAGES), find_child(folder, GROUND_TRUTH)
    images = list_images(image_dir)
    if not images:
        raise DataError(f"RSDDs image folder {image_dir} holds no images.\n{RSDD_SOURCE}\n"
                        f"Expected layout:\n{RSDD_LAYOUT}")
    masks = {p.stem.lower(): p for p in list_images(gt_dir)}
    missing = [p.name for p in images if p.stem.lower() not in masks]
    if missing:
        raise DataError(f"{len(missing)} RSDDs strip(s) have no mask in {gt_dir} with the same "
                        f"stem: {', '.join(missing[:10])}.\nExpected layout:\n{RSDD_LAYOUT}\n"
                        "Fix: re-extract the dataset completely.")
    test = []
    for p in images:
        mask_path = masks[p.stem.lower()]
        defective = bool(read_mask(mask_path).any())  # small JPEGs: also checks they are masks
        test.append(Sample(p, int(defective), DEFECT if defective else GOOD, mask_path))
    split = Split("rsdd", "type-I", root, [], test, has_masks=True, channels=0,
                  extra={"patch_protocol": "train on defect-free patches: rsdd_patches(split)"})
    return checked(split, check_images=check_images, progress=progress)


def split_by_image(
    samples: list[Sample], test_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic split of whole images into (train, test); no image is in both."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ordered = sorted(samples, key=lambda s: str(s.path))
    if len(ordered) < 2:
        raise DataError(f"Need at least 2 images to split by image, got {len(ordered)}.")
    n_test = min(max(1, round(test_fraction * len(ordered))), len(ordered) - 1)
    order = np.random.default_rng(seed).permutation(len(ordered))
    test = [ordered[i] for i in sorted(order[:n_test])]
    train = [ordered[i] for i in sorted(order[n_test:])]
    return train, test


def rsdd_patches(
    split_or_root: Split | str | Path,
    patch: Size = (200, 160),
    *,
    stride: Size | None = None,
    min_defect_pixels: int = 1,
    test_fraction: float = 0.5,
    seed: int = 0,
    cover: bool = False,
    progress: bool = True,
) -> PatchSet:
    """The seed-002 protocol: cut the strips into ``patch`` (H x W) patches.

    Strips are split by strip (``test_fraction``, ``seed``; deterministic). Training patches are
    the patches of training strips with no defect pixel at all; test patches are all patches of
    test strips, anomalous when they hold at least ``min_defect_pixels`` defect pixels.

    Args:
        split_or_root: a :func:`read_rsdd` split, or the folder to read.
        patch: patch size (height, width); strips narrower than ``width`` raise.
        stride: step between patches (default: the patch size, no overlap).
        min_defect_pixels: defect pixels that make a test patch anomalous.
        test_fraction: share of strips held out for testing.
        seed: seed of the strip split.
        cover: add a last, overlapping row of patches at the bottom of each strip.
        progress: progress bars.
    """
    split = split_or_root if isinstance(split_or_root, Split) else read_rsdd(split_or_root)
    strips = split.test + split.train
    ph, pw = _hw(patch)
    train_samples, test_samples = split_by_image(strips, test_fraction, seed)
    train_parts, train_src, train_coords = [], [], []
    for i, s in enumerate(train_samples):
        img = read_image(s.path, channels=1)
        mask = s.load_mask_or_empty(img.shape[:2])
        try:
            patches, coords = grid_patches(img, (ph, pw), stride, cover=cover)
        except ValueError as err:
            raise DataError(f"Strip {s.path}: {err} Fix: pass patch=(height, width) that fits.") from err
        clean = ~_windows(mask, ph, pw)[coords[:, 0], coords[:, 1]].any(axis=(1, 2))
        train_parts.append(patches[clean])
        train_coords.append(coords[clean])
        train_src.append(np.full(int(clean.sum()), i, dtype=np.int64))
    test, labels, masks, source, coords = labelled_grid_patches(
        test_samples, (ph, pw), stride, channels=1, cover=cover, min_pixels=min_defect_pixels,
        progress=progress)
    return PatchSet(
        train=np.concatenate(train_parts), test=test, test_labels=labels, test_masks=masks,
        test_source=source, test_coords=coords, train_source=np.concatenate(train_src),
        train_coords=np.concatenate(train_coords), train_samples=train_samples,
        test_samples=test_samples, patch_size=(ph, pw))
