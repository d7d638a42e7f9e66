"""The experiment protocol's contract, the same for every model pipeline (smoke size).

load -> train -> evaluate -> save; the GUIDE keys are present; honest thresholds come from
defect-free validation data; the ORACLE F1 is never below the honest one; the results carry
95 % bootstrap intervals; and a re-run that reuses the checkpoint reproduces the metrics, their
intervals and ``train_seconds`` exactly.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from adlib import experiment, results

PIPELINES = ["hazelnut_ae", "unet_dagm_rsdd", "sem_patches", "fanogan_vs_ae", "feature_embed"]


def _run(P, tmp: Path, run: str, force: bool):
    cfg = P.settings("smoke")
    data = P.load(cfg, data_root=None, seed=0, progress=False)
    trained = P.train(data, cfg, P.VARIANTS[0], results_dir=tmp, run=run, device="cpu", force=force,
                      progress=False)
    evals = P.evaluate(trained, data, cfg, device="cpu")
    paths = P.save(evals, trained, data, cfg, results_dir=tmp, profile="smoke", seed=0, run=run)
    return cfg, trained, evals, paths


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINES)
def test_every_pipeline_keeps_the_protocol(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADLIB_DATA", str(tmp_path / "data"))
    P = importlib.import_module(f"adlib.pipelines.{name}")
    for verb in ("settings", "load", "spec", "train", "evaluate", "save"):
        assert callable(getattr(P, verb)), f"{name} lacks the verb {verb}"
    assert P.NOTEBOOK and P.VARIANTS and set(P.PARAMETERS) <= set(P.PROFILES["smoke"])
    cfg = P.settings("smoke")
    run = experiment.run_id(0, cfg, data_root=None)
    _, trained, evals, paths = _run(P, tmp_path / "res", run, force=True)
    assert not trained.reused and trained.train_seconds > 0
    assert evals and len(paths) == len(evals)
    first = {}
    for ev, path in zip(evals, paths, strict=True):
        assert path.name.endswith(f"-{run}.json") and path.parent.name == P.NOTEBOOK
        raw = json.loads(path.read_text())
        assert set(results.RESULT_KEYS) <= set(raw) and raw["run_id"] == run and raw["seed"] == 0
        assert raw["adlib_version"] and raw["created"]
        # 95 % bootstrap intervals over the test rows: at least the image AUROC's, each lo <= hi
        assert raw["bootstrap"]["n"] >= 1 and raw["ci95"].get("image_auroc") is not None
        assert all(lo <= hi for lo, hi in filter(None, raw["ci95"].values()))
        assert results.load_scores(path)["score"].tolist() == pytest.approx(ev.scores.tolist())
        assert raw["params"]["image_threshold_source"].startswith("normal-validation")
        if raw["threshold"] is not None:
            assert raw["threshold_source"].startswith("normal-validation")
        if raw["pixel_f1"] is not None and raw["params"].get("oracle_pixel_f1") is not None:
            assert raw["params"]["oracle_pixel_f1"] >= raw["pixel_f1"] - 1e-12
        if raw["params"].get("oracle_image_f1") is not None and raw["params"].get("image_f1") is not None:
            assert raw["params"]["oracle_image_f1"] >= raw["params"]["image_f1"] - 1e-12
        first[path.name] = raw
    # a second run with the same run id reuses the checkpoint: same metrics, same train_seconds
    _, again, evals2, paths2 = _run(P, tmp_path / "res", run, force=False)
    assert again.reused and again.train_seconds == trained.train_seconds
    for path in paths2:
        raw = json.loads(path.read_text())
        before = first[path.name]
        for key in (*results.METRIC_KEYS, "threshold", "train_seconds", "per_defect", "ci95"):
            assert raw[key] == before[key], (path.name, key)
