"""Is a category's orientation free? A check on the defect-free training images only.

Rotating or mirroring a training image is a good augmentation when the result could itself be a
normal image (a hazelnut lies in any orientation, a carpet has no "up"), and a bad one when it
could not (a bottle photographed from above in a fixed pose, a transistor whose legs point down):
there it shows the network images it will never see as normal, and on some categories it creates
exactly what the test set calls a defect.

:func:`orientation_spread` measures this without any test data: for each training image, the
distance from its rotated (or mirrored) copy to the nearest *other* training image, divided by
the distance from the image itself to its nearest other training image (grey, downsampled). For
orientation-free data a rotated image is as close to some normal image as the original was
(ratio about 1); for aligned data it is much further (ratio well above 1).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TRANSFORMS: tuple[str, ...] = ("rot90", "rot180", "hflip", "vflip")
"""The seed-000 geometric augmentations that :func:`orientation_spread` checks."""

DEFAULT_TOLERANCE = 1.2
"""Largest median distance ratio still called orientation-free (20 % further than unrotated)."""


def _transform(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "rot90":
        return torch.rot90(x, 1, dims=(-2, -1))
    if name == "rot180":
        return torch.rot90(x, 2, dims=(-2, -1))
    if name == "hflip":
        return x.flip(-1)
    if name == "vflip":
        return x.flip(-2)
    raise ValueError(f"unknown transform {name!r}; expected one of {TRANSFORMS}")


def orientation_spread(images: np.ndarray | torch.Tensor, size: int = 32) -> dict[str, float]:
    """Median nearest-neighbour distance ratio (transformed / original) per transform.

    Args:
        images: defect-free TRAINING images, (N, C, H, W) or (N, H, W), uint8 or float; N >= 2.
            Non-square images are cropped to their central square for the check.
        size: side of the grey thumbnails compared (32 px keeps it to milliseconds).

    Returns:
        ``{"rot90": r, "rot180": r, "hflip": r, "vflip": r}``; about 1 where the transform gives
        images as normal-looking as the originals, above 1 where it does not.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or len(x) < 2:
        raise ValueError(f"orientation_spread needs (N, C, H, W) images with N >= 2, got shape "
                         f"{tuple(x.shape)}.")
    x = x.float() / 255.0 if not torch.is_floating_point(x) else x.float()
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top:top + s, left:left + s].mean(dim=1, keepdim=True)
    x = F.interpolate(x, size=(size, size), mode="area")[:, 0]
    n = len(x)
    flat = x.reshape(n, -1)

    def nearest_other(query: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(query.reshape(n, -1), flat)
        d.fill_diagonal_(float("inf"))
        return d.min(dim=1).values

    base = nearest_other(x).clamp_min(1e-12)
    return {name: float((nearest_other(_transform(x, name)) / base).median())
            for name in TRANSFORMS}


def orientation_free(spread: dict[str, float], tolerance: float = DEFAULT_TOLERANCE) -> dict[str, bool]:
    """Per transform: True when its ratio is within ``tolerance`` (safe to augment with)."""
    return {name: bool(ratio <= tolerance) for name, ratio in spread.items()}
