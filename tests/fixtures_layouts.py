"""Write tiny datasets in each original layout (MVTec AD, DAGM 2007, RSDDs, SEM) for tests.

Every writer takes a folder (e.g. pytest's ``tmp_path``) and returns the root to pass to the
matching reader. Images are random noise (all distinct), masks are 0/255 rectangles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(rng: np.random.Generator, shape: tuple[int, int], channels: int = 1) -> np.ndarray:
    """A random uint8 image, HxW (channels=1) or HxWx3."""
    size = shape if channels == 1 else (*shape, channels)
    return rng.integers(0, 256, size=size, dtype=np.uint8)


def box_mask(shape: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    """A 0/255 uint8 mask with one filled rectangle."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top:top + height, left:left + width] = 255
    return mask


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    """Save an array as an image file (format from the suffix), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def write_mvtec(
    root: Path, category: str = "toy", *, n_train: int = 3, n_good_test: int = 2,
    defects: tuple[str, ...] = ("crack", "hole"), n_per_defect: int = 2, size: int = 16,
    channels: int = 3, ground_truth: bool = True, seed: int = 0,
) -> Path:
    """MVTec layout: ``<root>/<category>/{train/good, test/<type>, ground_truth/<type>}``."""
    rng = np.random.default_rng(seed)
    cat = Path(root) / category
    for i in range(n_train):
        save(cat / "train" / "good" / f"{i:03d}.png", noise_image(rng, (size, size), channels))
    for i in range(n_good_test):
        save(cat / "test" / "good" / f"{i:03d}.png", noise_image(rng, (size, size), channels))
    for defect in defects:
        for i in range(n_per_defect):
            save(cat / "test" / defect / f"{i:03d}.png", noise_image(rng, (size, size), channels))
            if ground_truth:
                save(cat / "ground_truth" / defect / f"{i:03d}_mask.png",
                     box_mask((size, size), 2, 3, 4, 5))
    return Path(root)


def write_dagm(
    root: Path, class_name: str = "Class8", *, train: tuple[int, int] = (3, 1),
    test: tuple[int, int] = (2, 2), size: int = 16, seed: int = 0,
) -> Path:
    """DAGM layout; ``train``/``test`` are (normal, defective) counts."""
    rng = np.random.default_rng(seed)
    number = 1000
    for part, (n_ok, n_bad) in (("Train", train), ("Test", test)):
        folder = Path(root) / class_name / part
        rows = ["1"]
        for k in range(n_ok + n_bad):
            number += 1
            name = f"{number}.PNG"
            save(folder / name, noise_image(rng, (size, size)))
            if k < n_ok:
                rows.append(f"{number}\t0\t{name}\t0\t0\t")
            else:
                label = f"{number}_label.PNG"
                save(folder / "Label" / label, box_mask((size, size), 4, 4, 6, 3))
                rows.append(f"{number}\t1\t{name}\t0\t{label}")
        (folder / "Label").mkdir(parents=True, exist_ok=True)
        (folder / "Label" / "Labels.txt").write_text("\n".join(rows) + "\n")
    return Path(root)


RSDD_DIR = ("Type-I RSDDs dataset", "Rail surface images", "GroundTruth")


def write_rsdd(
    root: Path, *, n_strips: int = 4, height: int = 400, width: int = 160, seed: int = 0,
    defect_at: int = 250,
) -> Path:
    """RSDDs Type-I layout: grey JPEG strips and JPEG masks. Each strip gets a 20x30 defect
    starting at row ``defect_at`` (the second 200-px patch), except strip 0, which is clean."""
    rng = np.random.default_rng(seed)
    base = Path(root) / RSDD_DIR[0]
    for i in range(n_strips):
        save(base / RSDD_DIR[1] / f"rail_{i}.jpg", noise_image(rng, (height, width)), quality=95)
        mask = (box_mask((height, width), defect_at, 40, 20, 30) if i
                else np.zeros((height, width), np.uint8))
        save(base / RSDD_DIR[2] / f"rail_{i}.jpg", mask, quality=95)
    return Path(root)


def write_sem(
    root: Path, *, n_normal: int = 2, n_anomalous: int = 2, shape: tuple[int, int] = (48, 64),
    mask_suffix: str = "_gt", seed: int = 0,
) -> Path:
    """SEM layout: ``Normal/*.tif``, ``Anomalous/images/*.tif``, ``Anomalous/gt/<stem>_gt.png``."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for i in range(n_normal):
        save(root / "Normal" / f"normal_{i}.tif", noise_image(rng, shape))
    for i in range(n_anomalous):
        save(root / "Anomalous" / "images" / f"anom_{i}.tif", noise_image(rng, shape))
        save(root / "Anomalous" / "gt" / f"anom_{i}{mask_suffix}.png",
             box_mask(shape, 8, 8, 10, 12))
    return root
