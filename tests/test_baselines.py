"""Classical baselines: they must find an obvious defect and stay quiet on normal data."""

import numpy as np
import pytest

from adlib import metrics
from adlib.baselines import PatchPCA, VariationModel


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    base = 0.5 + 0.2 * np.sin(xx / 3.0)  # aligned striped pattern
    train = np.clip(base + rng.normal(0, 0.03, (20, 32, 32)), 0, 1)
    test = np.clip(base + rng.normal(0, 0.03, (6, 32, 32)), 0, 1)
    masks = np.zeros((6, 32, 32), bool)
    masks[3:, 10:16, 12:18] = True
    test[masks] = 0.95  # bright blob on the defective images
    return train, test, masks


@pytest.mark.parametrize("model", [VariationModel(), PatchPCA(patch=6, n_components=4, n_train_patches=2000)])
def test_baseline_localises_obvious_defect(model) -> None:
    train, test, masks = _data()
    maps = model.fit(train).score_maps(test)
    assert maps.shape == test.shape
    assert metrics.pixel_auroc(maps, masks) > 0.95
    scores = maps.reshape(len(maps), -1).max(axis=1)
    assert metrics.image_auroc(scores, np.array([0, 0, 0, 1, 1, 1])) == 1.0


def test_variation_model_rejects_wrong_size_and_unfitted_use() -> None:
    train, _, _ = _data()
    with pytest.raises(RuntimeError):
        VariationModel().score_maps(train)
    model = VariationModel().fit(train)
    with pytest.raises(ValueError, match="fitted on"):
        model.score_maps(np.zeros((2, 16, 16)))


def test_colour_images_are_supported() -> None:
    train, test, _ = _data()
    rgb_train, rgb_test = np.repeat(train[..., None], 3, -1), np.repeat(test[..., None], 3, -1)
    maps = PatchPCA(patch=4, n_components=3, n_train_patches=500).fit(rgb_train).score_maps(rgb_test)
    assert maps.shape == test.shape and np.isfinite(maps).all()
