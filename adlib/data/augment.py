"""Image resizing and the seed's tensor augmentations (flips, 90-degree rotations, noise).

:class:`RandomAugment` transforms one item or a whole batch at once (one ``gather`` per dihedral
pose, one noise tensor); :mod:`adlib.data.torchdata` applies it inside its datasets.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SizeLike = int | tuple[int, int] | None


def _size(size: SizeLike) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def resize_image(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize a (C, H, W) uint8 tensor (bilinear, antialiased) and return uint8."""
    if size is None or tuple(image.shape[-2:]) == size:
        return image
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                        align_corners=False)[0]
    return out.round_().clamp_(0, 255).to(torch.uint8)


def resize_mask(mask: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize a (1, H, W) bool tensor: area-weighted, then ``>= 0.5``."""
    if size is None or tuple(mask.shape[-2:]) == size:
        return mask
    out = F.interpolate(mask[None].float(), size=size, mode="bilinear", antialias=True,
                        align_corners=False)[0]
    return out >= 0.5


@dataclass
class RandomAugment:
    """Tensor augmentations (seed 000: rotations, flips, gaussian noise).

    Geometric changes apply to image and mask alike; noise to the image only (clamped to [0, 1]).

    Attributes:
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        rot90: rotate by a random multiple of 90 degrees (180 only, for non-square images).
        degrees: extra rotation drawn uniformly in [-degrees, degrees] (bilinear; 0 = off).
        noise_std: standard deviation of additive gaussian noise on [0, 1] pixels (0 = off).
    """

    hflip: float = 0.5
    vflip: float = 0.5
    rot90: bool = True
    degrees: float = 0.0
    noise_std: float = 0.0

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment a float (C, H, W) image and an optional (1, H, W) mask."""
        def draw() -> float:
            return float(torch.rand((), generator=generator))

        def both(fn):  # noqa: ANN001, ANN202 - tiny local helper
            return fn(image), (fn(mask) if mask is not None else None)

        if draw() < self.hflip:
            image, mask = both(lambda t: t.flip(-1))
        if draw() < self.vflip:
            image, mask = both(lambda t: t.flip(-2))
        if self.rot90:
            square = image.shape[-1] == image.shape[-2]
            k = int(torch.randint(0, 4, (), generator=generator))
            k = k if square else 2 * (k % 2)
            if k:
                image, mask = both(lambda t: torch.rot90(t, k, dims=(-2, -1)))
        if self.degrees:
            from torchvision.transforms.v2 import InterpolationMode
            from torchvision.transforms.v2 import functional as TF

            angle = (2 * draw() - 1) * self.degrees
            image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR)
            if mask is not None:
                mask = TF.rotate(mask, angle, interpolation=InterpolationMode.NEAREST)
        if self.noise_std:
            noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
            image = (image + noise * self.noise_std).clamp_(0.0, 1.0)
        return image, mask

    def apply_batch(
        self, images: torch.Tensor, masks: torch.Tensor | None,
        generators: Sequence[torch.Generator | None],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Augment a float (B, C, H, W) batch (and (B, 1, H, W) masks), one generator per item.

        Gives exactly what calling the augmentation on each item with its generator gives (the
        same draws in the same order), with a few operations on the whole batch instead of a
        few per item: each item's flips and 90-degree rotation together are one of the 8
        symmetries of the square, i.e. a fixed permutation of its pixels, so one ``gather``
        moves every image (and mask); the noise is added to the batch at once. ``images`` and
        ``masks`` may be modified in place.
        """
        if len(generators) != len(images):
            raise ValueError(f"{len(generators)} generators for a batch of {len(images)} items")
        codes, angles = [], []
        noise = torch.empty_like(images) if self.noise_std else None
        square = images.shape[-1] == images.shape[-2]
        for i, gen in enumerate(generators):  # the draws of RandomAugment.__call__, in order
            h = float(torch.rand((), generator=gen)) < self.hflip
            v = float(torch.rand((), generator=gen)) < self.vflip
            k = int(torch.randint(0, 4, (), generator=gen)) if self.rot90 else 0
            codes.append(_symmetry_code(h, v, k if square else 2 * (k % 2)))
            angles.append((2 * float(torch.rand((), generator=gen)) - 1) * self.degrees
                          if self.degrees else 0.0)
            if noise is not None:
                torch.randn(images.shape[1:], generator=gen, dtype=images.dtype, out=noise[i])
        if any(codes):
            perm = _symmetries(*images.shape[-2:])[torch.tensor(codes)]  # (B, H*W)
            images = _permute_pixels(images, perm)
            masks = _permute_pixels(masks, perm) if masks is not None else None
        if self.degrees:  # arbitrary angles: one rotation per item
            from torchvision.transforms.v2 import InterpolationMode
            from torchvision.transforms.v2 import functional as TF

            for i, angle in enumerate(angles):
                images[i] = TF.rotate(images[i], angle, interpolation=InterpolationMode.BILINEAR)
                if masks is not None:
                    masks[i] = TF.rotate(masks[i], angle, interpolation=InterpolationMode.NEAREST)
        if noise is not None:
            images = images.add_(noise.mul_(self.noise_std)).clamp_(0.0, 1.0)
        return images, masks

    @classmethod
    def seed000(cls, noise_std: float = 0.02) -> RandomAugment:
        """Seed 000's augmentation: flips, 90-degree rotations and gaussian noise.

        The seed names the operations but not their strength; ``noise_std`` is our choice.
        """
        return cls(hflip=0.5, vflip=0.5, rot90=True, noise_std=noise_std)


def _symmetry_code(hflip: bool, vflip: bool, k: int) -> int:
    """Row of :func:`_symmetries` for "flip left-right?, flip up-down?, then rotate k * 90"."""
    return 8 * int(hflip) + 4 * int(vflip) + k


@functools.lru_cache(maxsize=8)
def _symmetries(height: int, width: int) -> torch.Tensor:
    """(16, H*W) pixel permutations: row ``_symmetry_code(h, v, k)`` holds, for every output
    pixel, the input pixel that flips (h, v) then ``rot90(k)`` bring there (odd ``k`` only for
    square images; those rows are the identity otherwise)."""
    pixels = torch.arange(height * width).view(height, width)
    rows = []
    for hflip in (False, True):
        for vflip in (False, True):
            for k in range(4):
                t = pixels.flip(-1) if hflip else pixels
                t = t.flip(-2) if vflip else t
                rows.append(torch.rot90(t, k).flatten() if height == width or k % 2 == 0
                            else pixels.flatten())
    return torch.stack(rows)


def _permute_pixels(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``out[b, c, p] = x[b, c, perm[b, p]]`` for a (B, C, H, W) batch and (B, H*W) permutations."""
    flat = x.flatten(2)
    return flat.gather(2, perm[:, None, :].expand(-1, flat.shape[1], -1)).view_as(x)
