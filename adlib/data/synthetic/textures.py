"""Texture sources for the synthetic stand-ins: real photographed textures and smooth noise.

The photographs are the ones scikit-image ships inside its wheel (``brick``, ``grass``,
``gravel``: 512x512 grayscale), so no download is ever needed. Normal images vary through
random crops, rotations, scales and intensity jitter of these photographs.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy import ndimage

TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")
"""Photographed textures available offline in ``skimage.data`` (no pooch download)."""


@cache
def load_texture(name: str) -> np.ndarray:
    """Return a photographed texture as a zero-mean, unit-variance float32 array (512x512).

    Args:
        name: one of :data:`TEXTURES`.

    Raises:
        ValueError: for a name that is not shipped with scikit-image.
    """
    if name not in TEXTURES:
        raise ValueError(f"Unknown texture {name!r}: expected one of {', '.join(TEXTURES)}.")
    import skimage.data  # local import: keeps `import adlib.data.synthetic` cheap

    image = getattr(skimage.data, name)().astype(np.float32)
    if image.ndim == 3:
        image = image.mean(axis=2)
    image = (image - image.mean()) / (image.std() + 1e-6)
    image.setflags(write=False)
    return image


def texture_crop(
    name: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    angle: float | None = None,
    stretch: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """A randomly placed, rotated and scaled crop of a photographed texture.

    Args:
        name: texture name (see :data:`TEXTURES`).
        shape: output (height, width).
        rng: random generator.
        scale: range of texture pixels per output pixel (below 1 magnifies the photograph).
        angle: rotation in radians; ``None`` draws one uniformly.
        stretch: extra (row, column) scale factors, e.g. ``(4, 1)`` stretches features along columns.

    Returns:
        float32 array of ``shape``, roughly zero mean and unit variance.
    """
    texture = load_texture(name)
    height, width = shape
    theta = rng.uniform(0, 2 * np.pi) if angle is None else angle
    s = rng.uniform(*scale)
    centre = rng.uniform(0, texture.shape[0], size=2)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    rows = (rows - height / 2) * s / stretch[0]
    cols = (cols - width / 2) * s / stretch[1]
    cos, sin = np.cos(theta), np.sin(theta)
    coords = np.stack([centre[0] + cos * rows - sin * cols, centre[1] + sin * rows + cos * cols])
    out = ndimage.map_coordinates(texture, coords, order=1, mode="mirror")
    return ((out - out.mean()) / (out.std() + 1e-6)).astype(np.float32)


def smooth_noise(
    shape: tuple[int, int], rng: np.random.Generator, sigma: float | tuple[float, float]
) -> np.ndarray:
    """Gaussian-filtered white noise, normalised to zero mean and unit variance.

    Args:
        shape: output (height, width).
        rng: random generator.
        sigma: Gaussian width in pixels (scalar or per axis); larger is smoother.
    """
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (2,))
    # Large blurs: filter a coarser grid and upsample (same look, a fraction of the cost).
    factors = np.maximum(1, sigmas // 4).astype(int)
    small = tuple(int(-(-n // f)) for n, f in zip(shape, factors, strict=True))
    noise = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigmas / factors, mode="wrap")
    if (factors > 1).any():
        noise = ndimage.zoom(noise, (shape[0] / small[0], shape[1] / small[1]), order=1, grid_mode=True,
                             mode="grid-wrap")[: shape[0], : shape[1]]
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip a [0, 1] float image and convert it to uint8."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def polar_grid(
    shape: tuple[int, int], centre: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distance and angle of every pixel from ``centre`` (row, col)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    dy, dx = rows - centre[0], cols - centre[1]
    return np.hypot(dy, dx), np.arctan2(dy, dx)


def shear_columns(field: np.ndarray, tilt: float) -> np.ndarray:
    """Lean a periodic field's vertical structures by ``tilt`` radians (rows stay, columns shift).

    The field must tile seamlessly (as :func:`smooth_noise` does): samples wrap around.
    """
    height, width = field.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    cols = cols + np.float32(np.tan(tilt)) * (rows - height / 2)
    return ndimage.map_coordinates(field, [rows, cols], order=1, mode="grid-wrap")


def streaks(
    shape: tuple[int, int],
    rng: np.random.Generator,
    along: float | None,
    across: float,
    tilt: float = 0.0,
) -> np.ndarray:
    """Vertical streaks: smooth noise much longer down the columns than across, leaning by ``tilt``.

    Args:
        shape: output (height, width).
        rng: random generator.
        along: Gaussian width down the columns in pixels; ``None``: streaks that run the full
            height (one random column profile repeated on every row).
        across: Gaussian width across the columns in pixels (sets the streak width).
        tilt: lean in radians (positive: a streak moves left going down, as in class 8).

    Returns:
        float32 array of ``shape``, zero mean and unit variance.
    """
    if along is None:
        profile = smooth_noise((8, shape[1]), rng, (0.5, across))[0]
        field = np.repeat(profile[None, :], shape[0], axis=0).astype(np.float32)
    else:
        field = smooth_noise(shape, rng, (along, across)).astype(np.float32)
    out = shear_columns(field, tilt) if tilt else field
    return ((out - out.mean()) / (out.std() + 1e-6)).astype(np.float32)
