"""Notebook 01 views: tables, figures and studies on top of :mod:`adlib.pipelines.hazelnut_ae`.

* data: :func:`describe`, :func:`examples`;
* results: :func:`result_figure`, :func:`per_defect_table` (ours at both validation rules, the
  ORACLE and the seed's published numbers), :func:`comparison_table` with
  :func:`naive_baselines`;
* the threshold tau: :func:`threshold_study`, :func:`tau_figure`;
* the latent size: :func:`latent_study`, :func:`latent_checks`, :func:`latent_figure`.

Residual scale (what the seed's tau means):

* ``conv-ae-l2``: the map is :func:`adlib.maps.residual_map` ``kind="l2"``, the squared colour
  difference averaged over channels, in ``[0, 1]`` for images in ``[0, 1]``, lightly smoothed.
  The seed's tau values are read on the root of that map, the RMS colour difference:
  ``tau = 0.2`` means "the reconstruction is off by 20 % of the full intensity range", i.e. the
  squared map is thresholded at ``tau ** 2`` (:func:`to_map_scale`). Squaring is monotonic, so
  this only renames the thresholds; every metric is unchanged.
* ``conv-ae-ssim``: the map is ``1 - SSIM`` (11x11 Gaussian window), already in ``[0, 1]`` in
  practice: ``tau = 0.2`` means "local structural similarity below 0.8".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from adlib import maps, metrics, results
from adlib.pipelines import hazelnut_ae
from adlib.pipelines.hazelnut_ae import Data, Evaluation

SEED_TAUS: tuple[float, ...] = (0.1, 0.2, 0.7)
"""The thresholds shown in the seed's Figures 13-14 (on the scale described in the module doc)."""


def to_map_scale(tau: float | np.ndarray, variant: str) -> float | np.ndarray:
    """A tau on the display scale (RMS colour difference / 1 - SSIM) -> the map's own scale."""
    return np.square(tau) if variant == "l2" else tau


def from_map_scale(value: float | np.ndarray, variant: str) -> float | np.ndarray:
    """Inverse of :func:`to_map_scale`."""
    return np.sqrt(np.maximum(value, 0)) if variant == "l2" else value


def _rule(threshold: Any) -> str:
    """``"normal-validation:quantile-0.999"`` -> ``"quantile-0.999"``."""
    return threshold.source.split(":")[-1]


# --------------------------------------------------------------------------- data


def describe(data: Data) -> pd.DataFrame:
    """Images per defect type in train / validation / test."""
    rows: dict[str, dict[str, int]] = {}
    for name, ds in (("train", data.train), ("validation", data.val), ("test", data.test)):
        for s in ds.samples:
            rows.setdefault(s.defect, {}).setdefault(name, 0)
            rows[s.defect][name] += 1
    df = pd.DataFrame(rows).T.fillna(0).astype(int)
    order = ["good"] + sorted(i for i in df.index if i != "good")
    df = df.loc[[i for i in order if i in df.index], [c for c in ("train", "validation", "test") if c in df]]
    df.loc["total"] = df.sum()
    df["train (augmented per epoch)"] = df.get("train", 0) * data.augment_factor
    return df


def examples(defects: Sequence[str], per_defect: int = 1) -> list[int]:
    """Indices of test images to show: the first ``per_defect`` of each defect type, then a good one."""
    out: list[int] = []
    for name in sorted(set(defects) - {"good"}) + ["good"]:
        out += [i for i, d in enumerate(defects) if d == name][:per_defect]
    return out


# --------------------------------------------------------------------------- results


def result_figure(ev: Evaluation, idx: Sequence[int] | None = None, tau_map: float | None = None):
    """Seed's figure per defect type: original, output, residual, predicted pixels, ground truth."""
    from adlib import viz

    idx = list(idx) if idx is not None else examples(ev.defects)
    pred = ev.predicted(tau_map)
    gts = [ev.masks[i] for i in idx] if ev.masks is not None else None
    titles = [f"{ev.defects[i]} (score {ev.scores[i]:.3g})" for i in idx]
    return viz.result_grid(ev.x[idx], ev.recon[idx], ev.maps[idx], pred[idx], gts, titles=titles,
                           max_rows=None)


def _other_rules(ev: Evaluation) -> dict[str, Any]:
    """The validation thresholds that the results do not use."""
    return {_rule(t): t for t in ev.pixel_thresholds.values() if t.source != ev.threshold.source}


