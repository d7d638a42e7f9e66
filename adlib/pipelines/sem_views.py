"""Tables, figures and studies of notebook 03 (SEM patches; seed 003), on top of
:mod:`adlib.pipelines.sem_patches`.

Every function takes what the pipeline's verbs returned: the :class:`~sem_patches.Data`, the
``{variant: Trained}`` mapping and the list of :class:`~sem_patches.PatchEvaluation`.

* tables: :func:`describe`, :func:`training_table`, :func:`seed_table` (the seed's Tables 1-3),
  :func:`pixel_table`, :func:`ranking_check`, :func:`baseline_table` (model-free scores);
* study: :func:`depth_study` (a 10-layer vs a 20-layer denoiser);
* figures: :func:`curves_grid` (seed Figs. 3-5), :func:`stages_figure` (seed Fig. 6),
  :func:`maps_figure` (stitched full-image maps).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import ndimage

from adlib import metrics, viz
from adlib.config import SettingsError
from adlib.pipelines.sem_patches import (
    MODEL_NAMES,
    SCORES,
    Data,
    PatchEvaluation,
    Trained,
    run_stages,
    to_tensor,
)
from adlib.published import published_table

_PUBLISHED_SUFFIX = {"rec": "", "smooth": " + denoiser (smooth)", "feature": " + denoiser (feature mask)"}

Evals = Iterable[PatchEvaluation] | Mapping[tuple[str, str], PatchEvaluation]


def _by_key(evals: Evals) -> dict[tuple[str, str], PatchEvaluation]:
    """``{(model, score): evaluation}`` from a list (or such a mapping), in model order."""
    found = {(ev.kind, ev.score): ev for ev in (evals.values() if isinstance(evals, Mapping) else evals)}
    return {(k, s): found[(k, s)] for k in MODEL_NAMES for s in SCORES if (k, s) in found}


# --------------------------------------------------------------------------- tables


def describe(data: Data) -> pd.DataFrame:
    """Images and patches per role (train / validation / test)."""
    p = data.patches
    return pd.DataFrame(
        {"images": [len(data.train_samples), len(data.val_samples), len(data.split.test)],
         "patches": [len(p.train), len(data.val), len(p.test)],
         "anomalous patches": [0, 0, int(p.test_labels.sum())]},
        index=pd.Index(["train (defect-free)", "validation (defect-free)", "test"], name="role"))


def training_table(trained: Mapping[str, Trained]) -> pd.DataFrame:
    """Final losses, stored training seconds and whether the weights were reused, per network."""
    rows = []
    for kind, t in trained.items():
        nets = [(MODEL_NAMES[kind], t.ae)] + [
            (f"{MODEL_NAMES[kind]} denoiser ({d} layers)", dt) for d, dt in sorted(t.denoisers.items())]
        for name, net in nets:
            last = net.history.epochs[-1] if net.history.epochs else {}
            rows.append({"network": name, "epochs": len(net.history.epochs),
                         "train loss": last.get("loss"), "val MSE": last.get("val_mse"),
                         "seconds": round(net.train_seconds, 1), "reused": net.reused})
    return pd.DataFrame(rows).set_index("network")


def _published() -> pd.DataFrame:
    pub = published_table("003")
    return pub.pivot_table(index="method", columns="metric", values="value", aggfunc="first")


def seed_table(evals: Evals, score: str) -> pd.DataFrame:
    """One of the seed's Tables 1-3 (``score``): measured patch AUROC / precision / recall / F1
    at the validation threshold, the oracle F1, and the seed's published numbers beside them."""
    pub = _published()
    rows = []
    for (kind, sc), ev in _by_key(evals).items():
        if sc != score:
            continue
        name = MODEL_NAMES[kind] + _PUBLISHED_SUFFIX[score]
        published = pub.loc[name] if name in pub.index else {}
        honest = ev.patch_prf()
        rows.append({
            "model": MODEL_NAMES[kind], "AUROC": ev.metrics["image_auroc"],
            "precision": honest["precision"], "recall": honest["recall"], "F1": honest["f1"],
            "F1 (oracle threshold)": ev.patch_prf(oracle=True)["f1"],
            **{f"seed {k}": published.get(f"patch_{k.lower()}") for k in ("AUROC", "precision", "recall", "F1")},
        })
    return pd.DataFrame(rows).set_index("model").astype(float).round(3)


