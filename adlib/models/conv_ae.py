"""The convolutional autoencoder of seed 000 ("Anomaly Detection with Auto-Encoders").

Encoder (seed Table 1) and decoder (seed Table 2): 4x4 stride-2 and 3x3 stride-1 convolutions,
each followed by ``BatchNorm2d(momentum=0.1, eps=1e-6)`` and ``LeakyReLU(0.01)``; an 8x8
convolution maps the 8x8 feature map to a ``latent_dim x 1 x 1`` code (500 in the seed).

Reconciling the printed tables (the smallest change that makes 256 -> 256 work):

* Table 1 has five stride-2 layers: 256 / 2**5 = 8, and the 8x8 kernel gives 1x1. It is kept as is
  (with padding 1 on every 4x4 and 3x3 layer, which the table does not print).
* Table 2 has only four stride-2 transposed convolutions: 1 -> 8 -> 16 -> 32 -> 64 -> 128, so it
  returns 128x128 images. The encoder's ``Conv2d(32, 32, 4, 2)`` has no mirror in it: we insert
  ``ConvTranspose2d(32, 32, 4, 2)`` (+ BatchNorm + LeakyReLU) before ``ConvTranspose2d(32, 3, 4, 2)``.
* Table 2 prints ``BatchNorm2d(64)`` after the 32 -> 3 layer: a typo, it must be ``BatchNorm2d(3)``.
* The last layer has no normalisation or activation in the table: the output is linear.

How the architecture scales with the input size (``image_size``, a power of two >= 32):

* The seed's 256-px network is Bergmann et al.'s (2019) 128-px autoencoder plus one ``3 -> 3``
  stride-2 "stem" layer in front of the encoder and its mirror at the end of the decoder.
  ``stems = log2(image_size / 128)`` such 3-channel layers are used (1 at 256, 0 at 128, 2 at
  512), so the bottleneck always sees an 8x8 map and uses the seed's 8x8 kernel.
* Below 128 px there are no stems and the bottleneck kernel shrinks to ``image_size / 16``
  (4x4 at 64 px, 2x2 at 32 px); every other layer is unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BN_MOMENTUM = 0.1
BN_EPS = 1e-6
LEAKY_SLOPE = 0.01


def _bn_act(channels: int, act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)]
    if act:
        layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return layers


def _conv(cin: int, cout: int, k: int, s: int, pad: int | None = None) -> list[nn.Module]:
    pad = (1 if k in (3, 4) else 0) if pad is None else pad
    return [nn.Conv2d(cin, cout, k, s, pad), *_bn_act(cout)]


def _deconv(cin: int, cout: int, k: int, s: int, pad: int | None = None) -> list[nn.Module]:
    pad = (1 if k in (3, 4) else 0) if pad is None else pad
    return [nn.ConvTranspose2d(cin, cout, k, s, pad), *_bn_act(cout)]


def layout(image_size: int) -> tuple[int, int]:
    """Return ``(stems, bottleneck_kernel)`` for an input size (see the module docstring).

    Raises:
        ValueError: ``image_size`` is not a power of two >= 32.
    """
    if image_size < 32 or image_size & (image_size - 1):
        raise ValueError(
            f"ConvAutoencoder needs image_size to be a power of two >= 32 (got {image_size}); "
            "set IMAGE_SIZE to 32, 64, 128, 256 or 512."
        )
    stems = max(0, int(math.log2(image_size // 128))) if image_size >= 128 else 0
    kernel = image_size // (2 ** (stems + 4))
    return stems, kernel


class ConvAutoencoder(nn.Module):
    """Seed-000 convolutional autoencoder, ``B x C x S x S -> B x C x S x S``.

    Args:
        latent_dim: size of the bottleneck code (``latent_dim x 1 x 1``; 500 in the seed).
        image_size: input height = width, a power of two >= 32 (256 in the seed).
        channels: image channels (3 for RGB, 1 for grayscale).
    """

    def __init__(self, latent_dim: int = 500, image_size: int = 256, channels: int = 3) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1 (got {latent_dim})")
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.channels = channels
        stems, k = layout(image_size)
        self.stems, self.bottleneck_kernel = stems, k
        c = channels

        enc: list[nn.Module] = []
        for _ in range(stems):  # seed Table 1, row 1: Conv2d(3, 3, 4, 2)
            enc += _conv(c, c, 4, 2)
        enc += _conv(c, 32, 4, 2)
        enc += _conv(32, 32, 4, 2)
        enc += _conv(32, 32, 3, 1)
        enc += _conv(32, 64, 4, 2)
        enc += _conv(64, 64, 3, 1)
        enc += _conv(64, 128, 4, 2)
        enc += _conv(128, 64, 3, 1)
        enc += _conv(64, 32, 3, 1)
        enc += [nn.Conv2d(32, latent_dim, k, 1, 0), *_bn_act(latent_dim, act=False)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = []
        dec += _deconv(latent_dim, 32, k, 1, 0)
        dec += _deconv(32, 64, 3, 1)
        dec += _deconv(64, 128, 3, 1)
        dec += _deconv(128, 64, 4, 2)
        dec += _deconv(64, 64, 3, 1)
        dec += _deconv(64, 32, 4, 2)
        dec += _deconv(32, 32, 3, 1)
        dec += _deconv(32, 32, 4, 2)  # inserted: mirror of the encoder's Conv2d(32, 32, 4, 2)
        if stems:
            dec += _deconv(32, c, 4, 2)  # BatchNorm2d(3), not the printed BatchNorm2d(64)
            for _ in range(stems - 1):
                dec += _deconv(c, c, 4, 2)
            dec += [nn.ConvTranspose2d(c, c, 4, 2, 1)]  # last layer: linear output
        else:
            dec += [nn.ConvTranspose2d(32, c, 4, 2, 1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``B x C x S x S`` -> codes ``B x latent_dim x 1 x 1``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes ``B x latent_dim x 1 x 1`` -> reconstructions ``B x C x S x S``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x``."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"ConvAutoencoder was built for {self.image_size}x{self.image_size} inputs, got "
                f"{tuple(x.shape[-2:])}; resize the images or rebuild with image_size={x.shape[-1]}."
            )
        return self.decode(self.encode(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