def per_defect_table(ev: Evaluation) -> pd.DataFrame:
    """Pixel P/R/F1 per defect type: ours at the validation thresholds, the oracle, and the seed.

    The seed's rows (``adlib.published``) are the authors' numbers on real MVTec hazelnut at
    256 px after 1000 epochs with a hand-picked tau; ours are on the data of this run.
    """
    from adlib.published import published_table

    rows = []
    others = {}
    if ev.masks is not None:
        others = {name: metrics.per_defect_prf(ev.maps, ev.masks, ev.defects, t.value)
                  for name, t in _other_rules(ev).items()}
    for defect, vals in ev.metrics.get("per_defect", {}).items():
        rows.append({"defect": defect, "source": f"{ev.method} @ validation {_rule(ev.threshold)} (used)", **vals})
        for name, per in others.items():
            if defect in per:
                rows.append({"defect": defect, "source": f"{ev.method} @ validation {name}", **per[defect]})
        if defect in ev.oracle_per_defect:
            rows.append({"defect": defect, "source": f"{ev.method} @ ORACLE best-F1 threshold (test)",
                         **ev.oracle_per_defect[defect]})
    pub = published_table(seed="000")
    pub = pub[pub["defect"].notna()]
    for defect, grp in pub.groupby("defect"):
        vals = dict(zip(grp["metric"], grp["value"], strict=True))
        rows.append({"defect": defect, "source": "seed 000 (published, real hazelnut)", **vals})
    cols = ["defect", "source", "pixel_precision", "pixel_recall", "pixel_f1"]
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows)[cols].sort_values(["defect", "source"]).reset_index(drop=True)


