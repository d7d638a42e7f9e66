"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant of TensorFlow's model garden), in plain torch.

Why a short definition here rather than a dependency: the only ImageNet weights that install
offline are a 2020 state dict with the key names of the ``efficientnet_pytorch`` project
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ...). Its model package is unmaintained, and timm's
``efficientnet_lite0`` would need a key map over 296 tensors plus a 2.8 MB dependency for ~100
lines of architecture. Defining the network with the checkpoint's own names makes loading a plain
``load_state_dict(strict=True)``: a missing or misshapen tensor fails loudly.

Lite differs from the original EfficientNet-B0 in three ways that matter for loading: no
squeeze-and-excitation, ReLU6 instead of swish, and a fixed stem (32) and head (1280). The weights
were trained with TensorFlow's "same" padding, which pads stride-2 convolutions more on the
bottom/right than on the top/left; :class:`SameConv2d` reproduces it (symmetric padding would shift
every feature map by a pixel at each stride-2 layer).

Stages (input 224 px): the stride and channels at the end of each, used by the feature extractor::

    stage   blocks   stride  channels
      1     0          2       16
      2     1-2        4       24
      3     3-4        8       40
      4     5-7       16       80
      5     8-10      16      112
      6     11-14     32      192
      7     15        32      320
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LITE0_BLOCKS", "STAGE_ENDS", "STAGE_CHANNELS", "STAGE_STRIDES", "SameConv2d",
           "MBConv", "EfficientNetLite0"]

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, as in the
# EfficientNet-Lite0 configuration (width and depth multipliers 1.0).
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: index of the last block of each stage (stage 1 -> 0, ..., stage 7 -> 15)
STAGE_ENDS: tuple[int, ...] = tuple(
    sum(r for r, *_ in LITE0_BLOCKS[: i + 1]) - 1 for i in range(len(LITE0_BLOCKS))
)
STAGE_CHANNELS: tuple[int, ...] = tuple(c[-1] for c in LITE0_BLOCKS)
STAGE_STRIDES: tuple[int, ...] = (2, 4, 8, 16, 16, 32, 32)

_BN = {"eps": 1e-3, "momentum": 0.01}  # TensorFlow's batch-norm settings (decay 0.99)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding, computed for the input's size (asymmetric when odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (the Lite block)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:  # 1x1 expansion; block 0 of each network has none
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **_BN)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))  # linear bottleneck: no activation
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the parameter names of the ``efficientnet-lite0`` checkpoint.

    ``forward`` returns ImageNet logits; :meth:`stages` returns the output of each requested
    stage (1-7) and stops after the deepest one, which is all a feature extractor needs.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel,
                                     stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, num_classes)

    def stages(self, x: torch.Tensor, wanted: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """Feature maps at the end of the stages in ``wanted`` (1-based), computed up to the deepest."""
        if not wanted or min(wanted) < 1 or max(wanted) > len(STAGE_ENDS):
            raise ValueError(f"stages must be in 1..{len(STAGE_ENDS)}, got {wanted}")
        ends = {STAGE_ENDS[s - 1]: s for s in wanted}
        out: dict[int, torch.Tensor] = {}
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in ends:
                out[ends[i]] = x
                if len(out) == len(ends):
                    break
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
