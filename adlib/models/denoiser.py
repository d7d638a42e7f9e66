"""The denoising network of seed 003, after Remez, Litany & Giryes (2018).

A stack of ``depth`` 3x3 convolutions (``width`` channels, ReLU, no pooling, same size). Every
layer also emits a 1x1-convolution estimate of the (negative) noise; the sum of these
estimates is the *feature mask* and the network's output is ``input + mask``::

    h_0 = x_in
    h_k = relu(conv3x3_k(h_{k-1}))           k = 1 .. depth
    mask = sum_k conv1x1_k(h_k)
    x_den = x_in + mask

Seed 003 trains it after the autoencoder is frozen, on the AE's reconstructions with added
Gaussian noise, with the modified loss ``||x - Den(AE(x))||^2`` (seed eq. 6): the target is the
ORIGINAL patch, not the reconstruction, so the mask learns to add back what the AE lost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class DenoiserOutput(NamedTuple):
    """``denoised = input + mask`` (the smooth output) and ``mask`` (the feature mask)."""

    denoised: torch.Tensor
    mask: torch.Tensor


class FeatureDenoiser(nn.Module):
    """Remez-style denoiser with a per-layer 1x1 noise estimate (seed 003, Fig. 2).

    Args:
        channels: image channels.
        depth: number of 3x3 convolution layers (20 in the seed).
        width: channels of every 3x3 layer (64 in Remez et al.).
        zero_init_heads: start the 1x1 heads at zero, so the untrained network is the identity
            (mask = 0); training is then a refinement of the input.
    """

    def __init__(self, channels: int = 1, depth: int = 20, width: int = 64,
                 zero_init_heads: bool = True) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={width}.")
        self.depth, self.width, self.channels = depth, width, channels
        self.convs = nn.ModuleList(
            nn.Conv2d(channels if k == 0 else width, width, 3, 1, 1) for k in range(depth))
        self.heads = nn.ModuleList(nn.Conv2d(width, channels, 1) for _ in range(depth))
        if zero_init_heads:
            for head in self.heads:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def layer_masks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The per-layer noise estimates (each (B, C, H, W)); their sum is the feature mask."""
        out, h = [], x
        for conv, head in zip(self.convs, self.heads, strict=True):
            h = F.relu(conv(h))
            out.append(head(h))
        return out

    def forward(self, x: torch.Tensor, layers: int | None = None) -> DenoiserOutput:
        """``(x + mask, mask)``; ``layers`` sums only the first ``layers`` estimates (inspection)."""
        parts = self.layer_masks(x)
        mask = torch.stack(parts[: layers or self.depth]).sum(dim=0)
        return DenoiserOutput(x + mask, mask)


def denoiser_loss(denoised: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Seed eq. 6: ``||x - Den(AE(x))||^2`` as a per-pixel mean."""
    return F.mse_loss(denoised, x)


def denoiser_step(
    autoencoder: nn.Module | None = None, noise_std: float = 0.05
) -> Callable[[nn.Module, Mapping[str, torch.Tensor]], torch.Tensor]:
    """A ``step_fn(denoiser, batch, ctx) -> loss`` for :func:`adlib.train.fit`.

    The batch is ``{"image": x, "recon": AE(x)}`` (reconstructions precomputed by the frozen AE)
    or ``{"image": x}``, in which case the frozen ``autoencoder`` reconstructs it here. Gaussian
    noise (``noise_std``) is added to the reconstruction (the seed's remedy for small
    gradients); the target is the original patch ``x``.
    """
    if autoencoder is not None:
        autoencoder.eval()
        for p in autoencoder.parameters():
            p.requires_grad_(False)

    def step(model: nn.Module, batch: Mapping[str, torch.Tensor], ctx: Any = None) -> torch.Tensor:
        x = batch["image"]
        recon = batch.get("recon")
        if recon is None:
            if autoencoder is None:
                raise ValueError("denoiser_step: the batch has no 'recon' and no autoencoder was given.")
            with torch.no_grad():
                recon = autoencoder(x)
        noisy = recon + noise_std * torch.randn_like(recon) if noise_std > 0 else recon
        return denoiser_loss(model(noisy).denoised, x)

    return step
