"""Studies, tables and figures of notebook 06 (PatchCore / PaDiM), on top of :mod:`feature_embed`.

* :func:`coreset_study`: one greedy selection to the largest ratio; every smaller coreset is a
  prefix of it, so memory, selection time (measured after every pick), scoring time and AUROC
  come for each ratio from one run.
* :func:`cost_table`: fit time, scoring time per image and memory against the autoencoders.
* :func:`show_maps`: the same test images under PatchCore, PaDiM and the conv-AE residual.
* :func:`show_failures`: the defective images scored lowest and the normal ones scored highest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import psutil
import torch
from matplotlib.figure import Figure

from adlib import metrics
from adlib.features.embed import to_image_maps
from adlib.models.patchcore import PatchCore
from adlib.pipelines.feature_embed import Data, Fitted, bank_patches, embed

__all__ = ["coreset_study", "plot_coreset_study", "cost_table", "show_maps", "show_failures",
           "peak_rss_gb", "metrics_table"]


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux: ``ru_maxrss``; else current RSS)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    except ImportError:  # pragma: no cover - Windows
        return psutil.Process(os.getpid()).memory_info().rss / 2**30


def coreset_study(fitted: Fitted, data: Data, cfg: Mapping[str, Any], ratios: Sequence[float], *,
                  device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """Memory, time and AUROC of PatchCore for each coreset ratio (one selection, prefixes).

    Returns one row per ratio: ``ratio, bank_patches, memory_mb, select_s`` (greedy selection,
    measured), ``score_ms_per_image`` (nearest-neighbour search only; feature extraction is the
    same for every ratio), ``image_auroc`` and ``pixel_auroc`` (None without masks).
    """
    rows_train, total = bank_patches(fitted.spec, data.train, cfg, device=device, seed=fitted.model.seed)
    top = max(ratios)
    base = PatchCore(top, cfg["bank_limit"], cfg["proj_dim"], cfg["reweight"], cfg["neighbours"],
                     fitted.model.seed)
    base.fit_patches(rows_train, total=total, progress=progress)
    del rows_train
    emb_test = embed(fitted.spec, data.test, cfg, device)
    size = tuple(data.test.shape[-2:])
    rows = []
    for r in sorted(ratios):
        n = max(1, round(r / top * len(base.bank)))
        model = base.with_size(n)
        start = time.perf_counter()
        patch, image = model.patch_scores(emb_test)
        seconds = time.perf_counter() - start
        maps = to_image_maps(patch, size, float(cfg["map_sigma"])) if data.test_masks is not None else None
        rows.append({
            "ratio": r, "bank_patches": n, "memory_mb": model.memory_bytes / 2**20,
            "select_s": model.pick_seconds[n - 1] if model.pick_seconds else 0.0,
            "score_ms_per_image": 1000 * seconds / len(data.test),
            "image_auroc": metrics.image_auroc(image.numpy(), data.labels),
            "pixel_auroc": metrics.pixel_auroc(maps, data.test_masks) if maps is not None else None,
        })
    return pd.DataFrame(rows)


def plot_coreset_study(table: pd.DataFrame) -> Figure:
    """AUROC against memory, and selection / scoring time against the ratio."""
    fig = Figure(figsize=(11, 3.8))
    (a, b) = fig.subplots(1, 2)
    a.plot(table["memory_mb"], table["image_auroc"], "o-", label="image AUROC")
    if table["pixel_auroc"].notna().any():
        a.plot(table["memory_mb"], table["pixel_auroc"], "s--", label="pixel AUROC")
    for _, row in table.iterrows():
        a.annotate(f"{row['ratio']:g}", (row["memory_mb"], row["image_auroc"]), textcoords="offset points",
                   xytext=(4, -10), fontsize=8)
    a.set(xscale="log", xlabel="memory bank (MB, log)", ylabel="AUROC", title="AUROC vs memory (labels: ratio)")
    a.legend(loc="lower right")
    b.plot(table["ratio"], table["select_s"], "o-", label="coreset selection (s)")
    b2 = b.twinx()
    b2.plot(table["ratio"], table["score_ms_per_image"], "s--", color="C1", label="search (ms / image)")
    b.set(xscale="log", xlabel="coreset ratio (log)", ylabel="selection seconds", title="cost vs ratio")
    b2.set_ylabel("nearest-neighbour search, ms per image")
    lines = b.get_lines() + b2.get_lines()
    b.legend(lines, [ln.get_label() for ln in lines], loc="upper left")
    fig.tight_layout()
    return fig


def _interval(ci: Sequence[float] | None, decimals: int) -> str:
    return f"[{ci[0]:.{decimals}f}, {ci[1]:.{decimals}f}]" if ci else ""


def metrics_table(evals: Sequence[Any], decimals: int = 3) -> pd.DataFrame:
    """Image / pixel metrics of each evaluation, with the 95 % bootstrap interval of image AUROC."""
    rows = []
    for ev in evals:
        m = ev.metrics
        ci = (getattr(ev, "ci95", {}) or {}).get("image_auroc")
        rows.append({
            "method": ev.method, "image AUROC": m.get("image_auroc"),
            "95% interval": _interval(ci, decimals),
            "image AUPR": m.get("image_aupr"), "pixel AUROC": m.get("pixel_auroc"),
            "AUPRO": m.get("aupro"), "pixel F1 (honest)": m.get("pixel_f1"),
            "pixel F1 (ORACLE)": ev.oracle_pixel_f1, "image F1 (honest)": ev.image_f1,
        })
    return pd.DataFrame(rows).set_index("method").round(decimals)


def cost_table(fitted: Sequence[Fitted], evals: Sequence[Any], data: Data,
               others: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Fit time, scoring time per test image and model memory, feature methods and ``others``.

    ``others``: rows for other methods measured in the same notebook (e.g. the conv-AE), with
    keys ``method, fit_s, score_ms_per_image, memory_mb, image_auroc``.
    """
    by = {ev.method: ev for ev in evals}
    rows = [{"method": f.method, "fit_s": f.train_seconds,
             "score_ms_per_image": 1000 * getattr(by.get(f.method), "score_seconds", float("nan")) / len(data.test),
             "memory_mb": f.memory_bytes / 2**20,
             "image_auroc": by[f.method].metrics.get("image_auroc") if f.method in by else None,
             "reused": f.reused} for f in fitted]
    rows += [{**dict(o), "reused": o.get("reused", False)} for o in others]
    return pd.DataFrame(rows).set_index("method").round(3)


