"""The seed-001 convolutional autoencoder baseline: a dense latent bottleneck (1024 in the seed).

Encoder: stride-2 convolution blocks from the image down to a 4x4 (or larger) map, then a
linear layer to the latent vector. Decoder: the mirror image, ending in ``tanh`` because inputs
are normalised with mean 0.5 / std 0.5 to [-1, 1]. The image anomaly score is computed from the
reconstruction error (see :func:`reconstruction_errors`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ConvAutoencoder", "reconstruction_errors"]


def _block_down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _block_up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder with a dense latent code.

    Args:
        image_size: input side (square), a multiple of ``2**depth``; 256 in the seed.
        channels: image channels (1 or 3).
        latent_dim: size of the dense bottleneck (1024 in the seed).
        width: channels after the first block; doubled per block up to ``max_width``.
        depth: number of stride-2 blocks; ``None`` = down to a 4x4 map.
        max_width: cap on the channel count.

    Raises:
        ValueError: ``image_size`` is not divisible by ``2**depth``.
    """

    def __init__(self, image_size: int = 256, channels: int = 3, latent_dim: int = 1024,
                 width: int = 32, depth: int | None = None, max_width: int = 256) -> None:
        super().__init__()
        if depth is None:
            depth = int(math.log2(image_size // 4)) if image_size >= 8 else 0
        if depth < 1 or image_size % 2**depth:
            raise ValueError(
                f"image_size={image_size} with depth={depth}: the size must be divisible by "
                f"2**depth and depth >= 1; use e.g. image_size=64, 128 or 256."
            )
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        widths = [min(width * 2**i, max_width) for i in range(depth)]
        self.bottom = image_size // 2**depth
        self._bottom_shape = (widths[-1], self.bottom, self.bottom)
        n_flat = widths[-1] * self.bottom**2

        down: list[nn.Module] = []
        c_in = channels
        for c_out in widths:
            down.append(_block_down(c_in, c_out))
            c_in = c_out
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(n_flat, latent_dim))

        self.expand = nn.Sequential(nn.Linear(latent_dim, n_flat), nn.ReLU(inplace=True))
        up: list[nn.Module] = []
        rev = widths[::-1]
        for c_in, c_out in zip(rev[:-1], rev[1:], strict=True):
            up.append(_block_up(c_in, c_out))
        up += [nn.ConvTranspose2d(rev[-1], channels, 4, 2, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*up)

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, S, S) -> latent codes (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Latent codes -> reconstructions in [-1, 1]."""
        return self.decoder(self.expand(z).view(z.shape[0], *self._bottom_shape))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct a batch of images."""
        return self.decode(self.encode(x))


@torch.no_grad()
def reconstruction_errors(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Reconstruction, per-pixel squared-error map and per-image mean squared error.

    Returns:
        ``{"recon": (B, C, H, W), "map": (B, H, W) squared error averaged over channels,
        "score": (B,) mean squared error per image}``.
    """
    model.eval()
    recon = model(x)
    sq = ((x - recon) ** 2).mean(1)
    return {"recon": recon, "map": sq, "score": sq.flatten(1).mean(1)}
