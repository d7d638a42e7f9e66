"""Reader for the DAGM 2007 layout (one class, e.g. ``Class8``)."""

from __future__ import annotations

import warnings
from pathlib import Path

from adlib.data.io import find_child, list_images, require_dir
from adlib.data.types import GOOD, DataError, DataWarning, Sample, Split
from adlib.data.validate import checked

DEFECT = "defect"
"""DAGM has one defect type per class."""

DAGM_LAYOUT = """  <root>/<Class>/Train/NNNN.PNG
  <root>/<Class>/Train/Label/Labels.txt      first line "1", then per image (tab-separated):
                                             <id> <0|1 defective> <image file> 0 <label file or 0>
  <root>/<Class>/Train/Label/NNNN_label.PNG  0/255 mask of each defective image
  <root>/<Class>/Test/...                     the same as Train"""

_FIX = ("pass DATA_ROOT = the folder holding the class folders (e.g. Class8/), extract the class "
        "archive completely, or use DATA_ROOT = None for the synthetic stand-in.")


def _read_labels(folder: Path) -> list[Sample]:
    """Parse ``<folder>/Label/Labels.txt`` into samples (defective ones with their masks)."""
    label_dir = find_child(folder, "Label")
    labels_txt = find_child(label_dir, "Labels.txt") if label_dir is not None else None
    if labels_txt is None or not labels_txt.is_file():
        raise DataError(f"DAGM label file {folder / 'Label' / 'Labels.txt'} does not exist.\n"
                        f"Expected layout:\n{DAGM_LAYOUT}\nFix: {_FIX}")
    lines = labels_txt.read_text(encoding="utf-8", errors="replace").splitlines()
    samples: list[Sample] = []
    problems: list[str] = []
    seen: dict[Path, tuple[int, tuple[str, str]]] = {}  # image -> (line, (flag, label file))
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (number == 1 and len(fields) == 1):
            continue  # blank line, or the header line "1"
        if len(fields) < 3 or fields[1] not in ("0", "1"):
            problems.append(f"line {number}: {line.strip()!r} is not "
                            "'<id> <0|1> <image file> 0 <label file or 0>'")
            continue
        image = folder / fields[2]
        mask_name = fields[4] if len(fields) >= 5 else "0"
        key = image.resolve()
        if key in seen:
            first, before = seen[key]
            if before != (fields[1], mask_name):
                problems.append(
                    f"line {number}: image {fields[2]} is listed again with a different label "
                    f"(line {first}: flag {before[0]}, label file {before[1]}; line {number}: "
                    f"flag {fields[1]}, label file {mask_name}); it cannot be both good and "
                    "defective: delete the wrong row")
            else:
                warnings.warn(f"{labels_txt}: line {number} repeats line {first} (image "
                              f"{fields[2]}); the image is used once.", DataWarning, stacklevel=3)
            continue
        seen[key] = (number, (fields[1], mask_name))
        if not image.is_file():
            problems.append(f"line {number}: image {image} does not exist")
            continue
        if fields[1] == "0":
            if mask_name != "0":
                problems.append(
                    f"line {number}: image {fields[2]} is flagged 0 (defect-free) but names the "
                    f"label file {mask_name}; set the flag to 1 if it is defective, or column 5 "
                    "to 0 if it is not")
                continue
            samples.append(Sample(image, 0, GOOD))
            continue
        mask = label_dir / mask_name if mask_name != "0" else None
        if mask is None or not mask.is_file():
            problems.append(f"line {number}: defective image {fields[2]} has no label file "
                            f"{mask if mask is not None else '(column 5 is 0)'}")
            continue
        samples.append(Sample(image, 1, DEFECT, mask))
    if problems:
        listed = "\n  - ".join(problems[:20])
        raise DataError(f"{labels_txt} does not match the files:\n  - {listed}\n"
                        f"Expected layout:\n{DAGM_LAYOUT}\nFix: {_FIX}")
    listed_paths = {s.path.name for s in samples}
    unlisted = [p.name for p in list_images(folder) if p.name not in listed_paths]
    if unlisted:
        warnings.warn(f"{len(unlisted)} image(s) in {folder} are not in {labels_txt} and are "
                      f"ignored (e.g. {unlisted[0]}).", DataWarning, stacklevel=3)
    if not samples:
        raise DataError(f"{labels_txt} lists no images.\nExpected layout:\n{DAGM_LAYOUT}\n"
                        f"Fix: {_FIX}")
    return samples


def read_dagm(
    root: str | Path,
    class_name: str = "Class8",
    *,
    check_images: bool = False,
    progress: bool = True,
) -> Split:
    """Read one DAGM 2007 class.

    Defect-free ``Train`` images form ``train``; defective ``Train`` images are excluded from
    training and kept in ``split.extra["train_defective"]``. ``Test`` is the test set.

    Args:
        root: folder holding ``<class_name>/`` (the class folder itself is accepted too).
        class_name: e.g. ``"Class8"``.
        check_images: decode every file now (see :func:`adlib.data.validate.validate_split`).
        progress: progress bar for ``check_images``.

    Raises:
        DataError: naming the path, the expected layout and the fix.
    """
    root = require_dir(Path(root), "DAGM root folder", DAGM_LAYOUT, _FIX)
    class_dir = find_child(root, class_name)
    if class_dir is None and root.name.lower() == class_name.lower():
        class_dir = root
    if class_dir is None or not class_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        hint = f" Folders found there: {', '.join(found[:10])}." if found else ""
        raise DataError(f"DAGM class folder {root / class_name} does not exist.{hint}\n"
                        f"Expected layout:\n{DAGM_LAYOUT}\nFix: {_FIX}")
    parts = {}
    for part in ("Train", "Test"):
        folder = find_child(class_dir, part)
        parts[part] = _read_labels(require_dir(folder if folder is not None else class_dir / part,
                                               "DAGM folder", DAGM_LAYOUT, _FIX))
    train = [s for s in parts["Train"] if s.label == 0]
    train_defective = [s for s in parts["Train"] if s.label == 1]
    split = Split("dagm", class_name, root, train, parts["Test"], has_masks=True, channels=0,
                  extra={"train_defective": train_defective})
    return checked(split, check_images=check_images, progress=progress)
