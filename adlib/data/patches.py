"""Cut images into patches (numpy only, vectorised).

Coordinates are top-left corners. Patch sizes are ``int`` (square) or ``(height, width)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm.auto import tqdm

from adlib.data.io import read_image
from adlib.data.types import DataError, Sample

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def _check_fits(shape: tuple[int, ...], ph: int, pw: int, what: str) -> None:
    if ph <= 0 or pw <= 0:
        raise ValueError(f"Patch size must be positive, got {ph}x{pw}.")
    if shape[0] < ph or shape[1] < pw:
        raise ValueError(f"{what} of size {shape[0]}x{shape[1]} is smaller than the patch "
                         f"{ph}x{pw}; use a smaller patch size.")


def _windows(image: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """A (H-ph+1, W-pw+1, ph, pw, ...) view of all patches (no copy)."""
    view = sliding_window_view(image, (ph, pw), axis=(0, 1))
    if image.ndim == 3:  # (y, x, C, ph, pw) -> (y, x, ph, pw, C)
        view = np.moveaxis(view, 2, -1)
    return view


def grid_positions(length: int, size: int, stride: int, cover: bool = True) -> np.ndarray:
    """Start positions ``0, stride, ...`` along one axis; with ``cover`` the last patch touches the end."""
    starts = np.arange(0, length - size + 1, stride)
    if cover and starts[-1] != length - size:
        starts = np.append(starts, length - size)
    return starts


def grid_patches(
    image: np.ndarray, size: Size = 32, stride: Size | None = None, cover: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Cut one image into a regular grid of patches.

    Args:
        image: HxW or HxWxC array.
        size: patch size.
        stride: step between patches (default: ``size``, no overlap; smaller overlaps).
        cover: add a last row/column of patches flush with the border so that every pixel is
            covered (they overlap their neighbours).

    Returns:
        ``(patches, coords)``: (N, ph, pw[, C]) array and (N, 2) int array of (y, x) corners,
        row-major.
    """
    ph, pw = _hw(size)
    sh, sw = _hw(stride) if stride is not None else (ph, pw)
    if sh <= 0 or sw <= 0:
        raise ValueError(f"Stride must be positive, got {sh}x{sw}.")
    _check_fits(image.shape, ph, pw, "Image")
    ys = grid_positions(image.shape[0], ph, sh, cover)
    xs = grid_positions(image.shape[1], pw, sw, cover)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    coords = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.int64)
    patches = _windows(image, ph, pw)[coords[:, 0], coords[:, 1]]
    return np.ascontiguousarray(patches), coords


