"""DAGM-2007-like stand-in (class 8 look: vertical streaky texture, thin scratch defects).

Layout written (exactly the DAGM 2007 one)::

    <root>/<class_name>/Train/0001.PNG ...        # gray
    <root>/<class_name>/Train/Label/Labels.txt    # "1", then <id>\\t<0|1>\\t<file>\\t0\\t<label file|0>
    <root>/<class_name>/Train/Label/0001_label.PNG  # 0/255 coarse ellipse over the defect
    <root>/<class_name>/Test/...                  # same structure

Image ids are unique across Train and Test (as in a re-split of the original numbering).
As in the original, the label ellipse is coarse: it covers the scratch and a margin around it.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from . import defects as D
from .textures import smooth_noise, texture_crop, to_uint8


def render_dagm_like(
    size: int, rng: np.random.Generator, defective: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Draw one gray image (uint8) and, if defective, the scratch mask and the ellipse label.

    Returns:
        ``(image, defect_mask, ellipse_label)``; the masks are ``None`` for a normal image.
    """
    s = size
    # Vertical streaks: a photographed texture stretched along the columns, plus grain.
    streaks = texture_crop("grass", (s, s), rng, scale=(0.3, 0.5), angle=rng.normal(0, 0.05),
                           stretch=(12.0, 1.0))
    grain = texture_crop("grass", (s, s), rng, scale=(1.5, 2.5))
    bands = smooth_noise((s, s), rng, (s / 4, s / 60))
    image = 0.43 + 0.09 * bands + 0.06 * streaks + 0.04 * grain
    image = image * rng.uniform(0.9, 1.1)
    if not defective:
        return to_uint8(image), None, None
    for _ in range(10):
        start = (rng.uniform(0.15, 0.85) * s, rng.uniform(0.15, 0.85) * s)
        path = D.random_walk(rng, start, rng.uniform(0.06, 0.14) * s, curvature=0.3, step=max(s / 256, 0.7))
        soft = D.stroke((s, s), path, max(1.2, 3.0 * s / 512) * rng.uniform(1.0, 1.4))
        if (soft > 0.5).sum() >= 3:
            break
    contrast = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.4)
    image = D.blend(image, soft, np.clip(image + contrast, 0, 1), 1.0)
    mask = soft > 0.5
    label = D.covering_ellipse(mask, margin=rng.uniform(2, 5) * s / 256)
    return to_uint8(image), mask, label


def make_dagm_like(
    root: str | Path,
    class_name: str = "Class8",
    *,
    n_train_normal: int = 130,
    n_train_defective: int = 20,
    n_test_normal: int = 35,
    n_test_defective: int = 25,
    size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write a DAGM-2007-like class under ``root/class_name`` in the original DAGM layout.

    Args:
        root: dataset root (the folder that holds ``Class8``).
        class_name: class folder name.
        n_train_normal, n_train_defective: images in ``Train`` (DAGM's Train holds defects too).
        n_test_normal, n_test_defective: images in ``Test``.
        size: image side in pixels (the original is 512).
        seed: random seed; the same seed writes byte-identical files.
        progress: show a tqdm bar.

    Returns:
        The class folder.
    """
    folder = Path(root) / class_name
    key = zlib.crc32(class_name.encode())
    plan = {
        "Train": [False] * n_train_normal + [True] * n_train_defective,
        "Test": [False] * n_test_normal + [True] * n_test_defective,
    }
    total = sum(len(v) for v in plan.values())
    # Shuffle defective among normal ones (as in the original numbering), reproducibly.
    order = np.random.default_rng([seed, key]).permutation(total)
    next_id = 0
    bar = tqdm(total=total, desc=f"synthetic dagm/{class_name}", disable=not progress)
    for split, flags in plan.items():
        label_dir = folder / split / "Label"
        label_dir.mkdir(parents=True, exist_ok=True)
        ids = sorted(int(i) + 1 for i in order[next_id : next_id + len(flags)])
        shuffled = np.random.default_rng([seed, key, len(split)]).permutation(flags)
        next_id += len(flags)
        rows = ["1"]
        for image_id, defective in zip(ids, shuffled, strict=True):
            name = f"{image_id:04d}.PNG"
            image, _, label = render_dagm_like(size, np.random.default_rng([seed, key, image_id]), bool(defective))
            Image.fromarray(image).save(folder / split / name)
            if defective:
                label_name = f"{image_id:04d}_label.PNG"
                Image.fromarray(label.astype(np.uint8) * 255).save(label_dir / label_name)
                rows.append(f"{image_id}\t1\t{name}\t0\t{label_name}")
            else:
                rows.append(f"{image_id}\t0\t{name}\t0\t0\t")
            bar.update()
        (label_dir / "Labels.txt").write_text("\n".join(rows) + "\n", encoding="ascii")
    bar.close()
    return folder
