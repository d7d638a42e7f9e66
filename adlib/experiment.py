"""One experiment protocol for every pipeline: settings -> data -> train -> evaluate -> save.

Every model notebook follows the same five verbs, and every pipeline module builds on the
helpers here instead of writing its own copy:

1. :func:`adlib.config.settings` — the profile's settings with the notebook's overrides, strictly checked
   (unknown keys, wrong types, ``epochs < 1``, impossible sizes) before anything is read or
   written; :func:`adlib.config.check_results_dir` refuses a ``RESULTS_DIR`` that cannot be written.
2. :func:`load_split` — the synthetic stand-in when ``DATA_ROOT`` is None, the layout's reader,
   and :func:`adlib.data.validate.validate_split` (every image decoded, sizes, channels, masks,
   train/test overlap by content) for every dataset; :func:`hold_out` keeps defect-free
   validation images apart.
3. :class:`TrainSpec` + :func:`train` — model, optimizer, loader, step and validation in one
   object; one checkpoint naming rule (:func:`checkpoint_path`) and one ``train_seconds`` rule
   (the time stored in the checkpoint's history, also when the weights are reused).
4. :func:`evaluate` — from test and validation scores (and maps) to the honest thresholds
   (defect-free validation data only, with their source), the ORACLE values beside them, the
   GUIDE metrics and the scores frame; no I/O.
5. :func:`save` — the only writer of results files.

Runs are identified by :func:`run_id` (``s<seed>-<settings hash>``), which names both the
results files and the checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adlib import bootstrap as boot
from adlib import bundle as bundles
from adlib import metrics as metric_fns
from adlib import results, thresholds
from adlib import threshold_rules as trules
from adlib.config import SettingsError, check_results_dir, settings
from adlib.data.types import DataError, Sample, Split
from adlib.train import History, config_hash, load_or_train

__all__ = [
    "SettingsError", "settings", "check_results_dir", "run_id", "Loaded", "load_split",
    "hold_out", "TrainSpec", "Trained", "checkpoint_path", "train", "Evaluation", "evaluate",
    "save",
]


# --------------------------------------------------------------------------- 1. run identity


def run_id(seed: int, cfg: Mapping[str, Any], *, exclude: Sequence[str] = (), **identity: Any) -> str:
    """``s<seed>-<6 hex digits>``: the seed and a short hash of the settings (key order ignored).

    Args:
        seed: the run's seed (not part of the hash, so runs that differ only in seed share it
            and the comparison can average over seeds).
        cfg: the settings from :func:`adlib.config.settings`.
        exclude: settings that only select what a notebook runs or shows (e.g. which datasets,
            variants or study sizes): left out of the hash, so that running fewer of them gives
            the same run id and the same checkpoints.
        **identity: what else picks the data, e.g. ``data_root=DATA_ROOT, category=CATEGORY``
            (a synthetic and a real run of one category must not share a file).

    Two runs get the same id only when seed, settings and identity are the same, so results
    files and checkpoints of different runs never overwrite each other.
    """
    unknown = sorted(set(exclude) - set(cfg))
    if unknown:
        raise SettingsError(f"run_id: exclude names {unknown}, which are not settings.")
    kept = {k: v for k, v in cfg.items() if k not in set(exclude)}
    key = {"settings": kept, **{k: None if v is None else str(v) for k, v in identity.items()}}
    return f"s{int(seed)}-{config_hash(key)[:6]}"


# --------------------------------------------------------------------------- 2. data

_READERS: dict[str, tuple[str, str]] = {
    "mvtec": ("adlib.data.mvtec", "read_mvtec"),
    "dagm": ("adlib.data.dagm", "read_dagm"),
    "rsdd": ("adlib.data.rsdd", "read_rsdd"),
    "sem": ("adlib.data.sem", "read_sem"),
}
_LAYOUT_HINT = {
    "mvtec": "the folder that holds '<category>/train/good' (MVTec AD layout)",
    "dagm": "the folder that holds '<ClassN>/Train' and '<ClassN>/Test' (DAGM 2007 layout)",
    "rsdd": "the folder that holds 'Type-I RSDDs dataset/' (RSDDs layout)",
    "sem": "the folder that holds 'Normal/' and 'Anomalous/' (SEM nanofibre layout)",
}


@dataclass
class Loaded:
    """A read and validated dataset: the split, whether it is synthetic, and the decode report."""

    split: Split
    synthetic: bool
    report: Any
    """The :class:`adlib.data.validate.ValidationReport` (holds the decoded images when kept)."""


def _read(dataset: str, root: Path, category: str | None) -> Split:
    import importlib

    module, fn = _READERS[dataset]
    reader = getattr(importlib.import_module(module), fn)
    return reader(root, category) if dataset in ("mvtec", "dagm") else reader(root)


def load_split(
    dataset: str,
    data_root: str | os.PathLike | None,
    category: str | None = None,
    *,
    synthetic_size: str = "default",
    keep_arrays: bool = True,
    progress: bool = True,
    parameter: str = "DATA_ROOT",
) -> Loaded:
    """Read one dataset in its original layout and validate it (the data step of every pipeline).

    Args:
        dataset: ``"mvtec" | "dagm" | "rsdd" | "sem"``.
        data_root: the dataset folder, or ``None`` for the synthetic stand-in (generated once
            under ``data/synthetic``, cached).
        category: MVTec category or DAGM class (ignored for RSDDs and SEM).
        synthetic_size: the stand-in's size (``"tiny"`` for tests, ``"default"``).
        keep_arrays: keep the decoded images in the report (the datasets reuse them).
        progress: show progress bars.
        parameter: the notebook parameter that holds ``data_root`` (for messages).

    Raises:
        DataError: missing folder, wrong layout, unreadable files, overlap between train and
            test, ... (from the reader and :func:`adlib.data.validate.validate_split`).
    """
    from adlib.data.validate import validate_split

    if dataset not in _READERS:
        raise SettingsError(f"Unknown dataset {dataset!r}: expected one of {sorted(_READERS)}.")
    synthetic = data_root is None
    if synthetic:
        from adlib.data.synthetic import ensure_synthetic

        root = ensure_synthetic(dataset, category if dataset in ("mvtec", "dagm") else None,
                                size=synthetic_size, seed=0, progress=progress)
    else:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"{parameter}={str(data_root)!r} is not a folder. Fix: pass "
                            f"{_LAYOUT_HINT[dataset]}, or {parameter} = None for the synthetic stand-in.")
    split = _read(dataset, root, category)
    report = validate_split(split, check_images=True, keep_arrays=keep_arrays, progress=progress)
    return Loaded(split=split, synthetic=synthetic, report=report)


def hold_out(
    samples: Sequence[Sample], fraction: float, seed: int = 0, *, where: str = "train", min_train: int = 2
) -> tuple[list[Sample], list[Sample]]:
    """Split defect-free training images into (train, validation) with a clear error when too few.

    The validation images are the only data that honest thresholds are chosen on.
    """
    from adlib.data.torchdata import holdout

    train, val = holdout(list(samples), fraction, seed=seed)
    if len(train) < min_train or not val:
        raise DataError(
            f"{where}: {len(samples)} defect-free training images are too few to hold out a "
            f"validation share of {fraction:g} and keep {min_train} for training; add images "
            "or lower val_fraction."
        )
    return list(train), list(val)


# --------------------------------------------------------------------------- 3. training


@dataclass
class TrainSpec:
    """Everything that defines one training run (read by :func:`train` and :mod:`adlib.bench`).

    Exactly one of ``loss_fn`` (default step ``loss_fn(model(x), x)``) and ``step_fn``
    (``step_fn(model, batch, ctx)``, see :class:`adlib.train.StepContext`) is given.
    """

    name: str
    """Variant name: the first part of the checkpoint file name (e.g. ``conv-ae-l2-mvtec-hazelnut``)."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer]
    loader: Any
    epochs: int
    config: dict[str, Any]
    """What defines the weights (model, data, seed, ...): a checkpoint with another config is
    never reused."""
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    step_fn: Callable[..., Any] | None = None
    val_fn: Callable[[torch.nn.Module], Any] | None = None
    on_epoch_end: Callable[[int, History], Any] | None = None
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    """Other :func:`adlib.train.fit` arguments (``scheduler``, ``amp``, ``checkpoint_every``)."""

    def __post_init__(self) -> None:
        if (self.loss_fn is None) == (self.step_fn is None):
            raise SettingsError(f"TrainSpec {self.name!r}: give exactly one of loss_fn and step_fn.")
        if int(self.epochs) < 1:
            raise SettingsError(f"TrainSpec {self.name!r}: epochs={self.epochs}; must be at least 1.")