def random_patches(
    images: Sequence[np.ndarray] | np.ndarray,
    size: Size = 32,
    n: int = 1000,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` patches at uniformly random positions, images chosen in proportion to their
    number of patch positions.

    Args:
        images: list of HxW[xC] arrays (sizes may differ) or an (N, H, W[, C]) array.
        size: patch size.
        n: number of patches.
        rng: a numpy Generator or a seed (for reproducibility).

    Returns:
        ``(patches, coords)``: (n, ph, pw[, C]) array and (n, 3) int array of
        (image index, y, x).
    """
    ph, pw = _hw(size)
    rng = np.random.default_rng(rng)
    if len(images) == 0:
        raise ValueError("random_patches needs at least one image.")
    positions = []
    for i, img in enumerate(images):
        _check_fits(img.shape, ph, pw, f"Image {i}")
        positions.append((img.shape[0] - ph + 1) * (img.shape[1] - pw + 1))
    weights = np.asarray(positions, dtype=np.float64)
    which = rng.choice(len(images), size=n, p=weights / weights.sum())
    first = images[0]
    out = np.empty((n, ph, pw, *first.shape[2:]), dtype=first.dtype)
    coords = np.empty((n, 3), dtype=np.int64)
    coords[:, 0] = which
    for i in np.unique(which):
        idx = np.flatnonzero(which == i)
        img = images[i]
        ys = rng.integers(0, img.shape[0] - ph + 1, size=len(idx))
        xs = rng.integers(0, img.shape[1] - pw + 1, size=len(idx))
        coords[idx, 1], coords[idx, 2] = ys, xs
        out[idx] = _windows(img, ph, pw)[ys, xs]
    return out, coords


def patch_defect_fraction(mask: np.ndarray, coords: np.ndarray, size: Size) -> np.ndarray:
    """Fraction of defect pixels in each patch of ``mask`` (HxW bool), via an integral image.

    ``coords`` are (N, 2) (y, x) corners; with 3 columns the last two are used.
    """
    ph, pw = _hw(size)
    coords = np.atleast_2d(np.asarray(coords, dtype=np.int64))
    ys, xs = coords[:, -2], coords[:, -1]
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = np.asarray(mask, dtype=bool).cumsum(0).cumsum(1)
    counts = (integral[ys + ph, xs + pw] - integral[ys, xs + pw]
              - integral[ys + ph, xs] + integral[ys, xs])
    return counts / float(ph * pw)


def patch_labels(
    mask: np.ndarray,
    coords: np.ndarray,
    size: Size = 32,
    min_fraction: float = 0.0,
    min_pixels: int = 1,
) -> np.ndarray:
    """Label patches: 1 when the patch has at least ``min_pixels`` defect pixels and a defect
    fraction of at least ``min_fraction``, else 0.

    Args:
        mask: HxW bool ground truth.
        coords: (N, 2) (y, x) corners (as from :func:`grid_patches`).
        size: patch size.
        min_fraction: minimum share of defect pixels (0 = any defect pixel counts).
        min_pixels: minimum number of defect pixels.

    Returns:
        (N,) int64 array of 0/1.
    """
    ph, pw = _hw(size)
    fraction = patch_defect_fraction(mask, coords, (ph, pw))
    count = np.rint(fraction * ph * pw)
    return ((count >= max(int(min_pixels), 1)) & (fraction >= min_fraction)).astype(np.int64)


@dataclass
class PatchSet:
    """Patches for the patch protocols (RSDDs 200x160, SEM 32x32).

    Attributes:
        train: (N, ph, pw, C) uint8 defect-free training patches.
        test: (M, ph, pw, C) uint8 test patches.
        test_labels: (M,) 0/1 labels (1 = anomalous patch).
        test_masks: (M, ph, pw) bool ground truth of each test patch.
        test_source: (M,) index into ``test_samples`` of the image each test patch comes from.
        test_coords: (M, 2) (y, x) corner of each test patch in its image.
        train_source: (N,) index into ``train_samples``; ``train_coords``: (N, 2) corners.
        train_samples / test_samples: the images the patches were cut from (never shared).
        patch_size: (ph, pw).
    """

    train: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    test_masks: np.ndarray
    test_source: np.ndarray
    test_coords: np.ndarray
    train_source: np.ndarray
    train_coords: np.ndarray
    train_samples: list[Sample] = field(default_factory=list)
    test_samples: list[Sample] = field(default_factory=list)
    patch_size: tuple[int, int] = (32, 32)

    def summary(self) -> str:
        """One line with the patch counts."""
        n_bad = int(self.test_labels.sum())
        return (f"{len(self.train)} train patches from {len(self.train_samples)} images; "
                f"{len(self.test)} test patches ({len(self.test) - n_bad} normal, {n_bad} "
                f"anomalous) from {len(self.test_samples)} images; patch {self.patch_size}")


def labelled_grid_patches(
    samples: Sequence[Sample],
    size: Size,
    stride: Size | None = None,
    *,
    channels: int | None = None,
    cover: bool = True,
    min_fraction: float = 0.0,
    min_pixels: int = 1,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid patches of several images with their masks and labels (samples without a mask file
    count as defect-free).

    Returns:
        ``(patches, labels, masks, source, coords)``: (M, ph, pw, C) uint8, (M,) int64 labels,
        (M, ph, pw) bool masks, (M,) index of the sample, (M, 2) corners.
    """
    ph, pw = _hw(size)
    parts: list[tuple[np.ndarray, ...]] = []
    for i, s in enumerate(tqdm(samples, desc="patches", unit="img", disable=not progress,
                               leave=False)):
        img = read_image(s.path, channels=channels)
        mask = s.load_mask_or_empty(img.shape[:2])
        try:
            patches, coords = grid_patches(img, (ph, pw), stride, cover=cover)
        except ValueError as err:
            raise DataError(f"{s.path}: {err}") from err
        labels = patch_labels(mask, coords, (ph, pw), min_fraction, min_pixels)
        masks = _windows(mask, ph, pw)[coords[:, 0], coords[:, 1]]
        parts.append((patches, labels, masks, np.full(len(coords), i, dtype=np.int64), coords))
    if not parts:
        raise ValueError("labelled_grid_patches needs at least one sample.")
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]
