"""Tests for the notebook-02 pipeline (UNet autoencoder on DAGM and RSDDs stand-ins)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adlib.config import pick
from adlib.pipelines import unet_dagm_rsdd as P

GUIDE_KEYS = {
    "notebook", "method", "dataset", "category", "synthetic", "profile", "seed", "image_auroc",
    "image_aupr", "pixel_auroc", "aupro", "pixel_f1", "pixel_precision", "pixel_recall",
    "threshold", "threshold_source", "per_defect", "train_seconds", "params",
}


@pytest.fixture(scope="module")
def smoke() -> dict:
    return pick("smoke", P.PROFILES, {})


def test_profiles_complete_and_paper_follows_the_seed() -> None:
    keys = set(P.PROFILES["smoke"])
    for name in ("smoke", "cpu", "paper"):
        assert set(P.PROFILES[name]) == keys, name
    assert P.PROFILES["paper"]["epochs"] == 50  # seed: 50 epochs
    assert tuple(P.PROFILES["paper"]["rsdd_patch"]) == (200, 160)  # seed's patch protocol
    assert P.PROFILES["cpu"]["variants"][0] == "unet-ae"


def test_check_params_rejects_typos() -> None:
    assert P.check_params("dagm", ["unet-ae"]) == (["dagm"], ["unet-ae"])
    with pytest.raises(P.PipelineError, match="DATASETS"):
        P.check_params(["dagm", "mvtec"], ["unet-ae"])
    with pytest.raises(P.PipelineError, match="VARIANTS"):
        P.check_params(["dagm"], ["unet"])


def test_random_crop_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 20 * 30, dtype=torch.float32).reshape(2, 1, 20, 30)
    out = P.random_crop_batch(x, 8, gen)
    assert out.shape == (2, 1, 8, 8)
    # every crop is a contiguous window of its own image
    for img, crop in zip(x, out, strict=True):
        y0 = int((crop[0, 0, 0] - img[0, 0, 0]) // 30)
        x0 = int((crop[0, 0, 0] - img[0, 0, 0]) % 30)
        assert torch.equal(img[:, y0:y0 + 8, x0:x0 + 8], crop)
    assert P.random_crop_batch(x, None, gen) is x
    assert P.random_crop_batch(x, 64, gen) is x


def test_residual_contrast() -> None:
    maps = np.ones((2, 4, 4), np.float32)
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    assert P.residual_contrast(maps, masks) == pytest.approx(1.0)
    maps[0, :2, :2] = 5.0
    assert P.residual_contrast(maps, masks) == pytest.approx(5.0)
    assert P.residual_contrast(maps, np.zeros_like(masks)) is None


@pytest.mark.parametrize("dataset", ["dagm", "rsdd"])
def test_smoke_run_writes_results(dataset: str, smoke: dict, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = P.load_data(dataset, None, "Class8", smoke, seed=0, progress=False)
    assert data.synthetic and len(data.train) > 0 and len(data.val) > 0
    assert data.test_labels.any() and (data.test_labels == 0).any()
    assert data.test_masks.shape == (len(data.test), *data.test.shape[-2:])
    if dataset == "rsdd":  # validation patches never come from test strips
        assert all("#y" in p for p in data.test_paths)
    _, history, ev, path = P.run_variant(
        "unet-ae", data, smoke, device=torch.device("cpu"), results_dir=tmp_path,
        profile="smoke", force_train=True, progress=False)
    assert history.trained
    assert path == tmp_path / P.NOTEBOOK / f"unet-ae-{dataset}-{data.category}.json"
    rec = json.loads(path.read_text())
    assert set(rec) == GUIDE_KEYS
    assert rec["synthetic"] is True and rec["profile"] == "smoke"
    assert rec["threshold_source"].startswith("normal-validation")
    assert rec["params"]["image_threshold_source"].startswith("normal-validation")
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert 0.0 <= rec[key] <= 1.0
    scores = pd.read_csv(path.with_name(path.stem + ".scores.csv"))
    assert list(scores.columns) == ["path", "label", "defect", "score"]
    assert len(scores) == len(data.test)
    assert np.allclose(scores["score"], ev.scores)
    # the pixel threshold is the largest validation-normal map value ("max" rule)
    assert rec["threshold"] == pytest.approx(float(ev.val_maps.max()))
    assert (P.checkpoint_path(tmp_path, "unet-ae", data)).is_file()
    sweep = P.sigma_sweep(ev, data, smoke, sigmas=(0.0, 2.0))
    assert list(sweep["sigma"]) == [0.0, 2.0]


def test_dagm_holdout_disjoint_from_train(smoke: dict) -> None:
    """Validation normals are held out of Train: no image is in both (compared by pixels)."""
    data = P.load_data("dagm", None, "Class8", {**smoke, "max_train": None}, seed=0,
                       progress=False)
    train = {bytes(t.numpy().tobytes()) for t in data.train}
    assert not any(bytes(v.numpy().tobytes()) in train for v in data.val)


def test_real_dagm_loads_if_present() -> None:
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "dagm"
    if not (root / "Class8").is_dir():
        pytest.skip("real-data dev kit not present")
    settings = {**P.PROFILES["smoke"], "image_size": 32}
    data = P.load_data("dagm", root, "Class8", settings, progress=False)
    assert not data.synthetic and data.test_labels.sum() > 0