@dataclass
class Trained:
    """A trained (or reused) model with its history, training time and checkpoint."""

    name: str
    model: torch.nn.Module
    history: History
    train_seconds: float
    """Seconds of training recorded in the history (the stored time when the weights were reused)."""
    checkpoint: Path
    reused: bool
    """True when finished weights were loaded from the checkpoint instead of trained."""


def checkpoint_path(results_dir: str | os.PathLike, notebook: str, name: str, run: str) -> Path:
    """``<results_dir>/<notebook>/checkpoints/<name>-<run>.pt``: the one checkpoint naming rule."""
    return Path(results_dir) / notebook / "checkpoints" / f"{name}-{run}.pt"


def train(
    spec: TrainSpec,
    *,
    results_dir: str | os.PathLike,
    notebook: str,
    run: str,
    device: torch.device | str = "cpu",
    force: bool = False,
    progress: bool = True,
) -> Trained:
    """Train ``spec`` (or reuse its finished checkpoint; a killed run resumes).

    Args:
        spec: the training specification.
        results_dir, notebook, run: where the checkpoint lives (:func:`checkpoint_path`).
        device: training device.
        force: retrain even when a matching finished checkpoint exists.
        progress: show the epoch progress bar.
    """
    ckpt = checkpoint_path(results_dir, notebook, spec.name, run)
    history = load_or_train(
        spec.model, spec.loader, checkpoint_path=ckpt, config=spec.config, epochs=int(spec.epochs),
        force_train=force, optimizer=spec.optimizer, device=device, loss_fn=spec.loss_fn,
        step_fn=spec.step_fn, val_fn=spec.val_fn, on_epoch_end=spec.on_epoch_end,
        progress=progress, desc=spec.name, **spec.fit_kwargs,
    )
    spec.model.eval()
    return Trained(name=spec.name, model=spec.model, history=history,
                   train_seconds=float(history.train_seconds), checkpoint=ckpt,
                   reused=not history.trained)


