"""RSDDs-type-I-like stand-in: bright rail-head strips with dark spalls and scars.

Layout written (exactly the RSDDs one; masks are JPEG like the original, so readers threshold)::

    <root>/Type-I RSDDs dataset/Rail surface images/rail_1.jpg ...
    <root>/Type-I RSDDs dataset/GroundTruth/rail_1.jpg ...      # same file names, 0/255

Strips are 160 px wide like the original (whose strips are ~1000+ px long; shorter here by
default). Every strip carries at least one defect, as in the original set; defect-free training
data comes from patches away from the defects (the reader's 200x160 patch protocol).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from . import defects as D
from .textures import smooth_noise, texture_crop, to_uint8

DATASET_DIR = "Type-I RSDDs dataset"
IMAGE_DIR = "Rail surface images"
MASK_DIR = "GroundTruth"


def render_rsdd_like(
    height: int, width: int, rng: np.random.Generator, n_defects: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one strip (uint8 gray) and its defect mask (bool), with ``n_defects`` defects."""
    shape = (height, width)
    cols = np.linspace(-1, 1, width, dtype=np.float32)
    # Uneven illumination: a bright running band across the head, drifting along the rail.
    band_centre = rng.uniform(-0.3, 0.3) + 0.2 * smooth_noise((height, 1), rng, (height / 4, 1))
    band = np.exp(-((cols[None, :] - band_centre) ** 2) / (2 * rng.uniform(0.3, 0.6) ** 2))
    streaks = texture_crop("grass", shape, rng, scale=(0.4, 0.7), angle=rng.normal(0, 0.03), stretch=(10.0, 1.0))
    grain = texture_crop("grass", shape, rng, scale=(1.2, 2.0))
    image = (0.55 + 0.3 * band) * (1 + 0.05 * streaks + 0.04 * grain)
    image = image * (1 + 0.08 * smooth_noise(shape, rng, (height / 10, width / 3)))
    mask = np.zeros(shape, bool)
    for k in range(n_defects):
        # Spread defects along the strip so that defect-free stretches remain.
        row = (k + rng.uniform(0.2, 0.8)) / n_defects * height
        centre = (row, rng.uniform(0.2, 0.8) * width)
        if rng.random() < 0.65:  # spall: compact, irregular dark pit
            soft = D.blob(shape, rng, centre, rng.uniform(0.04, 0.18) * width,
                          aspect=rng.uniform(0.4, 1.0), irregularity=0.35, roughness=0.15)
        else:  # scar: elongated along the rail
            soft = D.blob(shape, rng, centre, rng.uniform(0.15, 0.4) * width,
                          aspect=rng.uniform(0.15, 0.35), angle=np.pi / 2 + rng.normal(0, 0.2),
                          irregularity=0.25, roughness=0.2)
        inside = 0.15 + 0.08 * texture_crop("gravel", shape, rng, scale=(0.5, 1.0))
        image = D.blend(image, soft, np.clip(inside, 0, 1), rng.uniform(0.45, 0.85))
        mask |= soft > 0.5
    image = ndimage.gaussian_filter(image, 0.6)
    return to_uint8(image), mask


def make_rsdd_like(
    root: str | Path,
    *,
    n_strips: int = 40,
    height: int = 800,
    width: int = 160,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write an RSDDs-type-I-like set under ``root/Type-I RSDDs dataset`` in the original layout.

    Args:
        root: dataset root.
        n_strips: number of rail strips (each with 1-3 defects).
        height, width: strip size in pixels (original: ~1000-1300 x 160).
        seed: random seed; the same seed writes byte-identical files.
        progress: show a tqdm bar.

    Returns:
        The ``Type-I RSDDs dataset`` folder.
    """
    folder = Path(root) / DATASET_DIR
    (folder / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    (folder / MASK_DIR).mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(1, n_strips + 1), desc="synthetic rsdd", disable=not progress):
        rng = np.random.default_rng([seed, 0x25DD, i])
        image, mask = render_rsdd_like(height, width, rng, int(rng.integers(1, 4)))
        name = f"rail_{i}.jpg"
        Image.fromarray(image).save(folder / IMAGE_DIR / name, quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / MASK_DIR / name, quality=100, subsampling=0)
    return folder
