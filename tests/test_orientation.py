"""Tests for adlib.data.orientation: the training-images-only orientation check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adlib.data.orientation import TRANSFORMS, orientation_free, orientation_spread


def _blob_images(n: int, rng: np.random.Generator, random_pose: bool) -> np.ndarray:
    """Grey images of an L-shaped object: in a fixed pose, or in a random one of 8 poses."""
    base = np.zeros((32, 32), np.float32)
    base[6:26, 8:13] = 1.0   # long bar
    base[21:26, 8:24] = 0.6  # short foot
    out = []
    for _ in range(n):
        img = base
        if random_pose:
            img = np.rot90(img, int(rng.integers(4)))
            img = img[:, ::-1] if rng.random() < 0.5 else img
        img = img + rng.normal(0, 0.05, img.shape)
        out.append(np.clip(img, 0, 1))
    return (np.stack(out)[:, None] * 255).astype(np.uint8)


def test_aligned_objects_are_not_orientation_free_and_random_poses_are() -> None:
    rng = np.random.default_rng(0)
    aligned = orientation_spread(_blob_images(40, rng, random_pose=False))
    free = orientation_spread(_blob_images(40, rng, random_pose=True))
    assert set(aligned) == set(TRANSFORMS) == set(free)
    assert min(aligned.values()) > 1.5          # every transform moves it away from normal
    assert max(free.values()) < 1.2             # some normal image already has that pose
    assert not any(orientation_free(aligned).values()) and all(orientation_free(free).values())


def test_accepts_uint8_float_and_rgb_and_non_square_the_same_way() -> None:
    rng = np.random.default_rng(1)
    u8 = _blob_images(12, rng, random_pose=False)
    as_float = torch.from_numpy(u8).float() / 255
    rgb = np.repeat(u8, 3, axis=1)
    a, b, c = orientation_spread(u8), orientation_spread(as_float), orientation_spread(rgb)
    for k in TRANSFORMS:
        assert a[k] == pytest.approx(b[k], rel=1e-5) == pytest.approx(c[k], rel=1e-5)
    wide = np.pad(u8, ((0, 0), (0, 0), (0, 0), (4, 4)))  # cropped to the central square
    assert orientation_spread(wide)["rot90"] == pytest.approx(a["rot90"], rel=1e-5)


def test_refuses_too_few_images() -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        orientation_spread(np.zeros((1, 3, 8, 8), np.uint8))
