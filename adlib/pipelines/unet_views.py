"""Tables and figures of notebook 02 (UNet autoencoder on DAGM and RSDDs), built from Evaluations.

``runs`` below is the notebook's ``{(dataset, variant): (trained, evaluation)}``, filled by the
protocol's verbs (:func:`~adlib.pipelines.unet_dagm_rsdd.train`, ``evaluate``, ``save``). Nothing
here trains, chooses a rule or writes a results file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from adlib import metrics, viz
from adlib.models.unet_ae import VARIANTS as MODEL_VARIANTS
from adlib.models.unet_ae import UNetAE, count_parameters
from adlib.pipelines import unet_dagm_rsdd as pipeline
from adlib.pipelines import unet_rules as rules

Runs = Mapping[tuple[str, str], tuple[Any, Any]]
"""``{(dataset, variant): (Trained, Evaluation)}``."""


def network_table(base_channels: int) -> pd.DataFrame:
    """Skip connections and parameter count of every variant at width ``base_channels``."""
    return pd.DataFrame([
        {"variant": v, "skips into": MODEL_VARIANTS[v]["skips"],
         "parameters": count_parameters(UNetAE.from_variant(v, base_channels=base_channels))}
        for v in MODEL_VARIANTS])


def show_test_examples(data: pipeline.Data, n_good: int = 2, n_bad: int = 4) -> Figure:
    """A few defect-free and defective test items with their ground truth."""
    idx = np.concatenate([np.flatnonzero(data.test_labels == 0)[:n_good],
                          np.flatnonzero(data.test_labels == 1)[:n_bad]])
    return viz.result_grid(data.test[idx], gt_masks=[data.test_masks[i] for i in idx],
                           titles=[f"{data.dataset}: {data.test_defects[i]}" for i in idx],
                           cell_size=2.0, show=True)


def summary_table(runs: Runs) -> pd.DataFrame:
    """One row per (dataset, variant): the results' metrics, honest and ORACLE F1, region F1."""
    rows = []
    for (ds, variant), (trained, ev) in runs.items():
        m = ev.metrics
        rows.append({
            "dataset": ds, "method": variant, "rule": ev.rule.name(),
            "image_auroc": m["image_auroc"], "image_aupr": m["image_aupr"], "image_f1": ev.image_f1,
            "pixel_auroc": m["pixel_auroc"], "aupro": m["aupro"], "pixel_f1": m["pixel_f1"],
            "region_f1": ev.region.get("region_f1"), "oracle_image_f1": ev.oracle_image_f1,
            "oracle_pixel_f1": ev.oracle_pixel_f1, "residual_contrast": ev.residual_contrast,
            "train_s": round(trained.train_seconds, 1), "reused": trained.reused,
        })
    return pd.DataFrame(rows)


