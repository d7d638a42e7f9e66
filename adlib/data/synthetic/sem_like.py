"""SEM-nanofibre-like stand-in (NanoTWICE look): gray fibre networks with beads and films.

Layout written (the one the SEM reader expects)::

    <root>/Normal/N001.tif ...               # gray, defect-free
    <root>/Anomalous/images/A001.tif ...     # gray, with anomalies
    <root>/Anomalous/gt/A001.png ...         # 0/255, same stems

Anomalies, as in the seed project and the real NanoTWICE images, are STRUCTURAL, not brightness
outliers:

* *beads*: a fibre swells into a spindle-shaped lump. The bead is rendered with the fibre's own
  profile and layer depth, so it is exactly as bright as the fibre it sits on; what differs is
  its thickness.
* *films*: thin, partly translucent, finely textured membranes spanning the gaps between fibres,
  at an intensity in the range of the (deeper) fibres; the fibres of the layers above stay on
  top, those below show through dimmed.

Brightness and contrast vary between images (detector gain and offset) and slowly within an
image (charging, uneven illumination), and the fibre density varies between images, so a patch's
mean intensity says little about whether it contains a defect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from . import defects as D
from .textures import smooth_noise, texture_crop, to_uint8


@dataclass
class _Fibre:
    """One fibre: its centre-line pixels (rows, cols) and its width in pixels."""

    rows: np.ndarray
    cols: np.ndarray
    width: float


def _draw_fibres(s: int, rng: np.random.Generator, n: int) -> list[_Fibre]:
    """Random curving fibres crossing (and partly leaving) an ``s`` x ``s`` image."""
    scale = s / 512
    fibres = []
    for _ in range(n):
        start = rng.uniform(-0.1, 1.1, 2) * s
        path = D.random_walk(rng, tuple(start), rng.uniform(0.8, 1.6) * s, curvature=0.03, step=0.75)
        r, c = np.rint(path).astype(int).T
        keep = (r >= 0) & (r < s) & (c >= 0) & (c < s)
        if keep.sum() > 2:
            fibres.append(_Fibre(r[keep], c[keep], float(rng.uniform(2.0, 6.0) * scale + 1.0)))
    return fibres


def _render_layer(s: int, fibres: list[_Fibre], beads: list[tuple[int, int, float, float]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Brightness (before the layer's depth factor) and bead mask of one fibre layer.

    ``beads`` are ``(fibre index, centre index along it, radius, half length)``: the fibre's
    half-width swells smoothly to ``radius`` over ``half length`` pixels of arc, so a bead has the
    fibre's own tube profile and edge brightening.
    """
    scale = s / 512
    centre = np.zeros((s, s), bool)
    half_map = np.zeros((s, s), np.float32)
    base_map = np.zeros((s, s), np.float32)
    for f_index, fib in enumerate(fibres):
        half = np.full(len(fib.rows), fib.width / 2, np.float32)
        for b_fibre, b_at, radius, length in beads:
            if b_fibre == f_index:
                t = (np.arange(len(fib.rows)) - b_at) * 0.75 / length  # arc length / half length
                swell = np.where(np.abs(t) < 1, np.cos(np.clip(t, -1, 1) * np.pi / 2) ** 2, 0.0)
                half = np.maximum(half, fib.width / 2 + (radius - fib.width / 2) * swell)
        order = np.argsort(half)  # thicker points win where fibres cross
        centre[fib.rows, fib.cols] = True
        half_map[fib.rows[order], fib.cols[order]] = np.maximum(
            half_map[fib.rows[order], fib.cols[order]], half[order])
        base_map[fib.rows, fib.cols] = np.maximum(base_map[fib.rows, fib.cols], fib.width / 2)
    dist, (ir, ic) = ndimage.distance_transform_edt(~centre, return_indices=True)
    half = np.maximum(half_map[ir, ic], 0.5)
    tube = np.sqrt(np.clip(1 - (dist / half) ** 2, 0, 1))
    rim = np.exp(-(((dist - half) / max(0.8 * scale, 0.6)) ** 2)) * (dist <= half + 1)
    brightness = 0.55 * tube + 0.3 * rim
    bead = (dist <= half) & (half > 1.6 * base_map[ir, ic] + 1.0)
    return brightness.astype(np.float32), bead


