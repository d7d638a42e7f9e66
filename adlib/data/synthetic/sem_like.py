"""SEM-nanofibre-like stand-in, modelled on the published description of the NanoTWICE data.

Carrera et al. (2017), "Defect detection in SEM images of nanofibrous materials" (IEEE Trans.
Industrial Informatics 13(2)), describe 45 grayscale SEM images of about 1024x696 pixels: 5
defect-free ones and 40 with defects, showing bright nanofibres on a dark background. The
defects are *beads* (small bright specks, or spindle-like thickenings of a fibre) and *films*
(flattened areas where fibres have fused into a smoother sheet). This generator draws images of
that kind; nothing in it comes from the real images, which this project does not have.

Layout written (the one :func:`adlib.data.sem.read_sem` expects)::

    <root>/Normal/N001.tif ...               # gray, defect-free
    <root>/Anomalous/images/A001.tif ...     # gray, with defects
    <root>/Anomalous/gt/A001.png ...         # 0/255, same stems

What an image holds (pixel sizes are fixed, so a smaller image is a smaller field of view, not a
zoomed-out one: a 32x32 patch always sees fibres of the same width):

* four depth layers of long, gently curving fibres (random orientations, 2.5-10 px wide, a
  bright rim from the SEM edge effect); deeper layers are darker and out of focus, upper
  layers hide lower ones where they cross;
* a dark background with a mild, slow brightness gradient; detector gain and offset vary
  between images; signal-dependent (shot-like) noise and faint scan-line streaks;
* *beads*: round specks (radius 4-11 px) sitting on a fibre, or spindles where a fibre swells
  to 2-4 times its width; both as bright as, or a little brighter than, the fibre;
* *films*: irregular patches (radius 22-75 px) where the fibres under them fuse into a
  smoother, somewhat brighter sheet with soft edges; fibres of higher layers still cross them.

Brightness helps a little (beads and films are slightly brighter than the fibres around them)
but does not separate them: dense fibre crossings are as bright as either, which is what the
notebook's model-free baselines measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from . import defects as D
from .textures import smooth_noise, to_uint8

REAL_SHAPE = (696, 1024)
"""(height, width) of the NanoTWICE images as published."""

N_LAYERS = 4
_DEPTH = (0.42, 0.6, 0.8, 1.0)  # brightness of the layers, back to front
_BLUR = (2.2, 1.4, 0.8, 0.4)  # out-of-focus blur of the layers (pixels)
_FIBRES_PER_LAYER = (36, 52)  # fibres per layer in a full 1024x696 field (scaled by area)


@dataclass
class _Fibre:
    """One fibre: centre-line pixels (rows, cols) and half-width per centre-line point."""

    rows: np.ndarray
    cols: np.ndarray
    half: np.ndarray
    beads: list[tuple[int, float, float]] = field(default_factory=list)
    """Spindles: (index along the centre line, swollen half-width, half length in points)."""


def _fibres(shape: tuple[int, int], rng: np.random.Generator, n: int) -> list[_Fibre]:
    """``n`` long, gently curving fibres crossing an image of ``shape``."""
    h, w = shape
    diag = float(np.hypot(h, w))
    out = []
    for _ in range(n):
        angle = rng.uniform(0, 2 * np.pi)
        through = rng.uniform(0, 1, 2) * (h, w)
        start = through - diag * np.array([np.sin(angle), np.cos(angle)])
        path = D.random_walk(rng, tuple(start), 2 * diag, angle=angle, curvature=0.008, step=0.7)
        r, c = np.rint(path).astype(int).T
        keep = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        if keep.sum() < 8:
            continue
        width = float(np.clip(rng.lognormal(np.log(4.5), 0.35), 2.5, 10.0))
        wobble = 1 + 0.08 * ndimage.gaussian_filter1d(rng.standard_normal(len(r)), 30, mode="nearest") * 4
        out.append(_Fibre(r[keep], c[keep], (width / 2 * wobble[keep]).astype(np.float32)))
    return out


def _render_layer(shape: tuple[int, int], fibres: list[_Fibre]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brightness, coverage (alpha) and spindle mask of one fibre layer.

    A fibre's cross-section is a tube (brightest along its axis) with a bright rim; where a
    spindle swells the half-width smoothly, the profile follows, so a spindle is a thicker
    stretch of the same fibre.
    """
    centre = np.zeros(shape, bool)
    half_map = np.zeros(shape, np.float32)
    base_map = np.zeros(shape, np.float32)
    for fib in fibres:
        half = fib.half.copy()
        for at, radius, length in fib.beads:
            t = (np.arange(len(half)) - at) / length
            swell = np.where(np.abs(t) < 1, np.cos(np.clip(t, -1, 1) * np.pi / 2) ** 2, 0.0)
            half = np.maximum(half, fib.half + (radius - fib.half) * swell)
        order = np.argsort(half)  # the thicker fibre wins where two cross
        rows, cols = fib.rows[order], fib.cols[order]
        centre[rows, cols] = True
        half_map[rows, cols] = np.maximum(half_map[rows, cols], half[order])
        base_map[fib.rows, fib.cols] = np.maximum(base_map[fib.rows, fib.cols], fib.half)
    if not centre.any():
        zeros = np.zeros(shape, np.float32)
        return zeros, zeros, zeros.astype(bool)
    dist, (ir, ic) = ndimage.distance_transform_edt(~centre, return_indices=True)
    half = np.maximum(half_map[ir, ic], 0.8)
    tube = np.sqrt(np.clip(1 - (dist / half) ** 2, 0, 1))
    rim = np.exp(-(((dist - 0.8 * half) / 0.9) ** 2))
    bright = (0.62 * tube + 0.33 * rim).astype(np.float32)
    alpha = np.clip(half - dist + 0.5, 0, 1).astype(np.float32)
    base = base_map[ir, ic]
    spindle = (dist <= half) & (half - base > np.maximum(1.5, 0.5 * base))
    return bright, alpha, spindle