def pixel_table(evals: Evals) -> pd.DataFrame:
    """Pixel metrics of the stitched maps for every method (beyond the seed)."""
    rows = [{"method": ev.method, "patch AUROC": ev.metrics["image_auroc"],
             "pixel AUROC": ev.metrics["pixel_auroc"], "AUPRO": ev.metrics["aupro"],
             "pixel F1": ev.metrics["pixel_f1"], "pixel F1 (oracle threshold)": ev.oracle_pixel_f1}
            for ev in _by_key(evals).values()]
    return pd.DataFrame(rows).set_index("method").astype(float).round(3)


def energy_auroc(data: Data) -> float | None:
    """Patch AUROC of a model-free score, the patch energy ``mean x^2``.

    ``A_feature = ||x - f_mask||^2`` reduces to it when the mask is small, so it is the reference
    a feature-mask score must beat to show that the denoiser contributes anything.
    """
    x = to_tensor(data.patches.test).numpy().reshape(len(data.labels), -1)
    return metrics.image_auroc((x.astype(np.float64) ** 2).mean(axis=1), data.labels)


def baseline_table(data: Data) -> pd.DataFrame:
    """Patch AUROC of model-free scores on the test patches: the bar any model has to clear.

    * ``mean x^2`` (raw): :func:`energy_auroc`, what ``A_feature`` reduces to for a small mask;
    * ``mean x`` and ``mean x^2`` after dividing each image by its mean intensity (removes the
      brightness differences between images);
    * ``thickness``: a shape statistic, not a brightness one: the largest distance to the
      background inside the bright structures of the patch (pixels above the image's 60 %
      intensity quantile after a light blur). Beads and films are thicker than fibres.

    AUROC below 0.5 means the score is LOWER on defects; ``max(AUROC, 1 - AUROC)`` is how well
    the score would separate them in either direction.
    """
    x = to_tensor(data.patches.test).numpy().reshape(len(data.labels), -1).astype(np.float64)
    images = [s.load_image(channels=1)[..., 0].astype(np.float64) / 255.0 for s in data.split.test]
    img_mean = np.array([float(im.mean()) for im in images])
    xn = x / np.maximum(img_mean[data.patches.test_source], 1e-6)[:, None]
    thickness = np.zeros(len(x))
    size = data.patch_size
    for i, im in enumerate(images):
        smooth = ndimage.gaussian_filter(im, 1.0)
        depth = ndimage.distance_transform_edt(smooth > np.quantile(smooth, 0.6))
        for k in np.flatnonzero(data.patches.test_source == i):
            y, c = data.patches.test_coords[k]
            thickness[k] = depth[y:y + size, c:c + size].max()
    scores = {"mean x^2 (raw)": (x**2).mean(axis=1), "mean x (per-image normalised)": xn.mean(axis=1),
              "mean x^2 (per-image normalised)": (xn**2).mean(axis=1),
              "thickness (shape, no model)": thickness}
    rows = []
    for name, values in scores.items():
        auc = metrics.image_auroc(values, data.labels)
        rows.append({"model-free score": name, "patch AUROC": auc,
                     "max(AUROC, 1 - AUROC)": None if auc is None else max(auc, 1 - auc)})
    return pd.DataFrame(rows).set_index("model-free score").astype(float).round(3)


