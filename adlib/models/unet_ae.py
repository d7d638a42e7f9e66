"""UNet-like convolutional autoencoder of Minhas & Zelek (seed 002).

The seed describes the network only in words (its Fig. 1 with the exact strides and filter counts is
not in the text we have), so the numbers below are our choice, documented here:

=========  ===================  ======  ========  ========  ====================================
layer      type                 kernel  stride    filters   input
=========  ===================  ======  ========  ========  ====================================
x1         Conv2d               11x11   2         w         image (C channels), H x W
x2         Conv2d               9x9     2         2w        x1, H/2
x3         Conv2d               7x7     2         4w        x2, H/4
x4         Conv2d               5x5     2         4w        x3, H/8
x5         Conv2d               3x3     2         8w        x4, H/16  -> bottleneck at H/32
x6         ConvTranspose2d      3x3     2         4w        x5
x7         ConvTranspose2d      5x5     2         4w        concat(x6, x4)   (skip)
x8         ConvTranspose2d      7x7     2         2w        concat(x7, x3)   (skip)
x9         ConvTranspose2d      9x9     2         w         concat(x8, x2)   (skip)
out        ConvTranspose2d      11x11   2         C         x9 -> H x W
=========  ===================  ======  ========  ========  ====================================

``w`` is ``base_channels`` (16 by default). Every layer x1-x9 is followed by BatchNorm and ReLU, as in
the seed. The output layer is the one deviation: BatchNorm + ReLU there would force a zero-mean,
non-negative reconstruction, so it ends in a sigmoid instead (images are scaled to [0, 1]).

Any ``H x W`` works (odd sizes too): strided convolutions use ``padding = k // 2`` and every
transposed convolution is asked for the exact spatial size of the encoder feature it mirrors, so
the output always has the input's size.

Skip connections are what makes this a UNet, and also what lets it copy its input - defects
included - straight to the output. ``skips`` chooses which decoder layers receive one
(``(7, 8, 9)`` = the seed; ``(7,)`` = only the deepest; ``()`` = a plain autoencoder), and
``skip_dropout`` drops whole skip channels at training time, which forces the decoder to rely on
the bottleneck as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ENCODER_KERNELS: tuple[int, ...] = (11, 9, 7, 5, 3)
"""Kernel sizes of x1..x5 (the decoder uses them in reverse order)."""

SKIP_LAYERS: tuple[int, ...] = (7, 8, 9)
"""Decoder layers that can receive a skip connection (from x4, x3, x2 respectively)."""

VARIANTS: dict[str, dict] = {
    "unet-ae": {"skips": (7, 8, 9), "skip_dropout": 0.0},
    "unet-ae-deepskip": {"skips": (7,), "skip_dropout": 0.0},
    "unet-ae-noskip": {"skips": (), "skip_dropout": 0.0},
}
"""Named configurations: the seed's network and two smaller-shortcut variants."""


class UNetAEConfigError(ValueError):
    """Invalid construction arguments for :class:`UNetAE`."""


class UNetAE(nn.Module):
    """UNet-like autoencoder: five strided convolutions down, five transposed convolutions up.

    Args:
        in_channels: image channels (1 for DAGM / RSDDs grayscale, 3 for colour).
        base_channels: filters of x1 (``w`` in the module table); deeper layers use 2w, 4w, 4w, 8w.
        skips: decoder layers (subset of 7, 8, 9) that get the mirrored encoder feature
            concatenated to their input.
        skip_dropout: probability of zeroing a whole skip channel during training (0 = off).

    Raises:
        UNetAEConfigError: for unknown skip layers, a probability outside [0, 1) or non-positive
            channel counts.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 16,
        skips: Sequence[int] = SKIP_LAYERS,
        skip_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1:
            raise UNetAEConfigError(
                f"in_channels={in_channels} and base_channels={base_channels} must be >= 1."
            )
        bad = sorted(set(skips) - set(SKIP_LAYERS))
        if bad:
            raise UNetAEConfigError(
                f"skips={tuple(skips)}: layers {bad} cannot take a skip; choose from {SKIP_LAYERS}."
            )
        if not 0.0 <= skip_dropout < 1.0:
            raise UNetAEConfigError(f"skip_dropout={skip_dropout} must be in [0, 1).")
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.skips = tuple(sorted(set(skips)))
        self.skip_dropout = float(skip_dropout)

        w = base_channels
        enc_ch = (w, 2 * w, 4 * w, 4 * w, 8 * w)  # x1..x5
        dec_ch = (4 * w, 4 * w, 2 * w, w)  # x6..x9
        self.encoder = nn.ModuleList()
        prev = in_channels
        for k, ch in zip(ENCODER_KERNELS, enc_ch, strict=True):
            self.encoder.append(_conv_bn_relu(prev, ch, k))
            prev = ch
        # x6..x9 and the output layer use the kernels in reverse order (3, 5, 7, 9, 11).
        dec_kernels = ENCODER_KERNELS[::-1]
        skip_ch = {7: enc_ch[3], 8: enc_ch[2], 9: enc_ch[1]}  # x4, x3, x2
        self.decoder = nn.ModuleList()
        for i, (k, ch) in enumerate(zip(dec_kernels[:4], dec_ch, strict=True)):
            layer = 6 + i
            cin = prev + (skip_ch[layer] if layer in self.skips else 0)
            self.decoder.append(_ConvTBNReLU(cin, ch, k))
            prev = ch
        self.out = nn.ConvTranspose2d(prev, in_channels, dec_kernels[4], stride=2,
                                      padding=dec_kernels[4] // 2)
        self.skip_drop = nn.Dropout2d(self.skip_dropout) if self.skip_dropout > 0 else nn.Identity()

    @classmethod
    def from_variant(cls, name: str, in_channels: int = 1, base_channels: int = 16) -> UNetAE:
        """Build one of :data:`VARIANTS` (``"unet-ae"``, ``"unet-ae-deepskip"``, ``"unet-ae-noskip"``).

        Raises:
            UNetAEConfigError: unknown variant name.
        """
        if name not in VARIANTS:
            raise UNetAEConfigError(f"Unknown variant {name!r}; choose from {sorted(VARIANTS)}.")
        return cls(in_channels=in_channels, base_channels=base_channels, **VARIANTS[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct a batch ``(N, C, H, W)`` with values in [0, 1]; output has the same shape."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UNetAEConfigError(
                f"expected a (N, {self.in_channels}, H, W) batch, got shape {tuple(x.shape)}."
            )
        feats = []  # x1..x5
        h = x
        for layer in self.encoder:
            h = layer(h)
            feats.append(h)
        # Target sizes for x6, x7, x8, x9 and the output: x4, x3, x2, x1 and the input.
        targets = [feats[3], feats[2], feats[1], feats[0]]
        skip_src = {7: feats[3], 8: feats[2], 9: feats[1]}
        for i, layer in enumerate(self.decoder):
            idx = 6 + i
            if idx in self.skips:
                h = torch.cat([h, self.skip_drop(skip_src[idx])], dim=1)
            h = layer(h, targets[i].shape[-2:])
        h = self.out(h, output_size=x.shape[-2:])
        return torch.sigmoid(h)


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=2, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _ConvTBNReLU(nn.Module):
    """Transposed convolution (stride 2) to an exact output size, then BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, output_size=list(size))))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
