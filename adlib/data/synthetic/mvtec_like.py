"""MVTec-AD-like stand-ins: ``hazelnut`` (object), ``bottle`` (aligned object), ``carpet`` (texture).

Layout written (exactly the MVTec AD one)::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png
    <root>/<category>/test/<defect>/000.png
    <root>/<category>/ground_truth/<defect>/000_mask.png   # 0/255 uint8
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from . import defects as D
from .textures import polar_grid, smooth_noise, texture_crop, to_uint8

Rendered = tuple[np.ndarray, dict]
"""An RGB float image in [0, 1] and a context dict (object mask, geometry) for the defects."""


# ----------------------------------------------------------------------------- hazelnut
def _hazelnut(size: int, rng: np.random.Generator) -> Rendered:
    s = size
    # Pose: any rotation, but (as in MVTec AD) nuts of similar size placed near the centre. Larger
    # jitter puts nut pixels where training images almost always show background: such normal
    # images then outscore every defect under a max-of-map image score.
    centre = (s / 2 + rng.normal(0, 0.008 * s), s / 2 + rng.normal(0, 0.008 * s))
    rot = rng.uniform(0, 2 * np.pi)
    radius = 0.33 * s * rng.uniform(0.97, 1.03)
    dist, phi = polar_grid((s, s), centre)
    rel = phi - rot
    aspect = rng.uniform(0.80, 0.90)
    r_edge = radius * aspect / np.sqrt((aspect * np.cos(rel)) ** 2 + np.sin(rel) ** 2)
    tip = np.exp(-(np.angle(np.exp(1j * rel)) ** 2) / 0.08)
    r_edge = r_edge * (1 + 0.05 * tip + 0.015 * np.cos(3 * rel + rng.uniform(0, 6.3)))
    soft = np.clip(r_edge - dist + 0.5, 0, 1)
    rho = np.clip(dist / r_edge, 0, 1)
    # Shell: a real photographed texture, fine streaks running towards the tip, dome shading.
    grain = texture_crop(rng.choice(["gravel", "grass"]), (s, s), rng, scale=(0.25, 0.45))
    streak = texture_crop("grass", (s, s), rng, scale=(0.3, 0.5), angle=rot, stretch=(1.0, 4.0))
    shade = np.sqrt(1 - rho**2) ** 0.6
    light = 1 + 0.18 * np.cos(phi - rng.uniform(0, 2 * np.pi)) * rho
    lum = (0.55 + 0.045 * grain + 0.045 * streak) * (0.55 + 0.45 * shade) * light
    lum = lum * (1 + 0.04 * smooth_noise((s, s), rng, s / 10))
    base = np.array([0.62, 0.40, 0.22]) * rng.uniform(0.95, 1.05, 3) * rng.uniform(0.93, 1.07)
    nut = lum[..., None] * base
    background = 0.05 + 0.012 * smooth_noise((s, s), rng, 2.0)[..., None] + np.zeros(3)
    image = background * (1 - soft[..., None]) + nut * soft[..., None]
    return image, {"object": soft > 0.5, "scale": s, "base": base}


def _hz_crack(image: np.ndarray, rng: np.random.Generator, ctx: dict) -> tuple[np.ndarray, np.ndarray]:
    s = ctx["scale"]
    start = D.point_inside(rng, ctx["object"], margin=int(0.08 * s))
    soft = np.zeros(image.shape[:2], np.float32)
    main = D.random_walk(rng, start, rng.uniform(0.15, 0.35) * s, curvature=0.25, step=max(s / 128, 1))
    width = np.linspace(rng.uniform(6.0, 10.0), 3.0, len(main)) * s / 256
    soft = np.maximum(soft, D.stroke(soft.shape, main, np.maximum(width, 1.0)))
    for _ in range(rng.integers(0, 3)):
        branch = D.random_walk(rng, tuple(main[rng.integers(len(main))]), rng.uniform(0.04, 0.1) * s,
                               curvature=0.3, step=max(s / 128, 1))
        soft = np.maximum(soft, D.stroke(soft.shape, branch, max(4 * s / 256, 1.0)))
    soft = soft * ctx["object"]
    out = D.blend(image, soft, image * rng.uniform(0.2, 0.45), 1.0)
    return out, soft


def _hz_cut(image: np.ndarray, rng: np.random.Generator, ctx: dict) -> tuple[np.ndarray, np.ndarray]:
    s = ctx["scale"]
    start = D.point_inside(rng, ctx["object"], margin=int(0.1 * s))
    path = D.random_walk(rng, start, rng.uniform(0.08, 0.18) * s, curvature=0.05, step=max(s / 128, 1))
    width = np.sin(np.linspace(0.2, np.pi - 0.2, len(path))) * rng.uniform(8, 14) * s / 256
    soft = D.stroke(image.shape[:2], path, np.maximum(width, 1.0)) * ctx["object"]
    kernel = np.array([0.80, 0.68, 0.48]) * rng.uniform(0.85, 1.05)
    edge = ndimage.shift(soft, (1.5 * s / 256, 1.5 * s / 256), order=1) - soft
    out = D.blend(image, soft, kernel * image.mean(axis=2, keepdims=True) / 0.3, rng.uniform(0.5, 0.75))
    out = out * (1 - 0.4 * np.clip(edge, 0, 1))[..., None]
    return out, np.maximum(soft, np.clip(edge, 0, 1))


def _hz_hole(image: np.ndarray, rng: np.random.Generator, ctx: dict) -> tuple[np.ndarray, np.ndarray]:
    s = ctx["scale"]
    centre = D.point_inside(rng, ctx["object"], margin=int(0.1 * s))
    radius = rng.uniform(0.045, 0.08) * s
    soft = D.blob(image.shape[:2], rng, centre, radius, aspect=rng.uniform(0.7, 1), irregularity=0.2)
    ring = D.blob(image.shape[:2], rng, centre, radius * 1.35, irregularity=0.1) - soft
    out = D.blend(image, soft, image * rng.uniform(0.15, 0.4), rng.uniform(0.7, 0.95))
    out = out * (1 - 0.2 * ring)[..., None]
    return out, np.maximum(soft, ring) * ctx["object"]


def _hz_print(image: np.ndarray, rng: np.random.Generator, ctx: dict) -> tuple[np.ndarray, np.ndarray]:
    s = ctx["scale"]
    centre = D.point_inside(rng, ctx["object"], margin=int(0.12 * s))
    soft = np.zeros(image.shape[:2], np.float32)
    for _ in range(rng.integers(3, 6)):
        start = (centre[0] + rng.normal(0, 0.03 * s), centre[1] + rng.normal(0, 0.03 * s))
        path = D.random_walk(rng, start, rng.uniform(0.04, 0.09) * s, curvature=0.5, step=max(s / 128, 1))
        soft = np.maximum(soft, D.stroke(soft.shape, path, max(8.0 * s / 256, 1.0)))
    soft = soft * ctx["object"]
    ink = np.array([0.26, 0.10, 0.36]) * rng.uniform(0.8, 1.2)
    out = D.blend(image, soft, ink, rng.uniform(0.65, 0.9))
    return out, soft


# ----------------------------------------------------------------------------- bottle
def _bottle(size: int, rng: np.random.Generator) -> Rendered:
    s = size
    centre = (s / 2 + rng.normal(0, 0.012 * s), s / 2 + rng.normal(0, 0.012 * s))
    dist, phi = polar_grid((s, s), centre)
    rho = dist / (0.44 * s * rng.uniform(0.98, 1.02))
    fine = texture_crop("gravel", (s, s), rng, scale=(0.2, 0.35))
    lum = np.full((s, s), 0.9, np.float32) - 0.12 * np.clip(rho - 1.0, 0, 0.2) / 0.2 * 0  # background
    lum = np.where(rho > 1.0, 0.88 + 0.03 * smooth_noise((s, s), rng, s / 8), lum)
    rim = (rho > 0.86) & (rho <= 1.0)
    lum = np.where(rim, 0.30 + 0.12 * np.cos((rho - 0.86) / 0.14 * np.pi) ** 2, lum)
    shoulder = (rho > 0.5) & (rho <= 0.86)
    rings = sum(
        a * np.exp(-(((rho - c) / w) ** 2))
        for a, c, w in [(0.10, 0.80, 0.015), (0.08, 0.72, 0.012), (0.06, 0.62, 0.02)]
    )
    lum = np.where(shoulder, 0.22 + rings + 0.04 * fine, lum)
    centre_level = rng.uniform(0.06, 0.18)
    core = rho <= 0.5
    lum = np.where(core, centre_level * (1 + 0.4 * (1 - rho / 0.5)) + 0.01 * fine, lum)
    lum = lum * (1 + 0.06 * smooth_noise((s, s), rng, s / 6))
    rgb = np.repeat(lum[..., None], 3, axis=2) * np.array([1.0, 1.0, 1.03])
    # The orange thread ring of MVTec bottles, strength varying around the neck.
    thread = np.exp(-(((rho - 0.76) / 0.025) ** 2)) * (0.5 + 0.5 * smooth_noise((s, s), rng, s / 12).clip(-1, 1))
    rgb = rgb + thread[..., None] * np.array([0.18, 0.08, -0.02]) * rng.uniform(0.5, 1.2)
    rgb = ndimage.gaussian_filter(rgb, (0.7, 0.7, 0))
    return rgb, {"rho": rho, "phi": phi, "scale": s, "object": rho < 1.0}


def _broken(image: np.ndarray, rng: np.random.Generator, ctx: dict, large: bool) -> tuple[np.ndarray, np.ndarray]:
    s, rho, phi = ctx["scale"], ctx["rho"], ctx["phi"]
    span = rng.uniform(0.35, 0.9) if large else rng.uniform(0.12, 0.3)
    phi0 = rng.uniform(-np.pi, np.pi)
    dphi = np.angle(np.exp(1j * (phi - phi0)))
    inner = rng.uniform(0.5, 0.7) if large else rng.uniform(0.78, 0.9)
    jag = 0.04 * smooth_noise(image.shape[:2], rng, s / 40)
    region = (np.abs(dphi) < span / 2 * (1 + jag * 3)) & (rho > inner + jag) & (rho < 1.0 + jag / 2)
    soft = ndimage.gaussian_filter(region.astype(np.float32), 0.7)
    shard = 0.45 + 0.12 * texture_crop("gravel", image.shape[:2], rng, scale=(0.3, 0.6))
    shard = shard + 0.15 * np.cos(dphi * rng.uniform(8, 20))
    out = D.blend(image, soft, np.clip(shard, 0, 1)[..., None] * np.ones(3), rng.uniform(0.35, 0.75))
    return out, soft


def _bt_broken_large(image, rng, ctx):
    return _broken(image, rng, ctx, large=True)


def _bt_broken_small(image, rng, ctx):
    return _broken(image, rng, ctx, large=False)


def _bt_contamination(image: np.ndarray, rng: np.random.Generator, ctx: dict) -> tuple[np.ndarray, np.ndarray]:
    s = ctx["scale"]
    core = ctx["rho"] < 0.45
    centre = D.point_inside(rng, core, margin=int(0.02 * s))
    soft = D.blob(image.shape[:2], rng, centre, rng.uniform(0.04, 0.12) * s,
                  aspect=rng.uniform(0.5, 1.0), irregularity=0.35, roughness=0.15)
    tex = texture_crop(str(rng.choice(["grass", "gravel"])), image.shape[:2], rng, scale=(0.3, 0.6))
    level = image.mean() * rng.uniform(0.5, 1.0) + 0.1 * tex
    out = D.blend(image, soft, np.clip(level, 0, 1)[..., None] * np.array([1, 1, 1.02]), rng.uniform(0.25, 0.6))
    return out, soft


# ----------------------------------------------------------------------------- carpet
def _carpet(size: int, rng: np.random.Generator) -> Rendered:
    s = size
    period = s / rng.uniform(22, 28)
    theta = rng.normal(0, 0.03)
    rows, cols = np.mgrid[0:s, 0:s].astype(np.float32)
    u = cols * np.cos(theta) + rows * np.sin(theta) + rng.uniform(0, period)
    v = -cols * np.sin(theta) + rows * np.cos(theta) + rng.uniform(0, period)
    weave = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
    fuzz = texture_crop("grass", (s, s), rng, scale=(0.2, 0.4))
    grain = texture_crop("gravel", (s, s), rng, scale=(0.4, 0.8))
    lum = 0.55 + 0.08 * weave + 0.07 * fuzz + 0.05 * grain + 0.03 * smooth_noise((s, s), rng, s / 8)
    base = np.array([0.78, 0.45, 0.30]) * rng.uniform(0.95, 1.05, 3) * rng.uniform(0.9, 1.1)
    return lum[..., None] * base, {"object": np.ones((s, s), bool), "scale": s, "base": base}


def _cp_color(image, rng, ctx):
    s = ctx["scale"]
    soft = D.blob(image.shape[:2], rng, D.point_inside(rng, ctx["object"], int(0.1 * s)),
                  rng.uniform(0.04, 0.1) * s, aspect=rng.uniform(0.5, 1), irregularity=0.3, roughness=0.1)
    shift = rng.choice([[0.7, 0.9, 1.3], [1.2, 1.2, 0.8], [0.75, 1.15, 0.9], [1.15, 0.85, 1.1]])
    out = D.blend(image, soft, image * np.asarray(shift), rng.uniform(0.4, 0.8))
    return out, soft


def _cp_cut(image, rng, ctx):
    s = ctx["scale"]
    path = D.random_walk(rng, D.point_inside(rng, ctx["object"], int(0.15 * s)),
                         rng.uniform(0.1, 0.25) * s, curvature=0.05, step=max(s / 128, 1))
    soft = D.stroke(image.shape[:2], path, rng.uniform(2, 5) * s / 256)
    out = D.blend(image, soft, image * rng.uniform(0.45, 0.7), 1.0)
    return out, soft


def _cp_hole(image, rng, ctx):
    s = ctx["scale"]
    soft = D.blob(image.shape[:2], rng, D.point_inside(rng, ctx["object"], int(0.1 * s)),
                  rng.uniform(0.025, 0.06) * s, irregularity=0.3, roughness=0.2)
    backing = image.mean(axis=(0, 1)) * rng.uniform(0.35, 0.6)
    out = D.blend(image, soft, backing, rng.uniform(0.6, 0.9))
    return out, soft


def _cp_metal(image, rng, ctx):
    s = ctx["scale"]
    centre = D.point_inside(rng, ctx["object"], int(0.1 * s))
    soft = D.blob(image.shape[:2], rng, centre, rng.uniform(0.015, 0.04) * s,
                  aspect=rng.uniform(0.3, 0.8), irregularity=0.3)
    glint = D.blob(image.shape[:2], rng, centre, rng.uniform(0.005, 0.012) * s, irregularity=0.1)
    metal = np.array([0.5, 0.5, 0.52]) * rng.uniform(0.7, 1.1)
    out = D.blend(image, soft, metal, rng.uniform(0.6, 0.9))
    out = D.blend(out, glint * soft, 0.9, 0.6)
    return out, soft


def _cp_thread(image, rng, ctx):
    s = ctx["scale"]
    path = D.random_walk(rng, D.point_inside(rng, ctx["object"], int(0.1 * s)),
                         rng.uniform(0.15, 0.4) * s, curvature=0.2, step=max(s / 128, 1))
    soft = D.stroke(image.shape[:2], path, rng.uniform(1.5, 3.0) * s / 256)
    colour = ctx["base"] * rng.choice([0.55, 0.75, 1.25]) * rng.uniform(0.9, 1.1, 3) * 0.6
    out = D.blend(image, soft, colour, rng.uniform(0.5, 0.85))
    return out, soft


DefectFn = Callable[[np.ndarray, np.random.Generator, dict], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CategorySpec:
    """How one MVTec-like category is drawn: a normal renderer and its defect types."""

    render: Callable[[int, np.random.Generator], Rendered]
    defects: dict[str, DefectFn]


CATEGORIES: dict[str, CategorySpec] = {
    "hazelnut": CategorySpec(_hazelnut, {"crack": _hz_crack, "cut": _hz_cut, "hole": _hz_hole, "print": _hz_print}),
    "bottle": CategorySpec(_bottle, {"broken_large": _bt_broken_large, "broken_small": _bt_broken_small,
                                     "contamination": _bt_contamination}),
    "carpet": CategorySpec(_carpet, {"color": _cp_color, "cut": _cp_cut, "hole": _cp_hole,
                                     "metal_contamination": _cp_metal, "thread": _cp_thread}),
}
"""The MVTec-like categories and their defect types (MVTec AD folder names)."""


def _rng(seed: int, category: str, split: str, defect: str, index: int) -> np.random.Generator:
    """Independent, order-free stream per image (same seed -> same image)."""
    key = zlib.crc32(f"{category}/{split}/{defect}".encode())
    return np.random.default_rng([seed, key, index])


def render_mvtec_like(
    category: str, size: int, rng: np.random.Generator, defect: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw one image (uint8 HxWx3) and, for a defect, its boolean mask.

    Raises:
        ValueError: unknown category or defect type.
    """
    if category not in CATEGORIES:
        raise ValueError(f"Unknown MVTec-like category {category!r}: expected one of {sorted(CATEGORIES)}.")
    spec = CATEGORIES[category]
    if defect is not None and defect != "good" and defect not in spec.defects:
        raise ValueError(f"Unknown defect {defect!r} for {category}: expected one of {sorted(spec.defects)}.")
    image, ctx = spec.render(size, rng)
    if defect is None or defect == "good":
        return to_uint8(image), None
    for _ in range(10):  # redraw the rare defect that falls (almost) outside the object
        out, soft = spec.defects[defect](image, rng, ctx)
        mask = soft > 0.5
        if mask.sum() >= max(4, size * size // 20000):
            break
    return to_uint8(out), mask


def make_mvtec_like(
    root: str | Path,
    category: str,
    *,
    n_train: int = 120,
    n_test_per_defect: int = 8,
    n_test_good: int = 10,
    size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write an MVTec-AD-like category under ``root/category`` in the original MVTec layout.

    Args:
        root: dataset root (the folder that holds category folders).
        category: one of :data:`CATEGORIES` (``hazelnut``, ``bottle``, ``carpet``).
        n_train: defect-free training images.
        n_test_per_defect: test images per defect type (each with a mask).
        n_test_good: defect-free test images.
        size: image side in pixels (square RGB).
        seed: random seed; the same seed writes byte-identical files.
        progress: show a tqdm bar.

    Returns:
        The category folder.
    """
    spec = CATEGORIES.get(category)
    if spec is None:
        raise ValueError(f"Unknown MVTec-like category {category!r}: expected one of {sorted(CATEGORIES)}.")
    folder = Path(root) / category
    jobs = [("train", "good", i) for i in range(n_train)]
    jobs += [("test", "good", i) for i in range(n_test_good)]
    jobs += [("test", d, i) for d in spec.defects for i in range(n_test_per_defect)]
    for split, defect, _ in jobs:
        (folder / split / defect).mkdir(parents=True, exist_ok=True)
        if defect != "good":
            (folder / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
    for split, defect, i in tqdm(jobs, desc=f"synthetic mvtec/{category}", disable=not progress):
        image, mask = render_mvtec_like(category, size, _rng(seed, category, split, defect, i), defect)
        Image.fromarray(image).save(folder / split / defect / f"{i:03d}.png")
        if mask is not None:
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "ground_truth" / defect / f"{i:03d}_mask.png")
    return folder
