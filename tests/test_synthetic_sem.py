"""Tests for the SEM-nanofibre-like stand-in (NanoTWICE look): layout, counts, shapes, masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from sklearn.metrics import roc_auc_score

from adlib.data import synthetic as syn
from adlib.data.sem import read_sem
from adlib.data.synthetic.sem_like import REAL_SHAPE, make_sem_like, render_sem_like


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.ensure_synthetic("sem", size="tiny", root=tmp_path_factory.mktemp("sem"), progress=False)


def test_default_matches_nanotwice_counts_and_aspect() -> None:
    params = syn.synthetic_params("sem", size="default")
    assert (params["n_normal"], params["n_anomalous"]) == (5, 40)  # 45 images, as published
    # the width is a size the cpu profile affords; the height keeps the published aspect ratio
    width = params["size"]
    assert 256 <= width <= REAL_SHAPE[1]


def test_tiny_layout_shapes_and_masks(tiny: Path) -> None:
    params = syn.synthetic_params("sem", size="tiny")
    height = round(params["size"] * REAL_SHAPE[0] / REAL_SHAPE[1])
    normal = sorted((tiny / "Normal").glob("*.tif"))
    images = sorted((tiny / "Anomalous" / "images").glob("*.tif"))
    assert len(normal) == params["n_normal"] and len(images) == params["n_anomalous"]
    for path in normal + images:
        assert tifffile.imread(path).shape == (height, params["size"])
    for path in images:
        mask = np.asarray(Image.open(tiny / "Anomalous" / "gt" / f"{path.stem}.png"))
        assert mask.shape == (height, params["size"])
        assert set(np.unique(mask)) == {0, 255}  # every anomalous image shows a defect
    split = read_sem(tiny, check_images=True, progress=False)
    assert len(split.train) == params["n_normal"] and all(s.mask_path for s in split.test)


def test_normal_images_have_no_defect_and_fibres_on_dark_background() -> None:
    image, mask = render_sem_like((160, 240), np.random.default_rng(1), 0)
    assert image.shape == mask.shape == (160, 240) and image.dtype == np.uint8
    assert not mask.any()
    x = image / 255.0
    # bright fibres on a dark background: the median pixel is dark, the brightest tenth is not
    assert np.median(x) < 0.35 < np.quantile(x, 0.95)


def test_height_and_square_sizes() -> None:
    image, _ = render_sem_like(96, np.random.default_rng(0), 1)
    assert image.shape == (96, 96)
    with pytest.raises(ValueError, match="at least 64"):
        render_sem_like((32, 200), np.random.default_rng(0), 1)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b = (make_sem_like(tmp_path / k, n_normal=1, n_anomalous=1, size=128, seed=7, progress=False)
            for k in "ab")
    for rel in ("Normal/N001.tif", "Anomalous/images/A001.tif", "Anomalous/gt/A001.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def _patch_stats(n: int = 4) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Label (>= 5 % defect) and model-free statistics of every 32x32 grid patch (stride 16)."""
    labels, stats = [], {"mean": [], "mean of squares": []}
    for i in range(n):
        rng = np.random.default_rng([41, i])
        image, mask = render_sem_like((348, 512), rng, 4)
        x = image / 255.0
        x = x / x.mean()  # per-image brightness normalised, as the notebook's baseline does
        for r in range(0, x.shape[0] - 31, 16):
            for c in range(0, x.shape[1] - 31, 16):
                window = (slice(r, r + 32), slice(c, c + 32))
                labels.append(int(mask[window].mean() >= 0.05))
                stats["mean"].append(float(x[window].mean()))
                stats["mean of squares"].append(float((x[window] ** 2).mean()))
    return np.array(labels), stats


def test_brightness_helps_a_little_but_does_not_solve_it() -> None:
    labels, stats = _patch_stats()
    assert 0 < labels.sum() < len(labels)
    for name, values in stats.items():
        auc = roc_auc_score(labels, values)
        assert 0.5 < auc < 0.8, f"patch {name}: AUROC {auc:.3f} (defects must not be brightness outliers)"
