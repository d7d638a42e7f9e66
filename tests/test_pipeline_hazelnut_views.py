"""Tests for the notebook-01 views: tables, figures, the threshold and latent-size studies."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from adlib import metrics
from adlib.pipelines import hazelnut_ae, hazelnut_views

matplotlib.use("Agg")
RUN = "s0-71e3a1"


@pytest.fixture(scope="module")
def cfg() -> dict:
    return hazelnut_ae.settings("smoke", {"image_size": 32})


@pytest.fixture(scope="module")
def data(cfg: dict) -> hazelnut_ae.Data:
    return hazelnut_ae.load(cfg, seed=0, progress=False)


@pytest.fixture(scope="module")
def ev(data: hazelnut_ae.Data, cfg: dict, tmp_path_factory: pytest.TempPathFactory) -> hazelnut_ae.Evaluation:
    torch.set_num_threads(1)
    tr = hazelnut_ae.train(data, cfg, "l2", results_dir=tmp_path_factory.mktemp("res"), run=RUN,
                           force=True, progress=False)
    (only,) = hazelnut_ae.evaluate(tr, data, cfg)
    return only


def test_describe_and_examples(data: hazelnut_ae.Data) -> None:
    table = hazelnut_views.describe(data)
    assert table.loc["total", "train"] == len(data.train) and table.loc["total", "test"] == len(data.test)
    assert table.loc["good", "validation"] == len(data.val)
    assert (table["train (augmented per epoch)"] == table["train"] * 2).all()
    idx = hazelnut_views.examples(data.test_defects)
    assert [data.test_defects[i] for i in idx] == ["crack", "cut", "hole", "print", "good"]


def test_tau_scale_is_rms_difference(ev: hazelnut_ae.Evaluation) -> None:
    assert hazelnut_views.to_map_scale(0.2, "l2") == pytest.approx(0.04)
    assert hazelnut_views.from_map_scale(hazelnut_views.to_map_scale(0.7, "l2"), "l2") == pytest.approx(0.7)
    assert hazelnut_views.to_map_scale(0.2, "ssim") == 0.2
    study = hazelnut_views.threshold_study(ev)
    row = study["at_taus"].set_index("tau").loc[0.2]
    direct = metrics.pixel_prf(ev.maps, ev.masks, 0.04)
    assert int(row["tp"]) == direct.tp and int(row["fp"]) == direct.fp
    region = study["marks"][f"validation {ev.pixel_thresholds['region'].source.split(':')[-1]}"]
    assert region == pytest.approx(np.sqrt(ev.pixel_thresholds["region"].value))  # marks on the tau scale
    assert study["marks"]["ORACLE best F1 (test)"] == pytest.approx(np.sqrt(ev.oracle_pixel.value))
    # a pure-grey image reconstructed as black differs by 0.5 everywhere: RMS 0.5 on the tau scale
    x = np.full((1, 3, 8, 8), 0.5, np.float32)
    m = hazelnut_ae.anomaly_maps(x, np.zeros_like(x), "l2")
    assert hazelnut_views.from_map_scale(float(m.max()), "l2") == pytest.approx(0.5, abs=1e-4)


def test_per_defect_and_comparison_tables_label_the_oracle(ev: hazelnut_ae.Evaluation) -> None:
    table = hazelnut_views.per_defect_table(ev)
    assert table["source"].str.contains("ORACLE").any()
    assert table["source"].str.contains("seed 000").any()
    assert table["source"].str.contains("region").any() and table["source"].str.contains("quantile").any()
    used = table[table["source"].str.endswith("(used)")].set_index("defect")
    for defect, vals in ev.metrics["per_defect"].items():
        assert used.loc[defect, "pixel_f1"] == pytest.approx(vals["pixel_f1"])
    comp = hazelnut_views.comparison_table([ev], {"naive": {"image_auroc": 0.5}})
    row = comp.loc["conv-ae-l2"]
    assert row["threshold rule"] == ev.threshold.source.split(":")[-1]
    assert row["ORACLE pixel_f1 (test)"] >= row["pixel_f1"] - 1e-9
    assert row["ORACLE image_f1 (test)"] >= row["image_f1 @ validation"] - 1e-9
    assert comp.loc["naive", "image_auroc"] == 0.5


def test_figures_render(ev: hazelnut_ae.Evaluation) -> None:
    import matplotlib.pyplot as plt

    for fig in (hazelnut_views.result_figure(ev), hazelnut_views.tau_figure(ev, 0)):
        assert fig.axes
        plt.close(fig)


def test_latent_study_trains_named_checkpoints_in_the_same_run(
    data: hazelnut_ae.Data, cfg: dict, tmp_path: Path
) -> None:
    table, evals = hazelnut_views.latent_study(data, cfg, results_dir=tmp_path, run=RUN, sizes=[4, 16],
                                               epochs=1, force=True, progress=False)
    assert list(table.index) == [4, 16] and set(evals) == {4, 16}
    assert table.loc[16, "parameters"] > table.loc[4, "parameters"]
    assert "latent 4" in hazelnut_views.latent_checks(table)
    names = sorted(p.name for p in (tmp_path / hazelnut_ae.NOTEBOOK / "checkpoints").glob("*.pt"))
    assert names == [f"conv-ae-l2-mvtec-hazelnut-z16-e1-nomonitor-{RUN}.pt",
                     f"conv-ae-l2-mvtec-hazelnut-z4-e1-nomonitor-{RUN}.pt"]
    sub = hazelnut_views.latent_settings(cfg, 4)
    assert (sub["latent_dim"], sub["epochs"], sub["monitor_every"]) == (4, cfg["latent_epochs"], 0)
    again, _ = hazelnut_views.latent_study(data, cfg, results_dir=tmp_path, run=RUN, sizes=[4], epochs=1,
                                           progress=False)
    assert again.loc[4, "train_seconds"] == table.loc[4, "train_seconds"]  # reused, same stored time
    fig = hazelnut_views.latent_figure(evals, [0, 1])
    assert fig.axes


def test_naive_baselines_use_unaugmented_training_images(data: hazelnut_ae.Data, cfg: dict) -> None:
    out = hazelnut_views.naive_baselines(data, cfg)
    assert set(out) == {"naive: distance to mean image", "classical: variation model"}
    again = hazelnut_views.naive_baselines(data, cfg)  # augmented draws would differ from call to call
    assert out == again
    for vals in out.values():
        assert vals["image_auroc"] is not None and 0 <= vals["image_auroc"] <= 1
