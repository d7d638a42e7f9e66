"""Synthetic stand-ins: exact original layouts, determinism, caching, non-trivial defects."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from adlib.data import synthetic as syn
from adlib.data.synthetic.dagm_like import render_dagm_like
from adlib.data.synthetic.mvtec_like import CATEGORIES, render_mvtec_like

DATASETS = [("mvtec", "hazelnut"), ("mvtec", "bottle"), ("mvtec", "carpet"), ("dagm", None),
            ("rsdd", None), ("sem", None)]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[tuple[str, str | None], Path]:
    base = tmp_path_factory.mktemp("synthetic")
    return {(k, c): syn.ensure_synthetic(k, c, size="tiny", root=base, progress=False) for k, c in DATASETS}


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _digest(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in _files(folder)
            if not name.endswith("manifest.json")}


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


# ----------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_mvtec_layout_is_exact(roots, category):
    params = syn.SIZES["mvtec"]["tiny"]
    folder = roots[("mvtec", category)] / category
    defects = list(CATEGORIES[category].defects)
    expected = {f"train/good/{i:03d}.png" for i in range(params["n_train"])}
    expected |= {f"test/good/{i:03d}.png" for i in range(params["n_test_good"])}
    for d in defects:
        for i in range(params["n_test_per_defect"]):
            expected |= {f"test/{d}/{i:03d}.png", f"ground_truth/{d}/{i:03d}_mask.png"}
    assert set(_files(folder)) == expected | {"manifest.json"}
    for d in defects:
        for i in range(params["n_test_per_defect"]):
            image = _gray(folder / "test" / d / f"{i:03d}.png")
            mask = _gray(folder / "ground_truth" / d / f"{i:03d}_mask.png")
            assert image.shape == (params["size"], params["size"], 3) and image.dtype == np.uint8
            assert mask.shape == image.shape[:2] and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255} and (mask == 255).any()


def test_dagm_layout_and_labels(roots):
    params = syn.SIZES["dagm"]["tiny"]
    folder = roots[("dagm", None)] / "Class8"
    assert sorted(p.name for p in folder.iterdir()) == ["Test", "Train", "manifest.json"]
    ids = {}
    for split, n_norm, n_def in [("Train", params["n_train_normal"], params["n_train_defective"]),
                                 ("Test", params["n_test_normal"], params["n_test_defective"])]:
        lines = (folder / split / "Label" / "Labels.txt").read_text().splitlines()
        assert lines[0] == "1"
        rows = [line.split("\t") for line in lines[1:]]
        assert len(rows) == n_norm + n_def
        assert sum(r[1] == "1" for r in rows) == n_def
        ids[split] = {int(r[0]) for r in rows}
        images = {p.name for p in (folder / split).glob("*.PNG")}
        assert images == {r[2] for r in rows}
        labels = {p.name for p in (folder / split / "Label").glob("*_label.PNG")}
        for r in rows:
            assert r[2] == f"{int(r[0]):04d}.PNG" and r[3] == "0"
            if r[1] == "1":
                assert r[4] == f"{int(r[0]):04d}_label.PNG" and r[4] in labels
                mask = _gray(folder / split / "Label" / r[4])
                assert mask.shape == _gray(folder / split / r[2]).shape == (params["size"],) * 2
                assert set(np.unique(mask)) == {0, 255}
            else:
                assert r[4] == "0"
        assert len(labels) == n_def
    assert not ids["Train"] & ids["Test"]


def test_rsdd_layout(roots):
    params = syn.SIZES["rsdd"]["tiny"]
    folder = roots[("rsdd", None)] / "Type-I RSDDs dataset"
    images = sorted(p.name for p in (folder / "Rail surface images").iterdir())
    assert images == sorted(f"rail_{i}.jpg" for i in range(1, params["n_strips"] + 1))
    assert images == sorted(p.name for p in (folder / "GroundTruth").iterdir())
    for name in images:
        image = _gray(folder / "Rail surface images" / name)
        mask = _gray(folder / "GroundTruth" / name)
        assert image.shape == mask.shape == (params["height"], params["width"])
        # JPEG masks (as in the original): nearly all pixels at 0 or 255, and a defect present.
        assert np.mean((mask < 20) | (mask > 235)) > 0.99 and (mask > 127).any()


def test_sem_layout(roots):
    params = syn.SIZES["sem"]["tiny"]
    root = roots[("sem", None)]
    normal = sorted(p.name for p in (root / "Normal").iterdir())
    assert normal == [f"N{i:03d}.tif" for i in range(1, params["n_normal"] + 1)]
    images = sorted(p.stem for p in (root / "Anomalous" / "images").glob("*.tif"))
    assert images == sorted(p.stem for p in (root / "Anomalous" / "gt").glob("*.png"))
    assert len(images) == params["n_anomalous"]
    for stem in images:
        mask = _gray(root / "Anomalous" / "gt" / f"{stem}.png")
        assert mask.shape == _gray(root / "Anomalous" / "images" / f"{stem}.tif").shape
        assert set(np.unique(mask)) == {0, 255}


# ----------------------------------------------------------------------------- determinism, overlap
def _make(kind: str, root: Path, seed: int) -> Path:
    if kind == "mvtec":
        return syn.make_mvtec_like(root, "hazelnut", n_train=2, n_test_per_defect=1, n_test_good=1,
                                   size=64, seed=seed, progress=False)
    if kind == "dagm":
        return syn.make_dagm_like(root, n_train_normal=2, n_train_defective=1, n_test_normal=1,
                                  n_test_defective=1, size=64, seed=seed, progress=False)
    if kind == "rsdd":
        return syn.make_rsdd_like(root, n_strips=2, height=200, seed=seed, progress=False)
    return syn.make_sem_like(root, n_normal=1, n_anomalous=2, size=96, seed=seed, progress=False)


@pytest.mark.parametrize("kind", syn.KINDS)
def test_same_seed_same_bytes_other_seed_differs(tmp_path, kind):
    a, b, c = (_make(kind, tmp_path / name, seed) for name, seed in [("a", 3), ("b", 3), ("c", 4)])
    assert _digest(a) == _digest(b)
    da, dc = _digest(a), _digest(c)
    assert set(da.values()).isdisjoint(dc.values())  # every file differs


@pytest.mark.parametrize("key", [("mvtec", "hazelnut"), ("dagm", None), ("sem", None)])
def test_train_and_test_never_overlap(roots, key):
    root = roots[key]
    if key[0] == "mvtec":
        train = list((root / "hazelnut" / "train").rglob("*.png"))
        test = list((root / "hazelnut" / "test").rglob("*.png"))
    elif key[0] == "dagm":
        train = list((root / "Class8" / "Train").glob("*.PNG"))
        test = list((root / "Class8" / "Test").glob("*.PNG"))
    else:
        train = list((root / "Normal").glob("*.tif"))
        test = list((root / "Anomalous" / "images").glob("*.tif"))
    pixels = lambda paths: {hashlib.sha256(_gray(p).tobytes()).hexdigest() for p in paths}  # noqa: E731
    assert train and test
    assert pixels(train).isdisjoint(pixels(test))
    assert len(pixels(train)) == len(train)  # normal images vary


# ----------------------------------------------------------------------------- caching
def test_cache_hit_does_not_regenerate(tmp_path, monkeypatch):
    root = syn.ensure_synthetic("sem", size="tiny", root=tmp_path, progress=False)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["version"] == syn.GENERATOR_VERSION and manifest["seed"] == 0
    assert manifest["params"] == syn.SIZES["sem"]["tiny"]

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although the cache is valid")

    monkeypatch.setattr(syn, "_generate", boom)
    assert syn.ensure_synthetic("sem", size="tiny", root=tmp_path, progress=False) == root
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_changed_manifest_regenerates(tmp_path):
    root = syn.ensure_synthetic("mvtec", "carpet", size="tiny", root=tmp_path, progress=False)
    before = _digest(root / "carpet")
    manifest_path = root / "carpet" / "manifest.json"
    stale = json.loads(manifest_path.read_text()) | {"version": "0"}
    manifest_path.write_text(json.dumps(stale))
    (root / "carpet" / "train" / "good" / "000.png").unlink()
    assert syn.ensure_synthetic("mvtec", "carpet", size="tiny", root=tmp_path, progress=False) == root
    assert json.loads(manifest_path.read_text())["version"] == syn.GENERATOR_VERSION
    assert _digest(root / "carpet") == before


def test_bad_requests_raise_value_errors(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        syn.ensure_synthetic("kolektor", root=tmp_path)
    with pytest.raises(ValueError, match="category"):
        syn.ensure_synthetic("mvtec", "transistor", root=tmp_path)
    with pytest.raises(ValueError, match="size"):
        syn.ensure_synthetic("dagm", size="huge", root=tmp_path)


# ----------------------------------------------------------------------------- non-triviality
def _naive_aurocs(train: np.ndarray, tests: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Pixel AUROC of |x - mean| / std (per pixel, over train), raw and Gaussian-smoothed."""
    train = train.astype(np.float32).reshape(*train.shape[:3], -1)
    mean, std = train.mean(0), train.std(0) + 1.0
    labels, raw, smooth = [], [], []
    for image, mask in tests:
        z = (np.abs(image.astype(np.float32).reshape(mean.shape) - mean) / std).mean(-1)
        labels.append(mask.ravel())
        raw.append(z.ravel())
        smooth.append(ndimage.gaussian_filter(z, 2.0).ravel())
    y = np.concatenate(labels)
    return roc_auc_score(y, np.concatenate(raw)), roc_auc_score(y, np.concatenate(smooth))


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_mvtec_defects_are_subtle_but_detectable(category):
    size = 96
    train = np.stack([render_mvtec_like(category, size, np.random.default_rng([11, i]))[0] for i in range(16)])
    tests = []
    for k, defect in enumerate(["good", "good", *CATEGORIES[category].defects]):
        for i in range(3):
            image, mask = render_mvtec_like(category, size, np.random.default_rng([12, k, i]), defect)
            tests.append((image, np.zeros((size, size), bool) if mask is None else mask))
    raw, smooth = _naive_aurocs(train, tests)
    assert raw < 0.97, f"{category}: a per-pixel z-score already finds the defects (AUROC {raw:.3f})"
    assert max(raw, smooth) > 0.55, f"{category}: defects not detectable (AUROC {raw:.3f}/{smooth:.3f})"