# --------------------------------------------------------------------------- 4. evaluation


@dataclass
class Evaluation:
    """Scores, maps, honest and ORACLE thresholds and the GUIDE metrics of one method.

    Honest thresholds come from defect-free validation data only; the ORACLE ones are the best
    F1 on the test set, kept beside them for comparison and never used for the results' F1.
    """

    method: str
    scores: np.ndarray
    labels: np.ndarray
    defects: list[str]
    paths: list[str]
    val_scores: np.ndarray
    image_threshold: thresholds.Threshold
    metrics: dict[str, Any]
    """:data:`adlib.results.METRIC_KEYS` plus ``per_defect`` (at the honest pixel threshold)."""
    maps: np.ndarray | None = None
    masks: np.ndarray | None = None
    val_maps: np.ndarray | None = None
    pixel_threshold: thresholds.Threshold | None = None
    """The honest pixel threshold behind ``pixel_f1`` (None without maps and masks)."""
    pixel_thresholds: dict[str, thresholds.Threshold] = field(default_factory=dict)
    """Every honest pixel threshold computed (``pixel_threshold`` is one of them)."""
    oracle_image: thresholds.Threshold | None = None
    oracle_pixel: thresholds.Threshold | None = None
    oracle_per_defect: dict[str, dict[str, float | None]] = field(default_factory=dict)
    ci95: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    """95 % bootstrap intervals over test images (:func:`adlib.bootstrap.evaluation_intervals`):
    image AUROC/AUPR/F1 and, with maps and masks, the pixel metrics; empty when ``n_boot=0``."""
    bootstrap: dict[str, Any] = field(default_factory=dict)
    """How ``ci95`` was computed (n, seed, level, stratified_by, unit, pixel_bins)."""
    rule_table: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every validation-only rule of :mod:`adlib.threshold_rules` (and ``"auto"``) with its
    threshold and TEST pixel P/R/F1 beside the ORACLE (reporting only; empty without masks)."""
    rule_choice: trules.Choice | None = None
    """How ``"auto"`` was chosen (validation halves only)."""

    def scores_frame(self) -> pd.DataFrame:
        """One row per test image: ``path, label, defect, score`` (GUIDE section 2)."""
        return pd.DataFrame({"path": self.paths, "label": self.labels, "defect": self.defects,
                             "score": self.scores})

    @property
    def image_f1(self) -> float | None:
        """Image F1 at the honest image threshold."""
        return metric_fns.image_prf(self.scores, self.labels, self.image_threshold.value).f1

    @property
    def oracle_image_f1(self) -> float | None:
        """ORACLE: image F1 at the best test threshold (None without both classes)."""
        if self.oracle_image is None:
            return None
        return metric_fns.image_prf(self.scores, self.labels, self.oracle_image.value).f1

    @property
    def oracle_pixel_f1(self) -> float | None:
        """ORACLE: pixel F1 at the best test threshold (None without masks)."""
        return (self.oracle_per_defect.get("all") or {}).get("pixel_f1")

    def predicted(self, threshold: float | None = None) -> np.ndarray:
        """Predicted defect pixels ``maps > threshold`` (default: the honest pixel threshold)."""
        if self.maps is None:
            raise ValueError(f"{self.method}: no maps were evaluated.")
        t = self.pixel_threshold.value if threshold is None else threshold
        return self.maps > t

    def threshold_params(self) -> dict[str, Any]:
        """Honest and ORACLE thresholds for the results' ``params`` (None where not computable)."""
        return {
            "image_threshold": self.image_threshold.value,
            "image_threshold_source": self.image_threshold.source,
            "image_f1": self.image_f1,
            "oracle_image_threshold": self.oracle_image.value if self.oracle_image else None,
            "oracle_image_f1": self.oracle_image_f1,
            "oracle_pixel_threshold": self.oracle_pixel.value if self.oracle_pixel else None,
            "oracle_pixel_f1": self.oracle_pixel_f1,
            **{f"pixel_threshold_{k}": t.value for k, t in self.pixel_thresholds.items()},
            **self._rule_params(),
        }

    def _rule_params(self) -> dict[str, Any]:
        """The rule comparison for ``params`` (nothing when it was not computed)."""
        if not self.rule_table:
            return {}
        f1, oracle = self.metrics.get("pixel_f1"), self.oracle_pixel_f1
        return {
            "threshold_rules": self.rule_table,
            "threshold_rule_auto": self.rule_choice.rule if self.rule_choice else None,
            "pixel_f1_over_oracle": float(f1) / oracle if f1 is not None and oracle else None,
        }