def _speck(shape: tuple[int, int], centre: tuple[float, float], radius: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Brightness and coverage of a round bead (a small sphere: bright centre, bright rim)."""
    h, w = shape
    r0, c0 = centre
    rows, cols = np.ogrid[:h, :w]
    dist = np.hypot(rows - r0, cols - c0).astype(np.float32)
    ball = np.sqrt(np.clip(1 - (dist / radius) ** 2, 0, 1))
    rim = np.exp(-(((dist - 0.85 * radius) / 1.0) ** 2))  # SEM edge effect: a bright, sharp rim
    return (0.5 * ball + 0.5 * rim).astype(np.float32), np.clip(radius - dist + 0.5, 0, 1).astype(np.float32)


def _inside(f: _Fibre, shape: tuple[int, int], margin: int) -> np.ndarray:
    """Indices of a fibre's centre-line points at least ``margin`` px from the image border."""
    h, w = shape
    return np.flatnonzero((f.rows >= margin) & (f.rows < h - margin)
                          & (f.cols >= margin) & (f.cols < w - margin))


def render_sem_like(
    shape: int | tuple[int, int], rng: np.random.Generator, n_defects: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one SEM-like image (uint8, ``shape``) and its defect mask (bool; empty if normal).

    Args:
        shape: (height, width) in pixels (at least 64 each); an int draws a square image.
        rng: random generator.
        n_defects: beads and films to add (each kind with probability 1/2).
    """
    h, w = (shape, shape) if isinstance(shape, int) else (int(shape[0]), int(shape[1]))
    shape = (h, w)
    if min(h, w) < 64:
        raise ValueError(f"SEM-like images need at least 64x64 pixels, got {h}x{w}.")
    area = h * w / (REAL_SHAPE[0] * REAL_SHAPE[1])
    density = rng.uniform(0.8, 1.25)
    layers = [_fibres(shape, rng, max(2, int(round(rng.integers(*_FIBRES_PER_LAYER) * density * area))))
              for _ in range(N_LAYERS)]
    margin = max(12, min(h, w) // 12)
    kinds = ["bead" if rng.random() < 0.5 else "film" for _ in range(n_defects)]
    specks: list[list[tuple[tuple[float, float], float, float]]] = [[] for _ in range(N_LAYERS)]
    films: list[list[tuple[np.ndarray, float, float, float]]] = [[] for _ in range(N_LAYERS)]
    for kind in kinds:
        if kind == "bead":
            layer = int(rng.integers(1, N_LAYERS))  # beads sit on the sharper, upper layers
            candidates = [f for f in layers[layer] if len(_inside(f, shape, margin))]
            if not candidates:
                continue
            fib = candidates[int(rng.integers(len(candidates)))]
            at = int(rng.choice(_inside(fib, shape, margin)))
            boost = float(rng.uniform(1.0, 1.25))
            if rng.random() < 0.5:  # a round speck on the fibre
                radius = float(rng.uniform(4.0, 11.0))
                specks[layer].append(((float(fib.rows[at]), float(fib.cols[at])), radius, boost))
            else:  # a spindle: the fibre itself swells
                radius = float(max(rng.uniform(2.5, 4.5) * fib.half[at], fib.half[at] + 4.0))
                fib.beads.append((at, radius, radius * rng.uniform(2.0, 4.0) / 0.7))
        else:
            centre = (rng.uniform(margin, h - margin), rng.uniform(margin, w - margin))
            radius = float(rng.uniform(22.0, 75.0))
            soft = D.blob(shape, rng, centre, radius, aspect=rng.uniform(0.45, 1.0),
                          irregularity=0.3, roughness=0.06)
            soft = ndimage.gaussian_filter(soft, rng.uniform(3.0, 6.0))  # soft edges
            films[int(rng.integers(1, N_LAYERS))].append(
                (soft, float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.75, 0.95)),
                 float(rng.uniform(0.12, 0.22))))

    image = (0.07 + 0.02 * smooth_noise(shape, rng, 40.0)).astype(np.float32)
    mask = np.zeros(shape, bool)
    for k in range(N_LAYERS):
        bright, alpha, spindle = _render_layer(shape, layers[k])
        for centre, radius, boost in specks[k]:
            b, a = _speck(shape, centre, radius)
            bright = np.where(a > alpha, b * boost, bright)
            alpha = np.maximum(alpha, a)
            mask |= a > 0.5
        layer_img = ndimage.gaussian_filter(bright * _DEPTH[k], _BLUR[k])
        layer_alpha = ndimage.gaussian_filter(alpha, _BLUR[k])
        image = image * (1 - layer_alpha) + layer_img * layer_alpha
        mask |= spindle
        for soft, level, opacity, grain in films[k]:
            # Fused fibres: what lies there, blurred and flattened towards a brighter level.
            fused = 0.6 * ndimage.gaussian_filter(image, 4.0) + level * _DEPTH[k] * 0.5
            # The fused surface is smooth at the fibre scale but finely mottled (a grain of
            # 1-2 px that no fibre has); its mean brightness barely changes.
            fused = fused * (1 + grain * smooth_noise(shape, rng, 0.8))
            image = D.blend(image, soft, fused, opacity)
            mask |= soft > 0.5

    # Detector gain/offset between images, a slow gradient within one, SEM noise.
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    tilt = rng.normal(0, 0.06, 2)
    gradient = 1 + tilt[0] * (rows / h - 0.5) + tilt[1] * (cols / w - 0.5) + 0.05 * smooth_noise(shape, rng, 120.0)
    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-0.02, 0.04)
    image = ndimage.gaussian_filter(image, 0.6) * gain * gradient + offset
    noise = 0.05 * np.sqrt(np.clip(image, 0, None)) * rng.standard_normal(shape) \
        + 0.008 * rng.standard_normal(shape)
    lines = 0.008 * ndimage.gaussian_filter1d(rng.standard_normal(h), 0.7)[:, None]
    return to_uint8(image + noise + lines), mask


def make_sem_like(
    root: str | Path,
    *,
    n_normal: int = 5,
    n_anomalous: int = 40,
    size: int = 1024,
    height: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write an SEM-nanofibre-like set under ``root`` (``Normal/``, ``Anomalous/images|gt``).

    Args:
        root: dataset root.
        n_normal: defect-free images (5 in NanoTWICE).
        n_anomalous: images with 1-4 defects (beads and films), each with a mask (40 in NanoTWICE).
        size: image width in pixels (1024 in NanoTWICE).
        height: image height; None keeps NanoTWICE's aspect ratio (696 for 1024).
        seed: random seed; the same seed writes byte-identical files.
        progress: show a tqdm bar.

    Returns:
        ``root``.
    """
    root = Path(root)
    shape = (int(height) if height else int(round(size * REAL_SHAPE[0] / REAL_SHAPE[1])), int(size))
    for sub in ("Normal", "Anomalous/images", "Anomalous/gt"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    jobs = [("N", i) for i in range(1, n_normal + 1)] + [("A", i) for i in range(1, n_anomalous + 1)]
    for kind, i in tqdm(jobs, desc="synthetic sem", disable=not progress):
        rng = np.random.default_rng([seed, 0x5E3, ord(kind), i])
        n_defects = 0 if kind == "N" else int(rng.integers(1, 5))
        image, mask = render_sem_like(shape, rng, n_defects)
        if kind == "A" and not mask.any():  # a defect fell outside: draw again until one shows
            while not mask.any():
                image, mask = render_sem_like(shape, rng, max(n_defects, 1))
        if kind == "N":
            tifffile.imwrite(root / "Normal" / f"N{i:03d}.tif", image)
        else:
            tifffile.imwrite(root / "Anomalous" / "images" / f"A{i:03d}.tif", image)
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "Anomalous" / "gt" / f"A{i:03d}.png")
    return root