def test_dagm_defects_are_subtle_but_detectable():
    size = 128
    train = np.stack([render_dagm_like(size, np.random.default_rng([21, i]), False)[0] for i in range(16)])
    tests = []
    for i in range(16):
        image, _, label = render_dagm_like(size, np.random.default_rng([22, i]), i % 2 == 1)
        tests.append((image, np.zeros((size, size), bool) if label is None else label))
    raw, smooth = _naive_aurocs(train[..., None], [(im[..., None], m) for im, m in tests])
    assert raw < 0.97, f"dagm: a per-pixel z-score already finds the defects (AUROC {raw:.3f})"
    assert max(raw, smooth) > 0.55, f"dagm: defects not detectable (AUROC {raw:.3f}/{smooth:.3f})"


def test_dagm_label_is_a_coarse_ellipse_covering_the_scratch():
    for i in range(6):
        _, scratch, label = render_dagm_like(128, np.random.default_rng([23, i]), True)
        assert scratch.any() and np.all(label[scratch])  # covers the whole scratch
        assert label.sum() > 2 * scratch.sum()  # and is coarser than it


# ----------------------------------------------------------------------------- readers
def test_readers_load_every_synthetic_layout(roots):
    mvtec = pytest.importorskip("adlib.data.mvtec", reason="reader adlib.data.mvtec not written yet")
    dagm = pytest.importorskip("adlib.data.dagm", reason="reader adlib.data.dagm not written yet")
    rsdd = pytest.importorskip("adlib.data.rsdd", reason="reader adlib.data.rsdd not written yet")
    sem = pytest.importorskip("adlib.data.sem", reason="reader adlib.data.sem not written yet")
    tiny = syn.SIZES
    for category in CATEGORIES:
        split = mvtec.read_mvtec(roots[("mvtec", category)], category, check_images=True, progress=False)
        assert split.has_masks and split.channels == 3
        assert len(split.train) == tiny["mvtec"]["tiny"]["n_train"]
        assert {s.defect for s in split.test} == {"good", *CATEGORIES[category].defects}
        assert all((s.mask_path is None) == (s.label == 0) for s in split.test)
    split = dagm.read_dagm(roots[("dagm", None)], "Class8", check_images=True, progress=False)
    assert len(split.train) == tiny["dagm"]["tiny"]["n_train_normal"]
    assert sum(s.label for s in split.test) == tiny["dagm"]["tiny"]["n_test_defective"]
    split = rsdd.read_rsdd(roots[("rsdd", None)], check_images=True, progress=False)
    assert len(split.test) == tiny["rsdd"]["tiny"]["n_strips"] and all(s.label == 1 for s in split.test)
    split = sem.read_sem(roots[("sem", None)], check_images=True, progress=False)
    assert len(split.train) == tiny["sem"]["tiny"]["n_normal"]
    assert len(split.test) == tiny["sem"]["tiny"]["n_anomalous"]
    mask = split.test[0].load_mask()
    assert mask is not None and mask.any() and mask.shape == split.test[0].load_image().shape[:2]


