"""Reader for the MVTec AD layout (any category)."""

from __future__ import annotations

import warnings
from pathlib import Path

from adlib.data.io import IMAGE_SUFFIXES, check_links, find_child, require_dir, require_images
from adlib.data.types import GOOD, DataError, DataWarning, Sample, Split
from adlib.data.validate import checked

MVTEC_LAYOUT = """  <root>/<category>/train/good/*.png
  <root>/<category>/test/good/*.png
  <root>/<category>/test/<defect type>/*.png
  <root>/<category>/ground_truth/<defect type>/<image stem>_mask.png   (optional)"""

_FIX = ("pass DATA_ROOT = the folder that holds the category folders (e.g. .../mvtec_anomaly_"
        "detection), extract the category archive completely, or use DATA_ROOT = None for the "
        "synthetic stand-in.")


def _find_mask(gt_dir: Path | None, stem: str) -> Path | None:
    if gt_dir is None:
        return None
    for suffix in (".png", *IMAGE_SUFFIXES):
        candidate = gt_dir / f"{stem}_mask{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_mvtec(
    root: str | Path, category: str, *, check_images: bool = False, progress: bool = True
) -> Split:
    """Read one MVTec AD category.

    A missing ``ground_truth/`` folder is allowed (``has_masks=False``, with a
    :class:`~adlib.data.types.DataWarning`); a missing mask for one defective image is an error.

    Args:
        root: folder holding ``<category>/`` (the category folder itself is accepted too).
        category: e.g. ``"hazelnut"``, ``"bottle"``.
        check_images: decode every file now (see :func:`adlib.data.validate.validate_split`).
        progress: progress bar for ``check_images``.

    Raises:
        DataError: naming the path, the expected layout and the fix.
    """
    root = require_dir(Path(root), "MVTec root folder", MVTEC_LAYOUT, _FIX)
    cat_dir = root / category
    if not cat_dir.is_dir() and root.name == category and (root / "train").is_dir():
        root, cat_dir = root.parent, root  # the category folder itself was given
    if not cat_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
        hint = f" Categories found there: {', '.join(found)}." if found else ""
        raise DataError(f"MVTec category folder {cat_dir} does not exist.{hint}\n"
                        f"Expected layout:\n{MVTEC_LAYOUT}\nFix: {_FIX}")
    train = [Sample(p, 0, GOOD) for p in require_images(
        cat_dir / "train" / "good", "MVTec training folder", MVTEC_LAYOUT, _FIX)]
    test_dir = require_dir(cat_dir / "test", "MVTec test folder", MVTEC_LAYOUT, _FIX)
    entries = sorted(test_dir.iterdir())
    check_links(entries, "test folder")
    type_dirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if not type_dirs:
        raise DataError(f"MVTec test folder {test_dir} has no sub-folders (good, <defect type>)."
                        f"\nExpected layout:\n{MVTEC_LAYOUT}\nFix: {_FIX}")
    gt_root = find_child(cat_dir, "ground_truth")
    has_masks = gt_root is not None and gt_root.is_dir()
    if not has_masks:
        warnings.warn(
            f"{cat_dir} has no ground_truth/ folder: only image-level metrics (image AUROC/AUPR) "
            "are possible; pixel metrics will be None.", DataWarning, stacklevel=2)
    test: list[Sample] = []
    missing: list[str] = []
    for type_dir in type_dirs:
        images = require_images(type_dir, "MVTec test folder", MVTEC_LAYOUT, _FIX)
        defect = type_dir.name
        if defect == GOOD:
            test += [Sample(p, 0, GOOD) for p in images]
            continue
        gt_dir = find_child(gt_root, defect) if has_masks else None
        for p in images:
            mask = _find_mask(gt_dir, p.stem)
            if has_masks and mask is None:
                missing.append(str(Path(gt_root, defect, f"{p.stem}_mask.png")))
            test.append(Sample(p, 1, defect, mask))
    if missing:
        listed = "\n  - ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more"
                                                 if len(missing) > 20 else "")
        raise DataError(
            f"{cat_dir}/ground_truth exists but {len(missing)} defective test image(s) have no "
            f"mask; expected:\n  - {listed}\nExpected layout:\n{MVTEC_LAYOUT}\nFix: re-extract "
            "the category, or remove ground_truth/ entirely to use image-level metrics only.")
    split = Split("mvtec", category, root, train, test, has_masks=has_masks, channels=0)
    return checked(split, check_images=check_images, progress=progress)
