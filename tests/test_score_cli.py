"""``adlib score`` reproduces each notebook's scores CSV from its model bundle (every family).

Each family is trained in the smoke settings on its tiny synthetic stand-in, saved through its
pipeline's ``save()`` (which writes the bundle), then the CLI scores the test folder and its
``scores.csv`` is compared row by row with the notebook's ``.scores.csv``: within 1e-4, relative to
the score where it exceeds 1 (PaDiM's Mahalanobis scores are in the hundreds, where float32 itself
resolves only ~6e-5, and the CLI batches images differently from the notebook).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from adlib import cli
from adlib.bundle import BundleError, load_bundle
from adlib.score_cli import row_key

TOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> None:
    torch.set_num_threads(1)


def _cli_scores(json_path: Path, images: Path, out: Path, *extra: str) -> pd.DataFrame:
    rec = json.loads(json_path.read_text())
    bundle = json_path.parent / rec["model_bundle"]
    assert bundle.is_file() and rec["model_bundle"].endswith(".model.pt")
    rc = cli.main(["score", "--model", str(bundle), "--images", str(images), "--out", str(out),
                   "--no-progress", *extra])
    assert rc == 0
    patches = (out / "patches.csv").is_file()
    df = pd.read_csv(out / ("patches.csv" if patches else "scores.csv"))
    df["key"] = [row_key(images / p) for p in df.path]
    if patches:  # one row per patch; anomalous is decided per image
        df["anomalous"] = (df.score > load_bundle(bundle).image_threshold).astype(int)
    return df



def assert_parity(json_path: Path, images: Path, out: Path, *extra: str, onnx: bool = True,
                  patch_rows: bool = False) -> pd.DataFrame:
    """The CLI's score of every test image equals the notebook's within :data:`TOL`, with the
    eager network and (``onnx``) with its ONNX export (``--backend onnx``)."""
    if onnx:
        both = assert_parity(json_path, images, out.with_name(out.name + "-onnx"), "--backend", "onnx",
                             "--no-heatmaps", *extra, onnx=False, patch_rows=patch_rows)
        assert (out.with_name(out.name + "-onnx") / "model.onnx").stat().st_size > 0
        assert not list(out.with_name(out.name + "-onnx").glob(".*"))  # one self-contained file, no leftovers
        assert "(onnx)" in (out.with_name(out.name + "-onnx") / "index.html").read_text()
    nb = pd.read_csv(json_path.with_name(json_path.name[:-5] + ".scores.csv"))
    nb["key"] = [row_key(p if Path(p.partition("#")[0]).is_absolute() else images / p) for p in nb.path]
    cli_df = _cli_scores(json_path, images, out, *extra)
    both = nb.merge(cli_df, on="key", suffixes=("_nb", "_cli"))
    if patch_rows:  # the folder also holds training strips: every notebook row must be there
        assert len(both) == len(nb) and len(cli_df) >= len(nb), (len(nb), len(cli_df), len(both))
    else:
        assert len(both) == len(nb) == len(cli_df), (len(nb), len(cli_df), len(both))
    diff = ((both.score_nb - both.score_cli).abs() / both.score_nb.abs().clip(lower=1.0)).max()
    assert diff <= TOL, f"{json_path.name}: largest (relative) score difference {diff:.3g}"
    t = load_bundle(json_path.parent / json.loads(json_path.read_text())["model_bundle"]).image_threshold
    assert (both.anomalous == (both.score_cli > t).astype(int)).all()
    return both


def test_conv_ae_parity_and_outputs(tmp_path: Path) -> None:
    from adlib.pipelines import hazelnut_ae as P

    cfg = P.settings("smoke", {"image_size": 32})
    data = P.load(cfg, data_root=None, seed=0, progress=False)
    run = "s0-0c0c0c"
    paths = []
    for variant in ("l2", "ssim"):
        tr = P.train(data, cfg, variant, results_dir=tmp_path, run=run, force=True, progress=False)
        paths += P.save(P.evaluate(tr, data, cfg), tr, data, cfg, results_dir=tmp_path, profile="smoke",
                        seed=0, run=run)
    test_root = Path(data.split.test[0].path).parents[1]
    for i, p in enumerate(paths):
        assert_parity(p, test_root, tmp_path / f"out{i}")
    from adlib.score_cli import reproduce

    _, table = reproduce(paths[1], test_root, tmp_path / "again")  # the notebooks' closing check
    assert len(table) == len(data.split.test) and table.difference.max() <= TOL
    out = tmp_path / "out0"
    html = (out / "index.html").read_text()
    heat = sorted((out / "heatmaps").glob("*.png"))
    assert len(heat) == len(data.split.test)  # stems repeat across defect folders: names made unique
    assert html.count("<figure") == len(heat) and "image threshold" in html
    b = load_bundle(paths[0].parent / json.loads(paths[0].read_text())["model_bundle"])
    assert b.thresholds["image"]["source"].startswith("normal-validation")
    assert b.thresholds["pixel"]["source"].startswith("normal-validation")


def _unet_results(dataset: str, results_dir: Path, run: str) -> tuple[Path, object]:
    """A smoke-trained notebook-02 UNet AE on ``dataset``, saved: its results JSON and data."""
    from adlib.pipelines import unet_dagm_rsdd as P

    cfg = P.settings("smoke")
    data = P.load(cfg, data_root=None, dataset=dataset, seed=0, progress=False)
    tr = P.train(data, cfg, "unet-ae", results_dir=results_dir, run=run, force=True, progress=False)
    (p,) = P.save(P.evaluate(tr, data, cfg, progress=False), tr, data, cfg, results_dir=results_dir,
                  profile="smoke", seed=0, run=run)
    return p, data


def test_unet_parity_dagm(tmp_path: Path) -> None:
    p, data = _unet_results("dagm", tmp_path, "s0-0d0d0d")
    assert_parity(p, Path(data.test_paths[0]).parent, tmp_path / "out")


def test_patch_models_parity_rsdd(tmp_path: Path) -> None:
    """RSDDs: the UNet AE and PatchCore score grid patches of each strip (rows ``<strip>#y..x..``)."""
    from adlib.pipelines import feature_embed as F

    run = "s0-0b0b0b"
    p, data = _unet_results("rsdd", tmp_path, run)
    strips = Path(data.split.root)
    assert_parity(p, strips, tmp_path / "unet", patch_rows=True)
    fcfg = F.settings("smoke")
    fdata = F.load(fcfg, dataset="rsdd", seed=0, progress=False)
    fitted = F.train(fdata, fcfg, "patchcore", results_dir=tmp_path, run=run, progress=False)
    (q,) = F.save(F.evaluate(fitted, fdata, fcfg), fitted, fdata, fcfg, results_dir=tmp_path, profile="smoke",
                  seed=0, run=run)
    both = assert_parity(q, strips, tmp_path / "pc", "--no-heatmaps", patch_rows=True)
    assert both.key.str.contains("#y").all()
    assert (tmp_path / "pc" / "scores.csv").is_file()  # one row per strip beside the patch rows


def test_sem_patch_models_parity(tmp_path: Path) -> None:
    """SEM: every score kind (rec of the seed AE, smooth and feature through its denoiser, the SSIM
    AE's 1 - SSIM) from its own bundle; rows ``<image>#y=..,x=..`` relative to the data folder."""
    from adlib.pipelines import sem_patches as P

    cfg = P.settings("smoke", {"n_train": 64, "max_val_patches": 32, "den_depth": 2, "den_width": 4, "base": 4,
                               "latent_dim": 8})
    data = P.load(cfg, data_root=None, seed=0, progress=False)
    run = "s0-0a1b2c"
    paths = []
    for variant in ("dae", P.SSIM_VARIANT):
        tr = P.train(data, cfg, variant, results_dir=tmp_path, run=run, force=True, progress=False)
        paths += P.save(P.evaluate(tr, data, cfg), tr, data, cfg, results_dir=tmp_path, profile="smoke",
                        seed=0, run=run)
    assert len(paths) == 4  # dae-rec, dae-smooth, dae-feature, ssim-ae-rec
    for i, p in enumerate(paths):
        assert_parity(p, Path(data.split.root), tmp_path / f"out{i}", "--no-heatmaps", patch_rows=True,
                      onnx=i in (2, 3))  # ONNX: the AE + denoiser graph and the SSIM AE's


def test_fanogan_and_ae256_parity(tmp_path: Path) -> None:
    from adlib.pipelines import fanogan_vs_ae as P

    cfg = P.settings("smoke")
    data = P.load(cfg, data_root=None, category="bottle", seed=0, progress=False)
    run = "s0-0e0e0e"
    for variant in (P.AE_METHOD, P.GAN_METHOD):
        tr = P.train(data, cfg, variant, results_dir=tmp_path, run=run, force=True, progress=False)
        (p,) = P.save(P.evaluate(tr, data, cfg), tr, data, cfg, results_dir=tmp_path, profile="smoke",
                      seed=0, run=run)
        assert_parity(p, Path(data.split.test[0].path).parents[1], tmp_path / f"out-{variant}")


def test_feature_parity(tmp_path: Path) -> None:
    from adlib.pipelines import feature_embed as P

    cfg = P.settings("smoke")
    data = P.load(cfg, dataset="mvtec", category="bottle", seed=0, progress=False)
    run = "s0-0f0f0f"
    fitted = [P.train(data, cfg, v, results_dir=tmp_path, run=run, progress=False) for v in P.VARIANTS]
    paths = P.save(P.evaluate(fitted, data, cfg), fitted, data, cfg, results_dir=tmp_path, profile="smoke",
                   seed=0, run=run)
    assert len(paths) == 2
    for i, p in enumerate(paths):
        assert_parity(p, Path(data.paths[0]).parents[1], tmp_path / f"out{i}", "--no-heatmaps")


def test_bad_images_are_named_or_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from adlib.pipelines import hazelnut_ae as P

    cfg = P.settings("smoke", {"image_size": 32})
    data = P.load(cfg, data_root=None, seed=0, progress=False)
    run = "s0-0a0a0a"
    tr = P.train(data, cfg, "l2", results_dir=tmp_path, run=run, force=True, progress=False)
    (p,) = P.save(P.evaluate(tr, data, cfg), tr, data, cfg, results_dir=tmp_path, profile="smoke", seed=0, run=run)
    bundle = str(p.parent / json.loads(p.read_text())["model_bundle"])
    images = tmp_path / "mine" / "sub"
    images.mkdir(parents=True)
    (images / "broken.png").write_bytes(b"not a png")
    (images / "ok.png").write_bytes(Path(data.split.test[0].path).read_bytes())
    args = ["score", "--model", bundle, "--images", str(images.parent), "--no-progress"]
    assert cli.main([*args, "--out", str(tmp_path / "o1")]) == 1
    assert "broken.png" in capsys.readouterr().err
    assert cli.main([*args, "--out", str(tmp_path / "o2"), "--skip-bad"]) == 0
    df = pd.read_csv(tmp_path / "o2" / "scores.csv")
    assert df.path.tolist() == ["sub/ok.png"]
    assert "broken.png" in (tmp_path / "o2" / "index.html").read_text()


def test_bundle_refuses_other_versions_and_files(tmp_path: Path) -> None:
    from adlib import bundle as B

    b = B.Bundle("conv-ae", "m", {}, {"size": [8, 8], "channels": 1}, {}, {"image": {"value": 1.0, "source": "x"}})
    path = B.save_bundle(b, tmp_path / "a.model.pt")
    assert load_bundle(path).family == "conv-ae"
    raw = torch.load(path, weights_only=True)
    for change, words in (({"format_version": B.FORMAT_VERSION + 1}, "format"),
                          ({"meta": {**raw["meta"], "adlib_version": "9.0.0"}}, "major version"),
                          ({"format": "other"}, "not an adlib model bundle")):
        torch.save({**raw, **change}, tmp_path / "b.model.pt")
        with pytest.raises(BundleError, match=words):
            load_bundle(tmp_path / "b.model.pt")
    with pytest.raises(BundleError, match="no such model bundle"):
        load_bundle(tmp_path / "missing.model.pt")
    (tmp_path / "c.model.pt").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="cannot be read"):
        load_bundle(tmp_path / "c.model.pt")