def comparison_table(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary_table` with the seed's Table 1 F1 of each dataset beside our numbers."""
    from adlib.published import published_table

    pub = published_table(seed="002")
    seed_f1 = {r.dataset: r.value for r in pub.itertuples() if r.metric == "f1"}
    out = summary.drop(columns=["reused"], errors="ignore").copy()
    out.insert(2, "seed_table1_f1", out["dataset"].map(seed_f1))
    return out


def show_training_curves(runs: Runs, dataset: str) -> Figure:
    """The training loss (MSE per epoch) of every variant trained on ``dataset``."""
    fig, names = None, []
    for (ds, variant), (trained, _) in runs.items():
        if ds != dataset:
            continue
        fig = viz.training_curves(trained.history, per="epoch", ax=None if fig is None else fig.axes[0],
                                  title=f"{dataset}: training loss (MSE)")
        names.append(variant)
    fig.axes[0].legend(names)
    return viz.show(fig)


def show_skip_copies(runs: Runs, data: pipeline.Data, device: Any = "cpu", n: int = 2) -> list[Figure]:
    """Input, each variant's reconstruction and residual for ``n`` defective test items."""
    items = [(v, tr, ev) for (ds, v), (tr, ev) in runs.items() if ds == data.dataset]
    figs = []
    for i in np.flatnonzero(data.test_labels == 1)[:n]:
        x = data.test[i:i + 1]
        recons = [pipeline.reconstruct(tr.model, x, device)[0, 0] for _, tr, _ in items]
        res = [np.zeros_like(items[0][2].raw_maps[i])] + [ev.raw_maps[i] for *_, ev in items]
        figs.append(viz.result_grid([x[0, 0]] + recons, residual_maps=res, cell_size=2.4, show=True,
                                    titles=["input"] + [f"{v} reconstruction" for v, *_ in items]))
    return figs


def show_threshold_sensitivity(ev: pipeline.Evaluation, data: pipeline.Data) -> list[Figure]:
    """Pixel P/R/F1 against the threshold and the image-score histograms, honest and ORACLE marked."""
    t = ev.pixel_threshold.value
    lo, hi = np.quantile(ev.val_maps, 0.5), max(float(ev.maps.max()), t * 1.01)
    curve = metrics.prf_curve(ev.maps, data.test_masks, np.geomspace(max(lo, 1e-8), hi, 60))
    marks = {"validation (honest)": t}
    img_marks = {"validation (honest)": ev.image_threshold.value}
    if ev.oracle_pixel is not None:
        marks["ORACLE (test set)"] = ev.oracle_pixel.value
    if ev.oracle_image is not None:
        img_marks["ORACLE (test set)"] = ev.oracle_image.value
    title = f"{data.dataset} / {ev.method}"
    return [viz.prf_vs_threshold(curve, marks=marks, logx=True, show=True,
                                 title=f"{title}: pixel P/R/F1 vs tau ({ev.rule.name()})"),
            viz.score_distributions(ev.scores, data.test_labels, img_marks, log=True, show=True,
                                    title=f"{title}: image scores")]


def show_segmentation_examples(trained: Any, ev: pipeline.Evaluation, data: pipeline.Data,
                               device: Any = "cpu", n: int = 4) -> list[Figure]:
    """The seed's Fig. 2: input, reconstruction, decision map, predicted mask, ground truth."""
    idx = np.flatnonzero(data.test_labels == 1)[:n]
    if not len(idx):
        return []
    pred = ev.predicted()[idx]
    recon = pipeline.reconstruct(trained.model, data.test[idx], device)
    fig = viz.result_grid(data.test[idx], recon, ev.maps[idx], pred, [data.test_masks[i] for i in idx],
                          titles=[f"{data.dataset} #{i} score {ev.scores[i]:.3g}" for i in idx],
                          show=True)
    return [fig, viz.overlay(data.test[idx[0], 0], pred[0], show=True,
                             title=f"{data.dataset}: predicted mask over the image")]


def default_rules(ev: pipeline.Evaluation, cfg: dict) -> dict[str, rules.Rule]:
    """The rules compared in the notebook: the seed's raw residual with the max and the 0.999
    quantile, a Gaussian-smoothed map (sigma 6, max: this notebook's earlier rule), the dilated
    map with and without the two-stage gate, and the rule actually used."""
    window = ev.rule.seg_window or max(cfg["tune_seg_windows"])
    s = ev.rule.score_sigma
    chosen = "a-priori default" if ev.tuning is None or ev.tuning.empty else "chosen on tuning set"
    return {"seed: raw residual, max of validation": rules.Rule(s, 0, 1.0, False),
            "raw residual, 0.999 quantile": rules.Rule(s, 0, 0.999, False),
            "gaussian sigma 6, max (earlier rule)": rules.Rule(s, 6, 1.0, False, "gauss"),
            f"dilated {window}, 0.999 quantile": rules.Rule(s, window, 0.999, False),
            f"dilated {window}, 0.999 quantile, two-stage": rules.Rule(s, window, 0.999, True),
            f"{chosen}: {ev.rule.name()}": ev.rule}


def rule_table(ev: pipeline.Evaluation, data: pipeline.Data, cfg: dict,
               candidates: Mapping[str, rules.Rule] | None = None) -> pd.DataFrame:
    """Every rule side by side on the test set (an analysis of the choice, never a tuning step).

    Each rule goes through the same evaluation as the results (:func:`evaluate_rule`: thresholds
    from validation normals, ORACLE beside them): honest pixel and region F1, pixel AUROC and
    AUPRO of its decision map, and the ORACLE pixel F1 that map could reach. No bootstrap
    intervals (``n_boot=0``): the table shows point values only, and the results keep theirs.
    """
    rows = []
    for label, rule in (candidates or default_rules(ev, cfg)).items():
        r = pipeline.evaluate_rule(ev.method, rule, ev.raw_maps, ev.val_raw, data, cfg,
                                   rule_source="(comparison)", n_boot=0)
        rows.append({"rule": label, **{k: r.metrics[k] for k in
                                       ("pixel_f1", "pixel_precision", "pixel_recall")},
                     **{k: v for k, v in r.region.items() if k.startswith("region_")},
                     "pixel_auroc": r.metrics["pixel_auroc"], "aupro": r.metrics["aupro"],
                     "oracle_pixel_f1": r.oracle_pixel_f1})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- seed claims


def threshold_elasticity(ev: pipeline.Evaluation, step: float = 0.1) -> dict[str, float | None]:
    """Pixel F1 at the honest pixel threshold tau and at ``tau * (1 -/+ step)``, and the largest
    relative change of F1 (None without masks or without an F1 at tau)."""
    if ev.masks is None or ev.pixel_threshold is None:
        return {"f1": None, "f1_low": None, "f1_high": None, "change": None}
    t = ev.pixel_threshold.value
    f1 = metrics.prf_curve(ev.maps, ev.masks, [t * (1 - step), t, t * (1 + step)])["f1"].tolist()
    low, mid, high = (None if v is None or v != v else float(v) for v in f1)
    moved = [abs(v - mid) for v in (low, high) if v is not None and mid]
    change = max(moved) / mid if moved else None
    return {"f1": mid, "f1_low": low, "f1_high": high, "change": change}


def seed_claims(runs: Runs, data: Mapping[str, pipeline.Data], main: str,
                step: float = 0.1) -> pd.DataFrame:
    """Seed 002's claims checked on this run's numbers (:mod:`adlib.claims`).

    ``main`` is the seed's network (the variant the notebook looks at); the skip-connection
    claim compares it with ``unet-ae-noskip`` when that variant ran. Claims that need a dataset
    or variant this run did not train are "not checked".
    """
    from adlib.claims import Claim, claims_table, data_label, fmt, greater

    src = "seed 002 (002_067488534679cec0.txt)"
    where = {ds: data_label(d.synthetic, {"dagm": "DAGM", "rsdd": "RSDDs"}[ds], d.category)
             for ds, d in data.items()}
    ev = {ds: runs[ds, main][1] for ds in data if (ds, main) in runs}
    claims = []
    if {"dagm", "rsdd"} <= set(ev):
        both = f"{where['dagm']}; {where['rsdd']}"
        m = {ds: ev[ds].metrics for ds in ("dagm", "rsdd")}
        claims += [
            Claim("F1 is higher on DAGM class 8 than on RSDDs type I (Table 1: 0.96 vs 0.81)",
                  f"{src}, 4 Results, Table 1",
                  f"{main}, pixel F1 at the validation threshold: DAGM {fmt(m['dagm']['pixel_f1'])} vs "
                  f"RSDDs {fmt(m['rsdd']['pixel_f1'])}", greater(m["dagm"]["pixel_f1"], m["rsdd"]["pixel_f1"]),
                  both),
            Claim("RSDDs results are noisier than DAGM's (more false-positive pixels)",
                  f"{src}, 4 Results", f"{main}, pixel precision: DAGM {fmt(m['dagm']['pixel_precision'])} "
                  f"vs RSDDs {fmt(m['rsdd']['pixel_precision'])}",
                  greater(m["dagm"]["pixel_precision"], m["rsdd"]["pixel_precision"]), both),
        ]
    else:
        claims.append(Claim("F1 is higher on DAGM class 8 than on RSDDs type I", f"{src}, 4 Results, Table 1",
                            f"not measurable: this run has only {sorted(ev)}", None, "; ".join(where.values())))
    for ds, e in ev.items():
        el = threshold_elasticity(e, step)
        claims.append(Claim(
            "the segmentation is very sensitive to the threshold (minor changes, large variations)",
            f"{src}, 4 Results and 5 Conclusion",
            f"{main}: pixel F1 {fmt(el['f1'])} at the validation tau, {fmt(el['f1_low'])} / {fmt(el['f1_high'])} "
            f"at tau -/+ {step:.0%}; largest relative change of F1 "
            f"{'n/a (no F1 at tau)' if el['change'] is None else format(el['change'], '.0%')} "
            f"(holds if above {step:.0%}: F1 moves more than tau)",
            greater(el["change"], step), where[ds]))
        claims.append(Claim(
            "defect regions keep large residuals: the network does not reconstruct them",
            f"{src}, 2 Method (hypothesis, Eq. 1)",
            f"{main}: mean residual on defect pixels / on normal pixels = {fmt(e.residual_contrast)} "
            "(holds if above 1)", greater(e.residual_contrast, 1.0), where[ds]))
        other = runs.get((ds, "unet-ae-noskip"))
        if other is not None and main != "unet-ae-noskip":
            o = other[1]
            claims.append(Claim(
                "the skip connections (into x7-x9) do not copy the defects into the reconstruction",
                f"{src}, 2 Method (skips) with its hypothesis",
                f"residual contrast {main} {fmt(e.residual_contrast)} vs unet-ae-noskip {fmt(o.residual_contrast)}; "
                f"pixel AUROC {fmt(e.metrics['pixel_auroc'])} vs {fmt(o.metrics['pixel_auroc'])} (holds if the "
                "skip network's contrast is at least the no-skip one's)",
                None if greater(o.residual_contrast, e.residual_contrast) is None
                else not greater(o.residual_contrast, e.residual_contrast), where[ds]))
    return claims_table(claims)