def ranking_check(evals: Evals, data: Data | None = None) -> pd.DataFrame:
    """The seed's claim, checked: the feature mask improves SAE and DAE (AUROC, F1) but not CVAE.

    With ``data``, a column gives the model-free energy baseline (:func:`energy_auroc`).
    """
    by_key = _by_key(evals)
    baseline = energy_auroc(data) if data is not None else None
    rows = []
    for kind in MODEL_NAMES:
        if not all((kind, s) in by_key for s in SCORES):  # the SSIM AE has no denoiser scores
            continue
        rec, smooth, feat = (by_key[(kind, s)] for s in SCORES)
        d_auc = feat.metrics["image_auroc"] - rec.metrics["image_auroc"]
        d_f1 = (feat.patch_prf()["f1"] or 0.0) - (rec.patch_prf()["f1"] or 0.0)
        rows.append({"model": MODEL_NAMES[kind], "AUROC rec": rec.metrics["image_auroc"],
                     "AUROC smooth": smooth.metrics["image_auroc"],
                     "AUROC feature": feat.metrics["image_auroc"], "delta AUROC (feature - rec)": d_auc,
                     "delta F1 (feature - rec)": d_f1, "seed expects": "improves" if kind != "cvae" else "no gain",
                     "holds here": bool(d_auc > 0) == (kind != "cvae")})
        if baseline is not None:
            rows[-1]["AUROC mean x^2 (no model)"] = baseline
    return pd.DataFrame(rows).set_index("model").round(3)


# --------------------------------------------------------------------------- study


def depth_study(data: Data, trained: Mapping[str, Trained],
                device: torch.device | str = "cpu") -> pd.DataFrame:
    """The seed's observation: a denoiser with 10 layers behaves like one with 20.

    For each trained depth and model: patch AUROC of the smooth and feature scores, the stored
    training seconds, and how close the feature masks of that depth and the deepest one are
    (correlation over all test pixels).
    """
    rows = []
    for kind, t in trained.items():
        if not t.denoisers:
            continue
        masks = {}
        ae = t.ae.model.to(device)
        for depth, den in sorted(t.denoisers.items()):
            st = run_stages(ae, den.model.to(device), data.patches.test, device)
            masks[depth] = st.mask.ravel()
            sc = st.scores()
            rows.append({"model": MODEL_NAMES[kind], "depth": depth,
                         "AUROC smooth": metrics.image_auroc(sc["smooth"], data.labels),
                         "AUROC feature": metrics.image_auroc(sc["feature"], data.labels),
                         "train seconds": round(den.train_seconds, 1)})
        deepest = masks[max(masks)]
        for row, a in zip(rows[-len(masks):], (masks[d] for d in sorted(masks)), strict=True):
            ok = a.std() > 0 and deepest.std() > 0
            row["mask corr. with deepest"] = float(np.corrcoef(a, deepest)[0, 1]) if ok else np.nan
    return pd.DataFrame(rows).set_index(["model", "depth"]).round(3)


# --------------------------------------------------------------------------- figures


def curves_grid(evals: Evals, kind: str = "roc") -> Figure:
    """The seed's Figs. 3-5: a grid (rows: models, columns: scores) of ROC curves (``roc``),
    PR curves (``pr``) or score histograms with the validation and oracle thresholds (``hist``)."""
    if kind not in ("roc", "pr", "hist"):
        raise SettingsError(f"kind must be 'roc', 'pr' or 'hist', got {kind!r}.")
    by_key = _by_key(evals)
    models = [k for k in MODEL_NAMES if (k, "rec") in by_key]
    fig, axes = plt.subplots(len(models), len(SCORES), figsize=(4.2 * len(SCORES), 3.4 * len(models)),
                             squeeze=False)
    for r, model in enumerate(models):
        for c, score in enumerate(SCORES):
            ax = axes[r, c]
            if (model, score) not in by_key:  # the SSIM AE: reconstruction score only
                ax.axis("off")
                continue
            ev = by_key[(model, score)]
            title = f"{MODEL_NAMES[model]} / {score}"
            if kind == "roc":
                viz.roc_curves({ev.method: (ev.labels, ev.scores)}, title=title, ax=ax)
            elif kind == "pr":
                viz.pr_curves({ev.method: (ev.labels, ev.scores)}, title=title, ax=ax)
            else:
                lines = {"validation": ev.image_threshold.value}
                if ev.oracle_image is not None:
                    lines["oracle"] = ev.oracle_image.value
                viz.score_distributions(ev.scores, ev.labels, lines, kde=False,
                                        log=bool((ev.scores > 0).all()), title=title, ax=ax)
    fig.tight_layout()
    return fig