def test_export_refuses_a_graph_that_disagrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parity check is real: an exported graph whose outputs differ is not written."""
    from adlib import bundle as B
    from adlib import export
    from adlib.models.conv_ae import ConvAutoencoder
    from adlib.scoring.base import net_entry

    torch.manual_seed(0)
    model = ConvAutoencoder(latent_dim=4, image_size=32, channels=1).eval()
    b = B.Bundle("conv-ae", "conv-ae-l2", {"model": net_entry("conv_ae", model, latent_dim=4, image_size=32,
                                                               channels=1)},
                 {"size": [32, 32], "channels": 1}, {"variant": "l2", "score": "max"},
                 {"image": {"value": 0.1, "source": "normal-validation:quantile-0.95"}, "pixel": None})
    path, report = export.export_onnx(b, tmp_path / "ok.onnx")
    assert path.is_file() and report["map_diff_relative"] <= export.TOLERANCE
    real = export.OnnxRunner

    class Off(real):  # an export whose reconstruction is inverted (differs also where clamped)
        def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(1.0 - o for o in super().__call__(x))

    monkeypatch.setattr(export, "OnnxRunner", Off)
    with pytest.raises(RuntimeError, match="differs from the eager one"):
        export.export_onnx(b, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    assert cli.main(["export", "--model", str(B.save_bundle(b, tmp_path / "b.model.pt")), "--out",
                     str(tmp_path / "cli.onnx")]) == 1  # the CLI reports the same refusal


def test_notebook_demo_on_a_notebook_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The notebooks' last cell: the command, then the same scores back from the CLI."""
    from adlib.pipelines import hazelnut_ae as P
    from adlib.score_cli import images_folder, notebook_demo

    cfg = P.settings("smoke", {"image_size": 32})
    data = P.load(cfg, data_root=None, seed=0, progress=False)
    tr = P.train(data, cfg, "l2", results_dir=tmp_path, run="s0-0d1e2f", force=True, progress=False)
    (p,) = P.save(P.evaluate(tr, data, cfg), tr, data, cfg, results_dir=tmp_path, profile="smoke", seed=0,
                  run="s0-0d1e2f")
    assert images_folder(data.split) == Path(data.split.test[0].path).parents[1]
    top = notebook_demo(p, data.split, tmp_path / "scored")
    text = capsys.readouterr().out
    assert "adlib score --model" in text and f"{len(data.split.test)} of this notebook's" in text
    assert list(top.columns) == ["path", "score", "anomalous"] and top.score.is_monotonic_decreasing
