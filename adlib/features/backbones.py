"""Pretrained backbones as frozen feature extractors (the "why it works" of chapter 06).

A network trained to classify ImageNet has learnt, in its middle layers, local descriptors of
edges, textures and small shapes that are generic enough to describe a bottle rim or a fabric
weave. :class:`FeatureExtractor` runs one such network, frozen, on images in [0, 1] and returns
the feature maps of a few intermediate stages. Which stages (``layers``) is the main design choice:

==================  ==========================  =====================================
backbone            PatchCore layers (stride)    PaDiM layers (stride)
==================  ==========================  =====================================
efficientnet_lite0  stage 2 (4), stage 3 (8)     stages 2 (4), 3 (8), 5 (16)
wide_resnet50_2     layer2 (8), layer3 (16)      layer1 (4), layer2 (8), layer3 (16)
==================  ==========================  =====================================

(the middle of the network: the last stages describe whole objects and ImageNet classes, the
first ones only edges). EfficientNet-Lite0 is small, so its PatchCore layers sit one stage
earlier than the wide ResNet's: on the real DAGM Class8 dev kit at 512 px, stages 2+3 gave image
AUROC 0.956 against 0.936 for stages 3+5, and both gave 1.000 on real bottle at 224 px (measured
while choosing these defaults; the note of issue 15 has the runs). Input normalisation is the one each network was trained with:
EfficientNet-Lite (TensorFlow) maps pixels to [-1, 1] (mean 0.5, std 0.5 on a [0, 1] scale);
torchvision's ResNets use the ImageNet mean and std. Grey images are repeated to three channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adlib.features.weights import WEIGHTS, weights_file

__all__ = ["BACKBONES", "LAYERS", "NORMALISATION", "FeatureExtractor", "load_network"]

BACKBONES: tuple[str, ...] = tuple(WEIGHTS)
LAYERS: dict[str, dict[str, tuple[int, ...]]] = {
    "efficientnet_lite0": {"patchcore": (2, 3), "padim": (2, 3, 5)},
    "wide_resnet50_2": {"patchcore": (2, 3), "padim": (1, 2, 3)},
}
"""The default feature layers per backbone and method (see the module docstring)."""
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "wide_resnet50_2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
"""(mean, std) on a [0, 1] pixel scale that each backbone's weights expect."""


def load_network(name: str, *, download: bool = False, progress: bool = True) -> nn.Module:
    """The ImageNet classifier ``name`` with its verified pretrained weights, in eval mode.

    Raises:
        WeightsError: weights not installed / not downloaded (with the fix) or damaged.
    """
    path = weights_file(name, download=download, progress=progress)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if name == "efficientnet_lite0":
        from adlib.models.efficientnet_lite import EfficientNetLite0

        net: nn.Module = EfficientNetLite0()
    elif name == "wide_resnet50_2":
        from torchvision.models import wide_resnet50_2

        net = wide_resnet50_2(weights=None)
    else:  # pragma: no cover - weights_file already refused it
        raise ValueError(name)
    net.load_state_dict(state, strict=True)
    return net.eval()


class FeatureExtractor(nn.Module):
    """A frozen pretrained network that returns the feature maps of ``layers``.

    Args:
        backbone: a name of :data:`BACKBONES`.
        layers: stage numbers (EfficientNet-Lite0: 1-7; wide ResNet: 1-4 = ``layer1``-``layer4``).
        network: an already loaded network (tests); default :func:`load_network`.
        download: allow downloading weights that are not there (never by default).
        pad: pixels of mirrored image added on every side before the network and cropped from the
            features after it, so that features at the image border see image content instead
            of the network's zero padding (a multiple of the deepest stride, e.g. 32).

    ``forward(images)`` takes ``(N, C, H, W)`` floats in [0, 1] (C = 1 or 3) and returns a list
    of ``(N, C_l, H / stride_l, W / stride_l)`` tensors, shallowest first.
    """

    def __init__(self, backbone: str, layers: Sequence[int], *, network: nn.Module | None = None,
                 download: bool = False, pad: int = 0) -> None:
        super().__init__()
        self.pad = int(pad)
        if backbone not in BACKBONES:
            raise ValueError(f"BACKBONE={backbone!r}: expected one of {BACKBONES}.")
        self.backbone = backbone
        self.layers = tuple(sorted(int(x) for x in layers))
        limit = 7 if backbone == "efficientnet_lite0" else 4
        if not self.layers or self.layers[0] < 1 or self.layers[-1] > limit:
            raise ValueError(f"{backbone}: layers must be in 1..{limit}, got {tuple(layers)}.")
        self.net = network if network is not None else load_network(backbone, download=download)
        self.net.eval().requires_grad_(False)
        mean, std = NORMALISATION[backbone]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stays in eval mode: batch-norm statistics are the pretrained ones."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1|3, H, W), got {tuple(images.shape)}")
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        x = (x - self.mean) / self.std
        if self.pad:
            x = torch.nn.functional.pad(x, (self.pad,) * 4, mode="reflect")
        if self.backbone == "efficientnet_lite0":
            out = self.net.stages(x, self.layers)
            feats = [out[s] for s in self.layers]
        else:
            net = self.net  # torchvision ResNet
            x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
            feats = []
            for i in range(1, self.layers[-1] + 1):
                x = getattr(net, f"layer{i}")(x)
                if i in self.layers:
                    feats.append(x)
        if not self.pad:
            return feats
        size = images.shape[-1] + 2 * self.pad
        cropped = []
        for f in feats:
            c = round(self.pad * f.shape[-1] / size)  # the padding, in this layer's cells
            cropped.append(f[..., c:f.shape[-2] - c, c:f.shape[-1] - c])
        return cropped