def pick_examples(data: Data, n: int = 3) -> np.ndarray:
    """Test patches to show: the ``n - 1`` most anomalous by defect area, and one normal patch."""
    frac = data.patches.test_masks.reshape(len(data.patches.test_masks), -1).mean(axis=1)
    bad = np.argsort(-frac)[: max(n - 1, 1)]
    good = np.flatnonzero(frac == 0)
    return np.concatenate([bad, good[:1]]) if len(good) else bad


def stages_figure(trained: Mapping[str, Trained], data: Data, index: int,
                  device: torch.device | str = "cpu") -> Figure:
    """The seed's Fig. 6 for one test patch: rows = pipeline stages (input, reconstruction,
    denoised, feature mask, residual ``|x - AE(x)|``), columns = models; ground truth on top."""
    names = ["input", "reconstruction", "denoised", "feature mask", "residual |x - AE(x)|"]
    trained = {k: t for k, t in trained.items() if t.denoisers}
    fig, axes = plt.subplots(len(names), len(trained), figsize=(2.3 * len(trained), 2.2 * len(names)),
                             squeeze=False)
    gt = data.patches.test_masks[index]
    for c, (kind, t) in enumerate(trained.items()):
        st = run_stages(t.ae.model.to(device), t.denoiser.model.to(device),
                        data.patches.test[index:index + 1], device)
        panels = [st.x[0, 0], st.recon[0, 0], st.denoised[0, 0], st.mask[0, 0],
                  np.abs(st.x[0, 0] - st.recon[0, 0])]
        for r, (name, img) in enumerate(zip(names, panels, strict=True)):
            ax = axes[r, c]
            if name == "feature mask":
                lim = float(np.abs(img).max()) or 1.0
                ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            elif name.startswith("residual"):
                ax.imshow(img, cmap=viz.HEATMAP_CMAP, vmin=0)
            else:
                ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            if r == 0 and gt.any():
                ax.contour(gt, levels=[0.5], colors="red", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(MODEL_NAMES[kind])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    label = "anomalous" if data.labels[index] else "normal"
    fig.suptitle(f"test patch {index} ({label}; red: ground truth)", fontsize=10)
    fig.tight_layout()
    return fig


def maps_figure(evals: Evals, data: Data, methods: list[str], image: int = 0) -> Figure:
    """Stitched full-image anomaly maps of one test image for several methods, over the image,
    with the ground truth and the prediction at the validation threshold."""
    img = data.split.test[image].load_image(channels=1)[..., 0]
    gt = data.test_masks()[image]
    by_method = {ev.method: ev for ev in _by_key(evals).values()}
    fig, axes = plt.subplots(2, len(methods) + 1, figsize=(3.6 * (len(methods) + 1), 7), squeeze=False)
    viz.overlay(img, gt, title="ground truth", ax=axes[0, 0])
    axes[1, 0].imshow(img, cmap="gray")
    axes[1, 0].set_title("image")
    axes[1, 0].axis("off")
    for c, name in enumerate(methods, start=1):
        ev = by_method[name]
        viz.overlay(img, ev.image_maps[image], title=f"{name} map", ax=axes[0, c])
        viz.overlay(img, ev.image_maps[image] > ev.pixel_threshold.value,
                    title=f"{name} > validation thr.", colorbar=False, ax=axes[1, c])
    fig.tight_layout()
    return fig
