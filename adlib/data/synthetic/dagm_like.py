"""DAGM-2007-like stand-in (class 8 look: leaning vertical streaks over fine grain, thin dark scratches).

Layout written (exactly the DAGM 2007 one)::

    <root>/<class_name>/Train/0001.PNG ...        # gray
    <root>/<class_name>/Train/Label/Labels.txt    # "1", then <id>\\t<0|1>\\t<file>\\t0\\t<label file|0>
    <root>/<class_name>/Train/Label/0001_label.PNG  # 0/255 coarse ellipse over the defect
    <root>/<class_name>/Test/...                  # same structure

Image ids are unique across Train and Test (as in a re-split of the original numbering).
As in the original, the label ellipse is coarse: it covers the scratch and a margin around it.

How the texture is built (from simple statistics of real class 8 images, looked at, not fitted):
most of the variance sits in vertical streaks some pixels wide, part of them running the full
height and part fading over a few tens of pixels, all leaning by the same one to two degrees;
under them lies a fine, nearly isotropic grain of about the same energy per octave, so a small
patch is not a clean vertical stripe (the real class is hard for patch statistics). Brightness
and contrast vary only a little between images; what varies is where the streaks and grain lie.
The scratches are thin, short, gently curved and mostly dark, about as deep as the texture's
own darkest specks, so they stand out by shape rather than by grey level.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from . import defects as D
from .textures import smooth_noise, streaks, texture_crop, to_uint8

# Weights of the texture's parts (grey levels in [0, 1]); each part has unit variance.
_WEIGHTS = {"full": 0.08, "long": 0.095, "short": 0.035, "gravel": 0.035, "grain": 0.045, "noise": 0.012}


def dagm_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """One defect-free class-8-like texture as floats around 0.43 (not yet clipped).

    Args:
        size: image side in pixels; lengths scale with ``size / 256``.
        rng: random generator (the image's own stream).
    """
    s, k = size, size / 256
    tilt = np.radians(rng.uniform(0.8, 2.2))
    parts = {
        "full": streaks((s, s), rng, None, rng.uniform(4.5, 6.5) * k, tilt),
        "long": streaks((s, s), rng, rng.uniform(28, 40) * k, rng.uniform(4.5, 6.5) * k, tilt),
        "short": streaks((s, s), rng, rng.uniform(3, 5) * k, rng.uniform(1.5, 2.2) * k, tilt),
        "gravel": texture_crop("gravel", (s, s), rng, scale=(0.7, 1.0), stretch=(1.0, 1.6)),
        "grain": smooth_noise((s, s), rng, (0.8 * k, 1.2 * k)),
        "noise": rng.standard_normal((s, s)).astype(np.float32),
    }
    texture = sum(_WEIGHTS[name] * part for name, part in parts.items())
    return 0.43 + rng.normal(0, 0.012) + rng.uniform(0.95, 1.05) * texture


def _scratch(size: int, rng: np.random.Generator) -> np.ndarray:
    """Soft mask of one thin, short, gently curved scratch (at least a few pixels on)."""
    s, k = size, size / 256
    for _ in range(10):
        start = (rng.uniform(0.12, 0.88) * s, rng.uniform(0.12, 0.88) * s)
        path = D.random_walk(rng, start, rng.uniform(0.05, 0.12) * s, curvature=0.12, step=max(k, 0.7))
        soft = D.stroke((s, s), path, max(1.0, 1.2 * k) * rng.uniform(0.9, 1.25))
        if (soft > 0.5).sum() >= 3:
            break
    return soft


def render_dagm_like(
    size: int, rng: np.random.Generator, defective: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Draw one gray image (uint8) and, if defective, the scratch mask and the ellipse label.

    Returns:
        ``(image, defect_mask, ellipse_label)``; the masks are ``None`` for a normal image.
    """
    image = dagm_texture(size, rng)
    if not defective:
        return to_uint8(image), None, None
    soft = _scratch(size, rng)
    # Mostly dark scratches (a few bright ones), as deep as the texture's darkest specks.
    contrast = (1.0 if rng.random() < 0.15 else -1.0) * rng.uniform(0.16, 0.33)
    image = D.blend(image, soft, np.clip(image + contrast, 0, 1), 1.0)
    mask = soft > 0.5
    label = D.covering_ellipse(mask, margin=rng.uniform(3, 6) * size / 256)
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
