"""Patch extraction and the RSDDs / SEM patch protocols."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_layouts import write_rsdd, write_sem

from adlib.data import (
    DataError,
    grid_patches,
    patch_labels,
    random_patches,
    read_rsdd,
    read_sem,
    rsdd_patches,
    sem_patches,
)
from adlib.data.rsdd import split_by_image


def test_grid_patches_match_slices_and_cover_the_border(rng):
    image = rng.integers(0, 256, (10, 13, 3), dtype=np.uint8)
    patches, coords = grid_patches(image, size=4, stride=4)
    assert coords[:, 0].tolist().count(6) == 4  # last row flush with the bottom (10 - 4)
    assert set(coords[:, 1].tolist()) == {0, 4, 8, 9}
    for p, (y, x) in zip(patches, coords, strict=True):
        assert np.array_equal(p, image[y:y + 4, x:x + 4])
    _, no_cover = grid_patches(image, size=4, cover=False)
    assert len(no_cover) == 2 * 3


def test_grid_patches_rectangular_and_overlapping(rng):
    image = rng.integers(0, 256, (400, 160), dtype=np.uint8)
    patches, coords = grid_patches(image, (200, 160), stride=(100, 160))
    assert patches.shape == (3, 200, 160) and coords[:, 0].tolist() == [0, 100, 200]
    with pytest.raises(ValueError, match="smaller than the patch"):
        grid_patches(image, (500, 160))


def test_random_patches_are_reproducible_slices(rng):
    images = [rng.integers(0, 256, (20, 30), dtype=np.uint8),
              rng.integers(0, 256, (40, 35), dtype=np.uint8)]
    patches, coords = random_patches(images, size=8, n=50, rng=3)
    again, coords2 = random_patches(images, size=8, n=50, rng=3)
    assert np.array_equal(patches, again) and np.array_equal(coords, coords2)
    assert patches.shape == (50, 8, 8) and set(coords[:, 0].tolist()) == {0, 1}
    for p, (i, y, x) in zip(patches, coords, strict=True):
        assert np.array_equal(p, images[i][y:y + 8, x:x + 8])


def test_patch_labels_match_brute_force(rng):
    mask = rng.random((30, 30)) > 0.97
    patches, coords = grid_patches(mask, size=6, stride=3)
    counts = patches.reshape(len(patches), -1).sum(1)
    assert np.array_equal(patch_labels(mask, coords, 6), (counts >= 1).astype(int))
    assert np.array_equal(patch_labels(mask, coords, 6, min_pixels=2), (counts >= 2).astype(int))
    frac = patch_labels(mask, coords, 6, min_fraction=2 / 36)
    assert np.array_equal(frac, (counts >= 2).astype(int))


def test_rsdd_patches_split_by_strip(tmp_path):
    split = read_rsdd(write_rsdd(tmp_path, n_strips=6))
    assert split.train == [] and split.extra["patch_protocol"]
    ps = rsdd_patches(split, test_fraction=0.5, seed=0, progress=False)
    train_paths = {s.path for s in ps.train_samples}
    assert train_paths.isdisjoint({s.path for s in ps.test_samples})
    assert len(train_paths) + len(ps.test_samples) == 6
    assert ps.train.shape[1:] == (200, 160, 1) and ps.test.shape[1:] == (200, 160, 1)
    # strips 1..5 have a defect in their second patch; the first patch is clean
    n_defective_train = sum(1 for s in ps.train_samples if s.label == 1)
    assert len(ps.train) == 2 * len(ps.train_samples) - n_defective_train
    expected = [int(y == 200 and ps.test_samples[i].label == 1)
                for i, y in zip(ps.test_source, ps.test_coords[:, 0], strict=True)]
    assert ps.test_labels.tolist() == expected
    assert np.array_equal(ps.test_masks.any(axis=(1, 2)).astype(int), ps.test_labels)
    again = rsdd_patches(split, test_fraction=0.5, seed=0, progress=False)
    assert [s.path for s in again.test_samples] == [s.path for s in ps.test_samples]
    assert rsdd_patches(split, min_defect_pixels=10_000, progress=False).test_labels.sum() == 0


def test_split_by_image_is_deterministic_and_disjoint(tmp_path):
    split = read_rsdd(write_rsdd(tmp_path, n_strips=7))
    a = split_by_image(split.test, 0.3, seed=1)
    b = split_by_image(list(reversed(split.test)), 0.3, seed=1)
    assert a == b and len(a[1]) == 2
    assert {s.path for s in a[0]}.isdisjoint({s.path for s in a[1]})


def test_rsdd_patch_larger_than_strip_raises(tmp_path):
    with pytest.raises(DataError, match="patch"):
        rsdd_patches(write_rsdd(tmp_path), patch=(200, 200), progress=False)


def test_sem_patches(tmp_path):
    split = read_sem(write_sem(tmp_path))
    ps = sem_patches(split, 16, n_train=40, stride=8, seed=0, progress=False)
    assert ps.train.shape == (40, 16, 16, 1) and ps.test.shape[1:] == (16, 16, 1)
    assert set(ps.train_source.tolist()) <= {0, 1}
    assert 0 < ps.test_labels.sum() < len(ps.test_labels)
    i = int(np.argmax(ps.test_labels))
    y, x = ps.test_coords[i]
    image = split.test[ps.test_source[i]].load_image()
    assert np.array_equal(ps.test[i], image[y:y + 16, x:x + 16])
    assert "train patches" in ps.summary()