def naive_baselines(data: Data, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Two bars an autoencoder has to clear, scored like the autoencoders (smoothed map, ``score``):

    * ``naive: distance to mean image``: squared difference to the mean training image;
    * ``classical: variation model``: per-pixel mean/std z-score (:mod:`adlib.baselines`).

    Both are fitted on the un-augmented training images (not the validation or test images).
    """
    from adlib.baselines import VariationModel

    train = data.train.images_uint8().float().div(255).numpy().transpose(0, 2, 3, 1)
    test = data.test.images_uint8().float().div(255).numpy().transpose(0, 2, 3, 1)
    sigma = hazelnut_ae.smooth_sigma(data.image_size)
    candidates = {
        "naive: distance to mean image": ((test - train.mean(axis=0)) ** 2).mean(axis=-1),
        "classical: variation model": VariationModel().fit(train).score_maps(test),
    }
    masks = data.test_masks()
    out: dict[str, dict[str, Any]] = {}
    for name, raw in candidates.items():
        smoothed = maps.gaussian_smooth(raw.astype(np.float32), sigma)
        summary = results.metrics_summary(scores=maps.image_scores(smoothed, cfg["score"]),
                                          labels=data.test.labels, maps=smoothed, masks=masks)
        out[name] = {k: summary[k] for k in ("image_auroc", "image_aupr", "pixel_auroc", "aupro")}
    return out


def comparison_table(
    evals: Sequence[Evaluation], baselines: dict[str, dict[str, Any]] | None = None
) -> pd.DataFrame:
    """L2 vs SSIM (and the baselines of :func:`naive_baselines`) side by side, ORACLE labelled."""
    rows = {}
    for ev in evals:
        row = {k: ev.metrics[k] for k in results.METRIC_KEYS}
        row["threshold (display scale)"] = float(from_map_scale(ev.threshold.value, ev.variant))
        row["threshold rule"] = _rule(ev.threshold)
        if ev.masks is not None:
            for name, t in _other_rules(ev).items():
                row[f"pixel_f1 @ {name}"] = metrics.pixel_prf(ev.maps, ev.masks, t.value).f1
        if ev.oracle_pixel is not None:
            row["ORACLE pixel_f1 (test)"] = ev.oracle_pixel_f1
        row["image_f1 @ validation"] = ev.image_f1
        if ev.oracle_image is not None:
            row["ORACLE image_f1 (test)"] = ev.oracle_image_f1
        rows[ev.method] = row
    for name, vals in (baselines or {}).items():
        rows[name] = dict(vals)
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------- threshold study


def threshold_study(ev: Evaluation, taus: Sequence[float] = SEED_TAUS, n: int = 80) -> dict[str, Any]:
    """P/R/F1 at the seed's taus and along a full tau grid (taus on the display scale).

    Returns:
        ``{"at_taus": DataFrame, "curve": DataFrame, "marks": {name: tau}}``; the curve's
        ``threshold`` column is on the display scale (RMS difference for L2, 1 - SSIM for SSIM).

    Raises:
        ValueError: the test set has no ground-truth masks.
    """
    if ev.masks is None:
        raise ValueError("The threshold study needs ground-truth masks; this dataset has none.")
    hi = float(from_map_scale(float(ev.maps.max()), ev.variant))
    grid = np.unique(np.concatenate([np.linspace(0.0, max(hi, max(taus)), n), list(taus)]))
    curve = metrics.prf_curve(ev.maps, ev.masks, to_map_scale(grid, ev.variant))
    curve["threshold"] = grid
    at = metrics.prf_curve(ev.maps, ev.masks, to_map_scale(np.asarray(taus, float), ev.variant))
    at.insert(0, "tau", list(taus))
    at["predicted_pixel_share"] = (at["tp"] + at["fp"]) / ev.masks.size
    marks = {f"validation {_rule(t)}": float(from_map_scale(t.value, ev.variant))
             for t in ev.pixel_thresholds.values()}
    if ev.oracle_pixel is not None:
        marks["ORACLE best F1 (test)"] = float(from_map_scale(ev.oracle_pixel.value, ev.variant))
    return {"at_taus": at.drop(columns=["threshold"]), "curve": curve, "marks": marks}


def tau_figure(ev: Evaluation, index: int, taus: Sequence[float] = SEED_TAUS):
    """Seed's Fig. 14: the predicted pixels of one test image at each tau, next to the truth."""
    from adlib import viz

    preds = [ev.maps[index] > to_map_scale(t, ev.variant) for t in taus]
    gt = ev.masks[index] if ev.masks is not None else np.zeros_like(preds[0])
    panels = [ev.x[index], *[p.astype(float) for p in preds], gt.astype(float)]
    shown = [viz.to_display(p) if p.ndim == 3 else np.repeat(p[..., None], 3, -1) for p in panels]
    return viz.image_grid(np.stack(shown).transpose(0, 3, 1, 2), nrow=len(panels), value_range=(0, 1),
                          title=f"{ev.defects[index]}: input | tau = {' | '.join(map(str, taus))} | truth")


# --------------------------------------------------------------------------- latent-size study


def latent_settings(cfg: dict[str, Any], latent_dim: int, epochs: int | None = None) -> dict[str, Any]:
    """The settings of one latent-study model: the L2 variant at ``latent_dim`` for
    ``epochs`` (default ``cfg["latent_epochs"]``), without test-set monitoring. Its checkpoint
    name carries latent size and epochs (:func:`adlib.pipelines.hazelnut_ae.variant_name`)."""
    n = int(cfg["latent_epochs"] if epochs is None else epochs)
    return {**cfg, "latent_dim": int(latent_dim), "epochs": n, "monitor_every": 0}


def latent_study(
    data: Data, cfg: dict[str, Any], *, results_dir: str | Path, run: str,
    sizes: Sequence[int] | None = None, epochs: int | None = None,
    device: torch.device | str = "cpu", force: bool = False, progress: bool = True,
) -> tuple[pd.DataFrame, dict[int, Evaluation]]:
    """Train the L2 autoencoder at several latent sizes and compare them.

    Args:
        data, cfg: as for :func:`adlib.pipelines.hazelnut_ae.train`.
        results_dir, run: where the checkpoints go (the notebook's ``run`` id).
        sizes: latent sizes (default ``cfg["latent_sizes"]``).
        epochs: epochs per size (default ``cfg["latent_epochs"]``).
        device, force, progress: as for training.

    Returns:
        A table (one row per latent size: parameters, reconstruction error on validation /
        good test / defective test images, image AUROC, pixel AUROC, AUPRO, F1 at the validation
        threshold) and the evaluations (for reconstruction examples).
    """
    rows, evals = [], {}
    for z in tqdm(list(sizes or cfg["latent_sizes"]), desc="latent sizes", disable=not progress):
        sub = latent_settings(cfg, int(z), epochs)
        tr = hazelnut_ae.train(data, sub, "l2", results_dir=results_dir, run=run, device=device,
                               force=force, progress=progress)
        (ev,) = hazelnut_ae.evaluate(tr, data, sub, device=device)
        err = ((ev.x - ev.recon) ** 2).mean(axis=(1, 2, 3))
        rows.append({
            "latent_dim": int(z),
            "parameters": sum(p.numel() for p in tr.model.parameters()),
            "val_mse": float(tr.history.epochs[-1].get("val_loss", math.nan)) if tr.history.epochs else math.nan,
            "test_mse_good": float(err[ev.labels == 0].mean()),
            "test_mse_defective": float(err[ev.labels == 1].mean()),
            "image_auroc": ev.metrics["image_auroc"], "pixel_auroc": ev.metrics["pixel_auroc"],
            "aupro": ev.metrics["aupro"], "pixel_f1@validation": ev.metrics["pixel_f1"],
            "train_seconds": tr.train_seconds,
        })
        evals[int(z)] = ev
    return pd.DataFrame(rows).set_index("latent_dim"), evals


def _compare(a: float, b: float, lower: str, higher: str, rel: float = 0.05) -> str:
    """``lower`` if a < b by more than ``rel`` (relative), ``higher`` if above, else 'about the same'."""
    scale = max(abs(a), abs(b), 1e-12)
    if abs(a - b) <= rel * scale:
        return f"stays about the same (within {rel:.0%})"
    return lower if a < b else higher


def latent_checks(table: pd.DataFrame) -> str:
    """The seed's latent-size claims, checked on a :func:`latent_study` table (plain sentences)."""
    if len(table) < 2:
        return "Only one latent size: nothing to compare."
    t = table.sort_index()
    small, large = t.index[0], t.index[-1]
    good = t["test_mse_good"]
    gap = t["test_mse_defective"] - good
    lines = [
        f"Good test images: reconstruction MSE {good.loc[small]:.4g} at latent {small} vs "
        f"{good.loc[large]:.4g} at latent {large} -> the larger code reconstructs normal images "
        f"{_compare(good.loc[large], good.loc[small], 'better', 'worse')}.",
        f"Defective minus good MSE: {gap.loc[small]:.4g} at latent {small} vs {gap.loc[large]:.4g} at "
        f"latent {large} -> with a larger code the gap {_compare(gap.loc[large], gap.loc[small], 'shrinks', 'grows')} "
        "(a shrinking gap means defects get reconstructed too).",
    ]
    for col in ("image_auroc", "pixel_auroc"):
        s = pd.to_numeric(t[col], errors="coerce")
        if s.notna().any():
            lines.append(f"Best {col}: latent {s.idxmax()} ({s.max():.3f}); range {s.min():.3f}-{s.max():.3f}.")
    return "\n".join(lines)


def latent_figure(evals: dict[int, Evaluation], idx: Sequence[int]):
    """Reconstructions of the same test images by each latent size (rows: images)."""
    from adlib import viz

    sizes = sorted(evals)
    first = evals[sizes[0]]
    panels = []
    for i in idx:
        panels.append(first.x[i])
        panels += [evals[z].recon[i] for z in sizes]
    return viz.image_grid(np.stack(panels), nrow=len(sizes) + 1, value_range=(0, 1),
                          title="input | latent " + " | ".join(map(str, sizes)))


# --------------------------------------------------------------------------- seed claims


def _claim_taus(ev: Evaluation) -> tuple[tuple[float, float, float], str]:
    """The three taus (display scale) of the seed's threshold claims, and how they were chosen.

    The seed's own taus (0.1, 0.2, 0.7) when its middle tau predicts any pixel on this run's
    residual scale; else the same ratios (x 0.5, x 1, x 3.5) around the honest validation tau,
    so that the claim is tested where this model's residuals live.
    """
    lo, mid, hi = SEED_TAUS
    pred = int((ev.maps > to_map_scale(mid, ev.variant)).sum())
    if pred > 0:
        return (lo, mid, hi), "the seed's taus (RMS scale)"
    t = float(from_map_scale(ev.threshold.value, ev.variant))
    return ((t * lo / mid, t, t * hi / mid),
            f"the seed's tau ratios around the validation tau (at tau {mid} no pixel is predicted here)")


def seed_claims(data: Data, ev_l2: Evaluation, ev_ssim: Evaluation | None = None,
                latent_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seed 000's claims checked on this run's numbers (:mod:`adlib.claims`).

    Every verdict is computed from ``ev_l2`` (and ``ev_ssim``, the :func:`latent_study` table);
    claims that need what this run lacks (masks, two latent sizes) are "not checked".
    """
    from adlib.claims import Claim, all_of, claims_table, data_label, fmt, greater

    where = data_label(data.synthetic, "MVTec", data.split.category)
    src = "seed 000 (000_4d23ec7d7e6ff091.txt)"
    err = ((ev_l2.x - ev_l2.recon) ** 2).mean(axis=(1, 2, 3))
    good, bad = err[ev_l2.labels == 0], err[ev_l2.labels == 1]
    claims = [Claim(
        "defective images are reconstructed worse than defect-free ones (high reconstruction error)",
        f"{src}, 4.2 Methodology",
        f"mean image MSE (L2 model) defective {fmt(bad.mean() if len(bad) else None, 4)} vs good "
        f"{fmt(good.mean() if len(good) else None, 4)}; image AUROC {fmt(ev_l2.metrics['image_auroc'])}",
        greater(bad.mean() if len(bad) else None, good.mean() if len(good) else None), where)]

    if ev_l2.masks is not None:
        taus, how = _claim_taus(ev_l2)
        at = threshold_study(ev_l2, taus)["at_taus"].set_index("tau")
        lo, mid, hi = taus
        p, r, f = (at[c].astype(float) for c in ("precision", "recall", "f1"))
        claims += [
            Claim("tau too high (0.7) misses defective pixels: recall and F1 fall",
                  f"{src}, 5.1 Effect of Threshold (Figs. 13-14)",
                  f"L2 model, {how}: tau {hi:.3g} vs {mid:.3g}: recall {fmt(r[hi])} vs {fmt(r[mid])}, "
                  f"F1 {fmt(f[hi])} vs {fmt(f[mid])}",
                  all_of(greater(r[mid], r[hi]), greater(f[mid], f[hi])), where),
            Claim("tau too low (0.1) marks defect-free pixels: precision and F1 fall",
                  f"{src}, 5.1 Effect of Threshold (Figs. 13-14)",
                  f"L2 model, {how}: tau {lo:.3g} vs {mid:.3g}: precision {fmt(p[lo])} vs {fmt(p[mid])}, "
                  f"F1 {fmt(f[lo])} vs {fmt(f[mid])}; share of pixels predicted at tau {lo:.3g}: "
                  f"{fmt(at.loc[lo, 'predicted_pixel_share'])}",
                  all_of(greater(p[mid], p[lo]), greater(f[mid], f[lo])), where),
        ]
    else:
        claims.append(Claim("tau too high misses defective pixels, too low marks defect-free ones",
                            f"{src}, 5.1 Effect of Threshold", "not measurable: no ground-truth masks",
                            None, where))

    if latent_table is not None and len(latent_table) >= 2:
        t = latent_table.sort_index()
        small, large = t.index[0], t.index[-1]
        g = t["test_mse_good"]
        gap = t["test_mse_defective"] - g
        claims += [
            Claim("too small a latent code cannot represent normal detail (normal images reconstructed worse)",
                  f"{src}, 5.2 Effect of Latent Space size",
                  f"good test images' MSE {fmt(g[small], 4)} at latent {small} vs {fmt(g[large], 4)} at {large}",
                  greater(g[small], g[large]), where),
            Claim("too large a latent code copies the input, defects included (defective-minus-good MSE shrinks)",
                  f"{src}, 5.2 Effect of Latent Space size",
                  f"defective minus good MSE {fmt(gap[small], 4)} at latent {small} vs {fmt(gap[large], 4)} "
                  f"at {large}", greater(gap[small], gap[large]), where),
        ]
    else:
        claims.append(Claim("the latent size trades missing detail against copying defects",
                            f"{src}, 5.2 Effect of Latent Space size",
                            "not measurable: the latent study ran fewer than two sizes", None, where))

    if ev_ssim is not None:
        m2, ms = ev_l2.metrics, ev_ssim.metrics
        claims += [
            Claim("the L2 autoencoder beats AE(SSIM) in pixel F1", f"{src}, 6 Conclusions (table)",
                  f"pixel F1 at the validation threshold: L2 {fmt(m2['pixel_f1'])} vs SSIM {fmt(ms['pixel_f1'])}"
                  if ev_l2.masks is not None else "not measurable: no ground-truth masks",
                  greater(m2["pixel_f1"], ms["pixel_f1"]), where),
            Claim("AE(SSIM) has high precision but low recall", f"{src}, 6 Conclusions (table: P 1.0, R 0.08)",
                  f"SSIM model pixel precision {fmt(ms['pixel_precision'])} vs recall {fmt(ms['pixel_recall'])}"
                  if ev_ssim.masks is not None else "not measurable: no ground-truth masks",
                  greater(ms["pixel_precision"], ms["pixel_recall"]), where),
        ]
    return claims_table(claims)