def _both_classes(labels: np.ndarray) -> bool:
    return len(set(np.asarray(labels).astype(int).tolist())) == 2


def evaluate(
    method: str,
    *,
    scores: np.ndarray,
    labels: np.ndarray,
    defects: Sequence[str],
    paths: Sequence[str],
    val_scores: np.ndarray,
    image_q: float = 0.95,
    maps: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    val_maps: np.ndarray | None = None,
    pixel_thresholds: Mapping[str, thresholds.Threshold] | None = None,
    pixel_rule: str | None = None,
    oracle: bool = True,
    n_boot: int = boot.DEFAULT_N_BOOT,
    boot_seed: int = boot.DEFAULT_SEED,
    rule_spec: trules.RuleSpec | None = None,
    rules: tuple[dict[str, thresholds.Threshold], trules.Choice] | None = None,
    compare_rules: bool = True,
) -> Evaluation:
    """The evaluation core shared by every pipeline (no I/O).

    Args:
        method: the method name of the results.
        scores, labels, defects, paths: one entry per test image.
        val_scores: image scores of the defect-free validation images.
        image_q: the image threshold is this quantile of ``val_scores`` (``1``: their maximum).
        maps, masks: (N, H, W) test anomaly maps and ground truth (None: image level only).
        val_maps: validation maps (the pipeline's pixel rules are computed from them).
        pixel_thresholds: ``{rule: Threshold}`` from defect-free validation data; default: the
            0.999 pixel quantile of ``val_maps``.
        pixel_rule: which of ``pixel_thresholds`` the results use (default: the first);
            ``"auto"``: the :func:`adlib.threshold_rules.choose_rule` pick on ``val_maps``; any
            other rule of :data:`adlib.threshold_rules.RULES` is fitted on ``val_maps`` too.
        oracle: also compute the ORACLE (test-set best-F1) thresholds.
        n_boot, boot_seed: resamples (stratified by label) and seed of the 95 % intervals over
            test images (at the honest thresholds); ``n_boot=0`` skips them.
        rule_spec: options of the rule comparison (default: ``RuleSpec.for_maps`` of the maps).
        rules: ``(thresholds, choice)`` from :func:`adlib.threshold_rules.all_thresholds` when the
            pipeline computed them already.
        compare_rules: with maps, masks and ``val_maps``, fit every validation-only rule and
            record its test pixel F1 beside the ORACLE (``rule_table``).

    Raises:
        ValueError: a pixel threshold that does not come from defect-free validation data.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    val_scores = np.asarray(val_scores, dtype=np.float64)
    if not (len(scores) == len(labels) == len(defects) == len(paths)):
        raise ValueError(f"{method}: scores, labels, defects and paths differ in length.")
    image_t = (thresholds.threshold_from_normal(val_scores, method="max") if image_q >= 1 else
               thresholds.threshold_from_normal(val_scores, method="quantile", q=image_q))
    pixel = dict(pixel_thresholds or {})
    with_rules = compare_rules and maps is not None and masks is not None and val_maps is not None
    named = pixel_rule in (*trules.RULES, "auto")  # a rule of adlib.threshold_rules
    if with_rules or (named and pixel_rule not in pixel and val_maps is not None):
        rules = rules or trules.all_thresholds(
            np.asarray(val_maps), rule_spec or trules.RuleSpec.for_maps(np.shape(val_maps)))
        if named:  # every rule beside the one the results use
            pixel = {**rules[0], **pixel}
    if maps is not None and masks is not None and not pixel:
        if val_maps is None:
            raise ValueError(f"{method}: pixel metrics need validation maps or pixel_thresholds.")
        pixel = {"quantile": thresholds.threshold_from_normal(val_maps, method="quantile", q=0.999)}
    for name, t in pixel.items():
        if not t.source.startswith("normal-validation"):
            raise ValueError(f"{method}: pixel threshold {name!r} comes from {t.source!r}; the "
                             "results' thresholds must come from defect-free validation data.")
    used = pixel[pixel_rule or next(iter(pixel))] if pixel and masks is not None else None
    summary = results.metrics_summary(scores=scores, labels=labels, maps=maps, masks=masks,
                                      threshold=used, defects=list(defects))
    oracle_img = oracle_pix = None
    oracle_per: dict[str, dict[str, float | None]] = {}
    if oracle and _both_classes(labels):
        oracle_img = thresholds.oracle_best_f1_threshold(scores, labels)
    if oracle and maps is not None and masks is not None and np.asarray(masks).any():
        oracle_pix = thresholds.oracle_best_f1_threshold(maps, masks)
        oracle_per = metric_fns.per_defect_prf(maps, masks, list(defects), oracle_pix.value)
        oracle_per["all"] = metric_fns.pixel_prf(maps, masks, oracle_pix.value).as_dict("pixel_")
    table = (trules.rule_table(maps, masks, rules[0], rules[1], (oracle_per.get("all") or {}).get("pixel_f1"))
             if with_rules and rules is not None and np.asarray(masks).any() else {})
    ci: dict[str, tuple[float, float] | None] = {}
    meta: dict[str, Any] = {}
    if n_boot > 0:
        with_pixels = maps is not None and masks is not None and used is not None
        ci, meta = boot.evaluation_intervals(
            scores=scores, labels=labels, image_threshold=image_t.value, maps=maps if with_pixels else None,
            masks=masks if with_pixels else None, pixel_threshold=used.value if with_pixels else None,
            n_boot=n_boot, seed=boot_seed)
    return Evaluation(
        method=method, scores=scores, labels=labels, defects=list(defects), paths=[str(p) for p in paths],
        val_scores=val_scores, image_threshold=image_t, metrics=summary, maps=maps, masks=masks,
        val_maps=val_maps, pixel_threshold=used, pixel_thresholds=pixel if masks is not None else {},
        oracle_image=oracle_img, oracle_pixel=oracle_pix, oracle_per_defect=oracle_per, ci95=ci, bootstrap=meta,
        rule_table=table, rule_choice=rules[1] if rules is not None else None,
    )


# --------------------------------------------------------------------------- 5. save


def save(
    ev: Evaluation,
    *,
    results_dir: str | os.PathLike,
    notebook: str,
    split: Split,
    synthetic: bool,
    profile: str,
    seed: int,
    run: str,
    train_seconds: float | None,
    params: Mapping[str, Any],
    bundle: Any = None,
) -> Path:
    """Write ``<results_dir>/<notebook>/<method>-<dataset>-<category>-<run>.json`` + scores CSV.

    The honest and ORACLE thresholds of ``ev`` go into ``params`` beside the pipeline's own; its
    bootstrap intervals (if any) into ``ci95`` with their description in ``bootstrap``. A
    :class:`adlib.bundle.Bundle` is written first, beside the JSON (``<same name>.model.pt``), and
    the JSON records it as ``model_bundle``.
    """
    ci = dict(ev.ci95)
    if "image_f1" in ci:  # at the final image threshold: a pipeline may replace it after evaluate()
        ci["image_f1"] = boot.image_ci(ev.scores, ev.labels, threshold=ev.image_threshold.value,
                                       n_boot=ev.bootstrap["n"], seed=ev.bootstrap["seed"])["image_f1"]
    bundle_name = None if bundle is None else bundles.save_beside(
        bundle, Path(results_dir) / notebook, results.results_name(ev.method, split.dataset, split.category, run))
    return results.save_results(
        results_dir, notebook=notebook, method=ev.method, dataset=split.dataset,
        category=split.category, synthetic=synthetic, profile=profile, seed=seed,
        metrics=ev.metrics, scores=ev.scores_frame(), threshold=ev.pixel_threshold,
        train_seconds=train_seconds, params={**dict(params), **ev.threshold_params()}, run_id=run,
        ci95=ci or None, bootstrap=ev.bootstrap or None, model_bundle=bundle_name,
    )
