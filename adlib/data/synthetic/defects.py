"""Defect shapes (irregular blobs, curved strokes, ellipses) and how they are blended in.

Every shape function returns a *soft* mask in [0, 1] (anti-aliased edges); the ground truth is
``soft > 0.5``. Shapes vary in size, position, orientation and outline from one call to the next.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .textures import polar_grid, smooth_noise


def blob(
    shape: tuple[int, int],
    rng: np.random.Generator,
    centre: tuple[float, float],
    radius: float,
    *,
    aspect: float = 1.0,
    angle: float | None = None,
    irregularity: float = 0.25,
    roughness: float = 0.0,
) -> np.ndarray:
    """An irregular blob: an ellipse whose radius is perturbed by a few random harmonics.

    Args:
        shape: image (height, width).
        rng: random generator.
        centre: (row, col) of the blob.
        radius: mean radius in pixels (along the major axis).
        aspect: minor/major axis ratio (1 = round).
        angle: orientation in radians; ``None`` draws one.
        irregularity: amplitude of the low harmonics (0 = a clean ellipse).
        roughness: amplitude of fine, noise-like edge fraying (0 = smooth outline).

    Returns:
        Soft mask (float32, [0, 1]).
    """
    theta0 = rng.uniform(0, np.pi) if angle is None else angle
    dist, phi = polar_grid(shape, centre)
    rel = phi - theta0
    # Ellipse radius as a function of angle, then harmonics.
    r_ell = radius * aspect / np.sqrt((aspect * np.cos(rel)) ** 2 + np.sin(rel) ** 2)
    harmonics = np.zeros_like(phi)
    for k in range(2, 6):
        harmonics += rng.normal(0, irregularity / k) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    r_edge = r_ell * np.clip(1 + harmonics, 0.3, None)
    if roughness > 0:
        r_edge = r_edge * (1 + roughness * smooth_noise(shape, rng, max(radius / 8, 1.0)))
    return np.clip(r_edge - dist + 0.5, 0, 1).astype(np.float32)


def random_walk(
    rng: np.random.Generator,
    start: tuple[float, float],
    length: float,
    *,
    angle: float | None = None,
    curvature: float = 0.15,
    step: float = 2.0,
) -> np.ndarray:
    """Points (N x 2, row/col) of a smoothly curving path of the given length."""
    n = max(int(length / step), 2)
    theta = rng.uniform(0, 2 * np.pi) if angle is None else angle
    turns = ndimage.gaussian_filter1d(rng.normal(0, curvature, n), 2.0, mode="nearest")
    headings = theta + np.cumsum(turns)
    steps = np.stack([np.sin(headings), np.cos(headings)], axis=1) * step
    return np.asarray(start, dtype=np.float32) + np.concatenate([[[0, 0]], np.cumsum(steps, 0)])


def stroke(
    shape: tuple[int, int],
    points: np.ndarray,
    width: float | np.ndarray,
) -> np.ndarray:
    """Rasterise a polyline with a (possibly varying) width into a soft mask.

    Args:
        shape: image (height, width).
        points: (N, 2) row/col vertices.
        width: line width in pixels, scalar or one value per vertex (tapering cracks).

    Returns:
        Soft mask (float32, [0, 1]).
    """
    points = np.asarray(points, dtype=np.float32)
    widths = np.broadcast_to(np.asarray(width, dtype=np.float32), (len(points),))
    # Densely resample the polyline (half-pixel steps), then mark the centre line.
    seg = np.hypot(*np.diff(points, axis=0).T)
    t = np.concatenate([[0], np.cumsum(seg)])
    dense_t = np.arange(0, t[-1] + 0.5, 0.5)
    rows = np.interp(dense_t, t, points[:, 0])
    cols = np.interp(dense_t, t, points[:, 1])
    w = np.interp(dense_t, t, widths)
    r, c = np.rint(rows).astype(int), np.rint(cols).astype(int)
    keep = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    if not keep.any():
        return np.zeros(shape, np.float32)
    centre = np.zeros(shape, bool)
    width_map = np.zeros(shape, np.float32)
    centre[r[keep], c[keep]] = True
    width_map[r[keep], c[keep]] = w[keep]
    dist, (ir, ic) = ndimage.distance_transform_edt(~centre, return_indices=True)
    half = width_map[ir, ic] / 2
    return np.clip(half - dist + 0.5, 0, 1).astype(np.float32)


def ellipse_mask(
    shape: tuple[int, int], centre: tuple[float, float], axes: tuple[float, float], angle: float
) -> np.ndarray:
    """Boolean filled ellipse: semi-axes ``axes`` (along ``angle``, across), centre (row, col)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dy, dx = rows - centre[0], cols - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / max(axes[0], 0.5)) ** 2 + (v / max(axes[1], 0.5)) ** 2 <= 1.0


def covering_ellipse(mask: np.ndarray, margin: float) -> np.ndarray:
    """The coarse ellipse (DAGM-style label) that covers a defect mask plus a margin in pixels."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.zeros(mask.shape, bool)
    centre = (rows.mean(), cols.mean())
    coords = np.stack([cols - centre[1], rows - centre[0]])
    if len(rows) > 2:
        _, vecs = np.linalg.eigh(np.cov(coords))
        major = vecs[:, -1]
    else:
        major = np.array([1.0, 0.0])
    angle = float(np.arctan2(major[1], major[0]))
    u = coords[0] * np.cos(angle) + coords[1] * np.sin(angle)
    v = -coords[0] * np.sin(angle) + coords[1] * np.cos(angle)
    axes = (np.abs(u).max() * 1.15 + margin, np.abs(v).max() * 1.15 + margin)
    return ellipse_mask(mask.shape, centre, axes, angle)


def blend(image: np.ndarray, soft: np.ndarray, target: np.ndarray | float, alpha: float) -> np.ndarray:
    """Alpha-blend ``target`` into ``image`` where ``soft`` is on (works for gray or RGB)."""
    weight = alpha * soft
    if image.ndim == 3:
        weight = weight[..., None]
    return image * (1 - weight) + np.asarray(target, dtype=np.float32) * weight


def point_inside(
    rng: np.random.Generator, region: np.ndarray, margin: int = 0
) -> tuple[float, float]:
    """A random (row, col) inside a boolean region, at least ``margin`` pixels from its border."""
    inner = ndimage.binary_erosion(region, iterations=margin) if margin > 0 else region
    rows, cols = np.nonzero(inner if inner.any() else region)
    k = rng.integers(len(rows))
    return float(rows[k]), float(cols[k])