# ----------------------------------------------------------------------------- SEM: structural defects
def test_sem_beads_have_fibre_brightness():
    from adlib.data.synthetic.sem_like import render_sem_like

    ratios = []
    for i in range(6):
        rng = np.random.default_rng([32, i])
        image, mask = render_sem_like(256, rng, 4)
        if not mask.any():
            continue
        x = image.astype(np.float64)
        bright = x > np.quantile(x[~mask], 0.8)  # fibre-bright pixels outside the defects
        ratios.append(np.percentile(x[mask], 95) / np.percentile(x[~mask & bright], 95))
    assert ratios and max(ratios) < 1.25, f"defect highlights brighter than fibre highlights: {ratios}"


# ----------------------------------------------------------------------------- MVTec-like: image level
def _mvtec_images(category: str, split: str, defect: str, n: int, size: int = 64) -> np.ndarray:
    from adlib.data.synthetic.mvtec_like import _rng

    return np.stack([render_mvtec_like(category, size, _rng(5, category, split, defect, i), defect)[0]
                     for i in range(n)]).astype(np.float32) / 255.0


def _global_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    gray = images.mean(-1)
    return {"mean": images.mean((1, 2, 3)), "std": images.std((1, 2, 3)),
            "bright area": (gray > 0.15).mean((1, 2)), "red share": images[..., 0].mean((1, 2)) / (images.mean((1, 2, 3)) * 3 + 1e-6)}


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_mvtec_good_test_images_match_train_distribution(category):
    train = _global_stats(_mvtec_images(category, "train", "good", 40))
    good = _global_stats(_mvtec_images(category, "test", "good", 40))
    for name in train:
        a, b = train[name], good[name]
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) + 1e-9
        assert abs(a.mean() - b.mean()) < 3.5 * se, f"{category}: {name} of test/good differs from train"
        assert 0.5 < (b.std() + 1e-6) / (a.std() + 1e-6) < 2.0, f"{category}: {name} spread differs"


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_mvtec_defects_are_local_changes_of_a_normal_image(category):
    size = 64
    for k, defect in enumerate(CATEGORIES[category].defects):
        for i in range(3):
            clean, _ = render_mvtec_like(category, size, np.random.default_rng([13, k, i]), "good")
            image, mask = render_mvtec_like(category, size, np.random.default_rng([13, k, i]), defect)
            changed = np.abs(image.astype(int) - clean.astype(int)).max(-1) > 2
            near = ndimage.binary_dilation(mask, iterations=3)
            assert changed.any() and not (changed & ~near).any(), f"{category}/{defect}: change outside the defect"


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_mvtec_naive_image_score_ranks_defective_images_higher(category):
    """Image AUROC of max(smoothed per-pixel z-score vs the train mean/std) beats chance.

    With a normal image drawn from another distribution than the training images (or defects
    that shrink or darken the whole object) this score would rank good test images HIGHER.
    """
    train = _mvtec_images(category, "train", "good", 40)
    mean, std = train.mean(0), train.std(0) + 0.02
    labels, scores = [], []
    for defect in ["good", *CATEGORIES[category].defects]:
        for image in _mvtec_images(category, "test", defect, 30 if defect == "good" else 10):
            z = (np.abs(image - mean) / std).mean(-1)
            scores.append(ndimage.gaussian_filter(z, 1.0).max())
            labels.append(defect != "good")
    auroc = roc_auc_score(labels, scores)
    assert auroc > 0.5, f"{category}: naive image AUROC {auroc:.3f}: good test images look more unusual"


def test_hazelnut_defects_raise_the_naive_image_score():
    """Each hazelnut defect type raises max(smoothed z-score) above its own clean image in most
    cases: the image score is not left to the nut's pose (tip and outline) alone."""
    train = _mvtec_images("hazelnut", "train", "good", 40)
    mean, std = train.mean(0), train.std(0) + 0.02

    def score(image: np.ndarray) -> float:
        return float(ndimage.gaussian_filter((np.abs(image - mean) / std).mean(-1), 1.0).max())

    share = {}
    for k, defect in enumerate(CATEGORIES["hazelnut"].defects):
        raised = []
        for i in range(20):
            clean, _ = render_mvtec_like("hazelnut", 64, np.random.default_rng([14, k, i]), "good")
            image, _ = render_mvtec_like("hazelnut", 64, np.random.default_rng([14, k, i]), defect)
            raised.append(score(image / 255.0) > score(clean / 255.0) + 1e-6)
        share[defect] = float(np.mean(raised))
    assert min(share.values()) >= 0.4 and np.mean(list(share.values())) >= 0.5, f"share raised: {share}"
