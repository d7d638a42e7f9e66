"""PaDiM (Defard et al., ICPR 2021): one Gaussian per image position over pretrained features.

At every position (i, j) of the feature grid, the embeddings of the defect-free training images
are modelled by a multivariate Gaussian N(mu_ij, Sigma_ij); a test embedding's anomaly score is
its Mahalanobis distance to that Gaussian. A random subset of the embedding channels is kept
(the paper keeps 100 of 448 for ResNet-18: nearly as good, far cheaper), and ``eps * I`` is added
to every covariance so that it can be inverted with few training images. Because each position
has its own Gaussian, PaDiM assumes aligned images (objects in the same place), unlike PatchCore.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["random_channels", "Padim"]


def random_channels(total: int, keep: int | None, seed: int = 0) -> list[int] | None:
    """A sorted random subset of ``keep`` channel indices out of ``total`` (None: keep all)."""
    if keep is None or keep >= total:
        return None
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(total, generator=gen)[:keep].tolist())


@dataclass
class Padim:
    """Per-position Gaussians over embeddings ``(N, D, h, w)`` and their Mahalanobis maps.

    Args:
        eps: ridge added to each covariance (the paper's 0.01).
    """

    eps: float = 0.01
    mean: torch.Tensor | None = field(default=None, repr=False)
    """``(h*w, D)`` per-position means."""
    precision: torch.Tensor | None = field(default=None, repr=False)
    """``(h*w, D, D)`` inverse covariances."""
    shape: tuple[int, int] | None = None

    def fit(self, embeddings: torch.Tensor) -> Padim:
        """Estimate mean and covariance at every position from defect-free embeddings.

        With a single image the covariance is ``eps * I`` (the distance becomes Euclidean).
        ``embeddings`` may be float16 to halve the memory they take; the statistics are float64.
        """
        n, d, h, w = embeddings.shape
        if n < 1:
            raise ValueError("PaDiM needs at least one training image.")
        x = embeddings.reshape(n, d, h * w)  # a view: no copy of the (possibly float16) input
        self.mean = torch.empty(h * w, d)
        self.precision = torch.empty(h * w, d, d)
        eye = self.eps * torch.eye(d, dtype=torch.float64)
        for lo in range(0, h * w, 512):  # positions in chunks: float64 copies stay small
            xs = x[:, :, lo:lo + 512].permute(2, 0, 1).double()  # (chunk, n, d)
            mean = xs.mean(1)
            xc = xs - mean[:, None]
            cov = xc.transpose(1, 2) @ xc / max(n - 1, 1) + eye  # one image: eps * I
            self.mean[lo:lo + 512] = mean.float()
            self.precision[lo:lo + 512] = torch.linalg.inv(cov).float()
        self.shape = (h, w)
        return self

    def patch_scores(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mahalanobis distances ``(N, h, w)`` and image scores (their maximum) ``(N,)``."""
        if self.mean is None or self.precision is None:
            raise RuntimeError("Padim.fit must be called before scoring.")
        n, d, h, w = embeddings.shape
        if (h, w) != self.shape or d != self.mean.shape[1]:
            raise ValueError(f"embeddings {tuple(embeddings.shape)} do not match the fitted "
                             f"grid {self.shape} with {self.mean.shape[1]} channels")
        delta = embeddings.float().permute(2, 3, 0, 1).reshape(h * w, n, d) - self.mean[:, None]
        m2 = ((delta @ self.precision) * delta).sum(-1).clamp_min(0)  # (h*w, N)
        maps = m2.sqrt().T.reshape(n, h, w)
        return maps, maps.reshape(n, -1).max(1).values

    @property
    def memory_bytes(self) -> int:
        """Size of the means and precision matrices in bytes."""
        if self.mean is None or self.precision is None:
            return 0
        return (self.mean.numel() + self.precision.numel()) * 4