def render_sem_like(
    size: int, rng: np.random.Generator, n_anomalies: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one SEM-like image (uint8 gray) and its anomaly mask (bool, empty if normal)."""
    s = size
    shape = (s, s)
    scale = s / 512
    n_layers = 3
    density = rng.uniform(0.7, 1.3)  # fibres per layer vary between images
    layers = [_draw_fibres(s, rng, int(round(rng.integers(14, 22) * density))) for _ in range(n_layers)]
    depths = [0.55 + 0.45 * k / (n_layers - 1) for k in range(n_layers)]

    kinds = ["bead" if rng.random() < 0.5 else "film" for _ in range(n_anomalies)]
    beads: list[list[tuple[int, int, float, float]]] = [[] for _ in range(n_layers)]
    lo, hi = int(0.08 * s), int(0.92 * s)
    for kind in kinds:
        if kind != "bead":
            continue
        layer = int(rng.integers(0, n_layers))
        inside = [i for i, f in enumerate(layers[layer])
                  if ((f.rows >= lo) & (f.rows < hi) & (f.cols >= lo) & (f.cols < hi)).any()]
        if not inside:
            continue
        f_index = int(rng.choice(inside))
        fib = layers[layer][f_index]
        at = int(rng.choice(np.flatnonzero((fib.rows >= lo) & (fib.rows < hi)
                                           & (fib.cols >= lo) & (fib.cols < hi))))
        radius = max(rng.uniform(6.0, 13.0) * scale + 1.0, fib.width / 2 + 1.5)
        beads[layer].append((f_index, at, radius, radius * rng.uniform(1.4, 2.6)))

    # Films: a translucent textured membrane above layer ``k`` (fibres of layers > k stay on top).
    films = []
    for kind in kinds:
        if kind != "film":
            continue
        centre = (rng.uniform(0.15, 0.85) * s, rng.uniform(0.15, 0.85) * s)
        soft = D.blob(shape, rng, centre, rng.uniform(0.05, 0.12) * s, aspect=rng.uniform(0.5, 1),
                      irregularity=0.35, roughness=0.08)
        texture = 0.2 * texture_crop("gravel", shape, rng, scale=(1.2, 1.8)) \
            + 0.3 * smooth_noise(shape, rng, 1.2 * scale + 0.5)
        films.append((int(rng.integers(0, n_layers - 1)), soft, texture, rng.uniform(0.35, 0.65),
                      rng.uniform(0.6, 0.9)))

    background = 0.12 + 0.03 * smooth_noise(shape, rng, s / 16)
    image = background
    mask = np.zeros(shape, bool)
    for k, (fibres, depth) in enumerate(zip(layers, depths, strict=True)):
        bright, bead = _render_layer(s, fibres, beads[k])
        image = np.maximum(image, depth * bright)
        mask |= bead
        for layer, soft, texture, opacity, level in films:
            if layer == k:
                # Membrane intensity: in the range of the deeper fibres' mean brightness.
                membrane = level * 0.4 * depths[1] * (1 + texture)
                image = D.blend(image, soft, membrane, opacity)
                mask |= soft > 0.5

    # Global (between images) and slow (within an image) brightness and contrast changes.
    gain = rng.uniform(0.8, 1.25) * (1 + 0.15 * smooth_noise(shape, rng, s / 4))
    offset = rng.uniform(-0.04, 0.06)
    image = ndimage.gaussian_filter(image, 0.7) * gain + offset + 0.03 * rng.standard_normal(shape)
    return to_uint8(image), mask


def make_sem_like(
    root: str | Path,
    *,
    n_normal: int = 10,
    n_anomalous: int = 10,
    size: int = 512,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write an SEM-nanofibre-like set under ``root`` (``Normal/``, ``Anomalous/images|gt``).

    Args:
        root: dataset root.
        n_normal: defect-free images.
        n_anomalous: images with 1-4 anomalies (beads and films), each with a mask.
        size: image side in pixels.
        seed: random seed; the same seed writes byte-identical files.
        progress: show a tqdm bar.

    Returns:
        ``root``.
    """
    root = Path(root)
    for sub in ("Normal", "Anomalous/images", "Anomalous/gt"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    jobs = [("N", i) for i in range(1, n_normal + 1)] + [("A", i) for i in range(1, n_anomalous + 1)]
    for kind, i in tqdm(jobs, desc="synthetic sem", disable=not progress):
        rng = np.random.default_rng([seed, 0x5E3, ord(kind), i])
        n_anomalies = 0 if kind == "N" else int(rng.integers(1, 5))
        image, mask = render_sem_like(size, rng, n_anomalies)
        if kind == "N":
            tifffile.imwrite(root / "Normal" / f"N{i:03d}.tif", image)
        else:
            tifffile.imwrite(root / "Anomalous" / "images" / f"A{i:03d}.tif", image)
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "Anomalous" / "gt" / f"A{i:03d}.png")
    return root
