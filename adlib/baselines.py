"""Classical (non-deep) anomaly-detection baselines, so students see what deep models add.

- :class:`VariationModel`: a per-pixel mean/std model of the defect-free images (the "variation
  model" of classical machine vision). Works when objects are aligned; fails on textures and
  on objects that move or rotate.
- :class:`PatchPCA`: principal-component reconstruction of small patches; the anomaly map is
  the per-pixel reconstruction residual, averaged over overlapping patches.

Both take images as float arrays in [0, 1] with shape (N, H, W) or (N, H, W, C) and return
anomaly maps of shape (N, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import PCA

from adlib.data.patches import grid_patches, random_patches
from adlib.maps import stitch_patches


def _as_nhwc(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise ValueError(f"Expected images (N, H, W) or (N, H, W, C), got shape {arr.shape}.")
    if len(arr) == 0:
        raise ValueError("Expected at least one image.")
    return arr


@dataclass
class VariationModel:
    """Per-pixel Gaussian model of defect-free images: score = |x - mean| / (std + eps).

    Args:
        eps: added to the per-pixel standard deviation (avoids division by ~0 on flat regions).
    """

    eps: float = 0.02
    mean_: np.ndarray | None = field(default=None, repr=False)
    std_: np.ndarray | None = field(default=None, repr=False)

    def fit(self, images: np.ndarray) -> VariationModel:
        """Estimate the per-pixel mean and standard deviation of defect-free ``images``."""
        arr = _as_nhwc(images)
        self.mean_ = arr.mean(axis=0)
        self.std_ = arr.std(axis=0)
        return self

    def score_maps(self, images: np.ndarray) -> np.ndarray:
        """Anomaly maps (N, H, W): normalised deviation, averaged over channels."""
        if self.mean_ is None or self.std_ is None:
            raise RuntimeError("VariationModel.fit must be called before score_maps.")
        arr = _as_nhwc(images)
        if arr.shape[1:] != self.mean_.shape:
            raise ValueError(f"Images are {arr.shape[1:]}, the model was fitted on {self.mean_.shape}.")
        z = np.abs(arr - self.mean_) / (self.std_ + self.eps)
        return z.mean(axis=-1).astype(np.float32)


@dataclass
class PatchPCA:
    """PCA reconstruction of ``patch`` x ``patch`` patches.

    Args:
        patch: patch side in pixels.
        n_components: principal components kept (int) or explained-variance fraction (float < 1).
        n_train_patches: random training patches drawn from the defect-free images.
        stride: stride of the overlapping test patches (default: half a patch).
        seed: seed for the patch sampling.
    """

    patch: int = 8
    n_components: int | float = 16
    n_train_patches: int = 20_000
    stride: int | None = None
    seed: int = 0
    pca_: PCA | None = field(default=None, repr=False)

    def fit(self, images: np.ndarray) -> PatchPCA:
        """Fit the PCA on random patches of the defect-free ``images``."""
        arr = _as_nhwc(images)
        patches, _ = random_patches(arr, size=self.patch, n=self.n_train_patches, rng=self.seed)
        flat = patches.reshape(len(patches), -1)
        n_comp = self.n_components
        if isinstance(n_comp, int):
            n_comp = min(n_comp, flat.shape[1], len(flat))
        self.pca_ = PCA(n_components=n_comp, random_state=self.seed).fit(flat)
        return self

    def score_maps(self, images: np.ndarray) -> np.ndarray:
        """Anomaly maps (N, H, W): squared patch reconstruction residual, stitched over overlaps."""
        if self.pca_ is None:
            raise RuntimeError("PatchPCA.fit must be called before score_maps.")
        arr = _as_nhwc(images)
        stride = self.stride or max(1, self.patch // 2)
        out = np.empty(arr.shape[:3], dtype=np.float32)
        for i, image in enumerate(arr):
            patches, coords = grid_patches(image, size=self.patch, stride=stride)
            flat = patches.reshape(len(patches), -1)
            recon = self.pca_.inverse_transform(self.pca_.transform(flat))
            residual = ((flat - recon) ** 2).reshape(patches.shape).mean(axis=-1)
            out[i] = stitch_patches(residual, coords, image.shape[:2], self.patch)
        return out
