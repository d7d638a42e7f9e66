"""SEM-nanofibre-like stand-in (NanoTWICE look): gray fibre networks with beads and films.

Layout written (the one the SEM reader expects)::

    <root>/Normal/N001.tif ...               # gray, defect-free
    <root>/Anomalous/images/A001.tif ...     # gray, with anomalies
    <root>/Anomalous/gt/A001.png ...         # 0/255, same stems

Anomalies, as in the seed project: *beads* (bright blobs sitting on a fibre) and *films* (thin
membranes filling the dark gaps between fibres; fibres stay visible on top).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from . import defects as D
from .textures import smooth_noise, texture_crop, to_uint8


def _fibres(size: int, rng: np.random.Generator, n_layers: int = 3) -> tuple[np.ndarray, list]:
    """Render layered fibre networks; returns brightness and (centre-line mask, width map) per layer."""
    s = size
    scale = s / 512
    image = np.zeros((s, s), np.float32)
    layers = []
    for layer in range(n_layers):
        centre = np.zeros((s, s), bool)
        width_map = np.zeros((s, s), np.float32)
        n = int(rng.integers(14, 22))
        for _ in range(n):
            start = rng.uniform(-0.1, 1.1, 2) * s
            path = D.random_walk(rng, tuple(start), rng.uniform(0.8, 1.6) * s, curvature=0.03,
                                 step=0.75)
            r, c = np.rint(path).astype(int).T
            keep = (r >= 0) & (r < s) & (c >= 0) & (c < s)
            centre[r[keep], c[keep]] = True
            width_map[r[keep], c[keep]] = rng.uniform(2.0, 6.0) * scale + 1.0
        # Close the 1-px gaps between path samples, then measure distance to the centre line.
        dist, (ir, ic) = ndimage.distance_transform_edt(~centre, return_indices=True)
        half = width_map[ir, ic] / 2
        tube = np.sqrt(np.clip(1 - (dist / np.maximum(half, 0.5)) ** 2, 0, 1))
        rim = np.exp(-(((dist - half) / max(0.8 * scale, 0.6)) ** 2))  # SEM edge brightening
        depth = 0.55 + 0.45 * layer / max(n_layers - 1, 1)
        image = np.maximum(image, depth * (0.55 * tube + 0.3 * rim * (dist <= half + 1)))
        layers.append((centre, half, dist))
    return image, layers


def render_sem_like(
    size: int, rng: np.random.Generator, n_anomalies: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one SEM-like image (uint8 gray) and its anomaly mask (bool, empty if normal)."""
    s = size
    shape = (s, s)
    fibres, layers = _fibres(s, rng)
    background = 0.12 + 0.04 * smooth_noise(shape, rng, s / 16)
    mask = np.zeros(shape, bool)
    extra = np.zeros(shape, np.float32)
    for _ in range(n_anomalies):
        if rng.random() < 0.5:  # film: a membrane in the gaps, under the top fibres
            centre = (rng.uniform(0.15, 0.85) * s, rng.uniform(0.15, 0.85) * s)
            soft = D.blob(shape, rng, centre, rng.uniform(0.05, 0.14) * s, aspect=rng.uniform(0.5, 1),
                          irregularity=0.3, roughness=0.1)
            membrane = rng.uniform(0.28, 0.42) + 0.05 * texture_crop("gravel", shape, rng, scale=(0.8, 1.2))
            background = D.blend(background, soft, membrane, rng.uniform(0.7, 1.0))
            mask |= soft > 0.5
        else:  # bead: an elongated bright blob centred on a fibre, along it
            centre_line, half, _ = layers[int(rng.integers(1, len(layers)))]
            rows, cols = np.nonzero(centre_line[int(0.1 * s) : int(0.9 * s), int(0.1 * s) : int(0.9 * s)])
            k = int(rng.integers(len(rows)))
            centre = (rows[k] + 0.1 * s, cols[k] + 0.1 * s)
            radius = rng.uniform(6, 16) * s / 512 + 1.5
            soft = D.blob(shape, rng, centre, radius, aspect=rng.uniform(0.5, 0.9), irregularity=0.1)
            dome = np.sqrt(np.clip(soft, 0, 1)) * rng.uniform(0.6, 0.85)
            extra = np.maximum(extra, dome)
            mask |= soft > 0.5
    image = np.maximum(np.maximum(background, fibres), extra)
    image = ndimage.gaussian_filter(image, 0.7) + 0.03 * rng.standard_normal(shape)
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