def _norm(m: np.ndarray, ref: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(ref, [1, 99.9])
    return np.clip((m - lo) / max(hi - lo, 1e-12), 0, 1)


def show_maps(data: Data, evals: Sequence[Any], indices: Sequence[int], *,
              extra: Mapping[str, np.ndarray] | None = None) -> Figure:
    """Rows: test images; columns: image, ground truth, then each method's map.

    Maps are shown on each method's own scale (1st-99.9th percentile of its test maps), so
    colours compare regions within a column, not values across columns. ``extra``: maps of other
    methods on the same test images (resized to the working size), e.g. the conv-AE residual.
    """
    cols = {ev.method: ev.maps for ev in evals}
    for name, m in (extra or {}).items():
        t = torch.as_tensor(np.asarray(m, dtype=np.float32))[:, None]
        cols[name] = torch.nn.functional.interpolate(t, size=tuple(data.test.shape[-2:]), mode="bilinear",
                                                     align_corners=False)[:, 0].numpy()
    n_cols = 2 + len(cols)
    fig = Figure(figsize=(2.2 * n_cols, 2.2 * len(indices)))
    axes = fig.subplots(len(indices), n_cols, squeeze=False)
    for r, i in enumerate(indices):
        img = data.test[i].permute(1, 2, 0).numpy()
        axes[r, 0].imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
        axes[r, 0].set_title(f"{data.defects[i]}", fontsize=8)
        gt = data.test_masks[i] if data.test_masks is not None else np.zeros(img.shape[:2])
        axes[r, 1].imshow(gt, cmap="gray", vmin=0, vmax=1)
        axes[r, 1].set_title("ground truth" if data.test_masks is not None else "(no masks)", fontsize=8)
        for c, (name, maps) in enumerate(cols.items(), start=2):
            axes[r, c].imshow(_norm(maps[i], maps), cmap="inferno", vmin=0, vmax=1)
            axes[r, c].set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def show_failures(data: Data, ev: Any, k: int = 4) -> tuple[Figure, pd.DataFrame]:
    """The ``k`` defective images scored lowest (misses) and the ``k`` normal ones scored highest.

    Returns the figure and a table of those images with their score and the honest image
    threshold, so a reader sees whether they fall on the wrong side of it.
    """
    t = ev.image_threshold.value
    defective = np.flatnonzero(data.labels == 1)
    normal = np.flatnonzero(data.labels == 0)
    misses = defective[np.argsort(ev.scores[defective])][:k]
    alarms = normal[np.argsort(-ev.scores[normal])][:k]
    picked = [*misses, *alarms]
    table = pd.DataFrame({
        "kind": ["lowest-scored defective"] * len(misses) + ["highest-scored normal"] * len(alarms),
        "defect": [data.defects[i] for i in picked], "score": [ev.scores[i] for i in picked],
        "above honest threshold": [bool(ev.scores[i] > t) for i in picked],
        "defect area (%)": [100 * float(data.test_masks[i].mean()) if data.test_masks is not None else None
                            for i in picked],
        "file": [os.path.basename(data.paths[i]) for i in picked],
    })
    fig = Figure(figsize=(2.2 * len(picked), 4.6))
    axes = fig.subplots(2, len(picked), squeeze=False)
    for c, i in enumerate(picked):
        img = data.test[i].permute(1, 2, 0).numpy().squeeze()
        axes[0, c].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[0, c].set_title(f"{data.defects[i]}\n{ev.scores[i]:.2f}", fontsize=8)
        axes[1, c].imshow(_norm(ev.maps[i], ev.maps), cmap="inferno", vmin=0, vmax=1)
        if data.test_masks is not None and data.test_masks[i].any():
            axes[1, c].contour(data.test_masks[i], levels=[0.5], colors="cyan", linewidths=0.8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{ev.method}: honest image threshold {t:.2f} (left: misses, right: false-alarm candidates)",
                 fontsize=9)
    fig.tight_layout()
    return fig, table


def feature_pca(sp: Any, data: Data, indices: Sequence[int], cfg: Mapping[str, Any]) -> Figure:
    """Images beside the first three principal components of their patch embeddings, as RGB.

    The components are fitted on the training images' patches, so colours mean the same in every
    panel: alike regions get alike colours, and what the training images never showed stands out.
    """
    train = embed(sp, data.train[: min(len(data.train), 16)], cfg)
    flat = train.permute(0, 2, 3, 1).reshape(-1, train.shape[1])
    mean = flat.mean(0)
    _, _, v = torch.pca_lowrank(flat - mean, q=3, center=False)
    fig = Figure(figsize=(2.6 * len(indices), 5.2))
    axes = fig.subplots(2, len(indices), squeeze=False)
    test = embed(sp, data.test[list(indices)], cfg)
    comp = ((test.permute(0, 2, 3, 1) - mean) @ v).numpy()
    lo, hi = np.percentile(((flat - mean) @ v).numpy(), [1, 99], axis=0)
    for c, i in enumerate(indices):
        img = data.test[i].permute(1, 2, 0).numpy().squeeze()
        axes[0, c].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[0, c].set_title(data.defects[i], fontsize=8)
        axes[1, c].imshow(np.clip((comp[c] - lo) / np.maximum(hi - lo, 1e-9), 0, 1), interpolation="nearest")
        axes[1, c].set_title("3 principal components of the patch features", fontsize=7)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def conv_ae_reference(data: Data, data_root: Any, category: str, env: Mapping[str, Any], *,
                      results_dir: Any, run_epochs: int | None = None, enabled: bool = True,
                      device: str = "cpu") -> tuple[Any | None, dict[str, Any] | None]:
    """Notebook 01's conv-AE (L2) on the same MVTec-layout data: its evaluation and a cost row.

    Trained with notebook 01's own profile settings (``EPOCHS`` overrides its epochs), or reused
    from notebook 01's checkpoint when that notebook ran with the same settings, data and seed
    (same run id). Returns ``(None, None)`` when disabled or when the data is not MVTec layout.
    """
    if not enabled or data.split.dataset != "mvtec":
        return None, None
    from adlib import experiment
    from adlib.pipelines import hazelnut_ae as ae

    cfg = ae.settings(env["profile"], {"epochs": run_epochs})
    run = experiment.run_id(env["seed"], cfg, exclude=ae.SELECTION, data_root=data_root, category=category)
    ae_data = ae.load(cfg, data_root=data_root, category=category, seed=env["seed"], progress=False)
    if [str(s.path) for s in ae_data.split.test] != data.paths:
        raise ValueError("conv-AE reference: the test images differ from this notebook's.")
    trained = ae.train(ae_data, cfg, "l2", results_dir=results_dir, run=run, device=device,
                       force=env["profile"] == "smoke", progress=False)
    start = time.perf_counter()
    (ev,) = ae.evaluate(trained, ae_data, cfg, device=device)
    seconds = time.perf_counter() - start
    n_scored = len(ae_data.test) + len(ae_data.val)
    memory = sum(p.numel() * p.element_size() for p in trained.model.parameters())
    return ev, {"method": ev.method, "fit_s": trained.train_seconds, "score_ms_per_image": 1000 * seconds / n_scored,
                "memory_mb": memory / 2**20, "image_auroc": ev.metrics.get("image_auroc"),
                "reused": trained.reused}


def results_overview(paths: Sequence[Any], decimals: int = 3) -> pd.DataFrame:
    """One row per results file: dataset, category, method, the headline metrics and fit time."""
    from adlib import results

    rows = []
    for path in paths:
        r = results.load_results(path)
        ci = (r.get("ci95") or {}).get("image_auroc")
        rows.append({"dataset": r["dataset"], "category": r["category"], "method": r["method"],
                     "image AUROC": r["image_auroc"],
                     "95% interval": _interval(ci, decimals),
                     "pixel AUROC": r["pixel_auroc"], "AUPRO": r["aupro"], "pixel F1": r["pixel_f1"],
                     "fit s": r["train_seconds"]})
    return pd.DataFrame(rows).round(decimals)
