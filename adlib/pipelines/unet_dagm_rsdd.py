"""Experiment logic of notebook 02: UNet-like autoencoder on DAGM class 8 and RSDDs type I (seed 002).

The notebook calls the protocol's verbs (:mod:`adlib.experiment`), per dataset and variant::

    cfg = settings(profile, {"epochs": EPOCHS, "datasets": DATASETS, ...})   # strict
    data = load(cfg, data_root=DATA_ROOT, dataset="dagm", category="Class8")  # read + validate
    trained = train(data, cfg, "unet-ae", results_dir=RESULTS_DIR, run=run)   # or reuse
    evals = evaluate(trained, data, cfg)                                       # rule, thresholds
    save(evals, trained, data, cfg, results_dir=RESULTS_DIR, profile=..., seed=..., run=run)

Choices the seed leaves open (documented in the notebook):

* DAGM: train on defect-free ``Train`` images minus a held-out validation set (``val_fraction``),
  evaluate on ``Test``. The cpu profile trains on random ``crop`` x ``crop`` windows of the full
  512 x 512 images and predicts on full images (the network is fully convolutional), which keeps
  the pixel scale of the thin cracks that downscaling would blur away.
* RSDDs: the seed's 200 x 160 patch protocol (:func:`adlib.data.rsdd.rsdd_patches`); validation
  patches come from held-out *training strips*, never from test strips.
* Anomaly map: squared residual (seed Eq. 1); the decision rule (image score, segmentation map,
  pixel quantile, two-stage gate) is in :mod:`adlib.pipelines.unet_rules`. Its CHOICE may use the
  labelled tuning set (DAGM's defective ``Train`` images, neither trained on nor tested); the
  thresholds always come from the defect-free validation images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from adlib import experiment, maps, thresholds
from adlib.bootstrap import DEFAULT_N_BOOT
from adlib.config import SettingsError
from adlib.data.types import DataError, Split
from adlib.models.unet_ae import VARIANTS as MODEL_VARIANTS
from adlib.models.unet_ae import UNetAE
from adlib.pipelines import unet_rules as rules

NOTEBOOK = "02_unet_autoencoder_dagm_rsdd"
DATASETS: tuple[str, ...] = ("dagm", "rsdd")
RSDD_CATEGORY = "type-I"

_TUNE_CPU: dict[str, Any] = {
    "tune": True, "tune_score_sigmas": (0.0, 1.0, 2.0), "tune_seg_windows": (0, 11, 21, 31, 41),
    "tune_pixel_quantiles": (0.99, 0.999, 0.9999, 1.0),
}
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "epochs": 1, "image_size": 64, "crop": None, "base_channels": 4, "batch_size": 8,
        "synthetic_size": "tiny", "val_fraction": 0.2, "threshold_method": "max",
        **rules.DEFAULTS, "tune": True, "tune_score_sigmas": (0.0, 1.0), "tune_seg_windows": (0, 5),
        "tune_pixel_quantiles": (0.999, 1.0), "datasets": DATASETS,
        "variants": ("unet-ae", "unet-ae-noskip"), "rsdd_patch": (80, 80), "rsdd_stride": None,
        "max_train": 32,
    },
    "cpu": {
        "epochs": 15, "image_size": None, "crop": 128, "base_channels": 16, "batch_size": 8,
        "synthetic_size": "default", "val_fraction": 0.1, "threshold_method": "max",
        **rules.DEFAULTS, **_TUNE_CPU, "datasets": DATASETS,
        "variants": ("unet-ae", "unet-ae-deepskip", "unet-ae-noskip"),
        "rsdd_patch": (200, 160), "rsdd_stride": None, "max_train": None,
    },
    "paper": {
        "epochs": 50, "image_size": None, "crop": None, "base_channels": 16, "batch_size": 8,
        "synthetic_size": "default", "val_fraction": 0.1, "threshold_method": "max",
        **rules.DEFAULTS, **_TUNE_CPU, "datasets": DATASETS,
        "variants": ("unet-ae", "unet-ae-deepskip", "unet-ae-noskip"),
        "rsdd_patch": (200, 160), "rsdd_stride": None, "max_train": None,
    },
}
"""Settings per profile. ``paper`` = the seed's 50 epochs of Adam on full images. ``image_size``,
``crop``, ``rsdd_stride`` and ``max_train`` may be None (full images, no crop, no overlap, all)."""

SELECTION: tuple[str, ...] = ("datasets", "variants")  # only pick what runs: not in the run id
PARAMETERS: dict[str, str] = {
    "epochs": "EPOCHS", "image_size": "IMAGE_SIZE", "datasets": "DATASETS", "variants": "VARIANTS",
}
"""Setting key -> notebook parameter (the other keys are profile-only settings)."""

VARIANTS: tuple[str, ...] = PROFILES["cpu"]["variants"]
"""The variants the notebook trains by default (results' method names)."""

_OPTIONAL_INT = ("image_size", "crop", "max_train")
_QUANTILES = ("pixel_quantile", "tune_pixel_quantiles")
_THRESHOLD_METHODS = ("max", "quantile", "k_sigma")


# --------------------------------------------------------------------------- settings


def _name(key: str) -> str:
    return PARAMETERS.get(key, key.upper())


def _check(cfg: dict[str, Any]) -> None:
    """The pipeline's own checks (after config.settings' types and ranges)."""
    bad = [d for d in cfg["datasets"] if d not in DATASETS]
    if bad:
        raise SettingsError(f"DATASETS={list(cfg['datasets'])!r}: {bad} unknown; use a non-empty "
                            f"subset of {list(DATASETS)}.")
    bad = [v for v in cfg["variants"] if v not in MODEL_VARIANTS]
    if bad:
        raise SettingsError(f"VARIANTS={list(cfg['variants'])!r}: {bad} unknown; use a non-empty "
                            f"subset of {sorted(MODEL_VARIANTS)}.")
    for key in _OPTIONAL_INT:
        v = cfg[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise SettingsError(f"{_name(key)}={v!r}: use None or an integer >= 1.")
    for key in ("rsdd_patch", "rsdd_stride"):
        v = cfg[key]
        if v is not None and (not isinstance(v, (list, tuple)) or len(v) != 2
                              or not all(isinstance(n, int) and n >= 1 for n in v)):
            raise SettingsError(f"{_name(key)}={v!r}: use (height, width), two integers >= 1.")
    for key in _QUANTILES:
        values = cfg[key] if isinstance(cfg[key], (list, tuple)) else [cfg[key]]
        if not all(0.0 < q <= 1.0 for q in values):
            raise SettingsError(f"{_name(key)}={cfg[key]!r}: quantiles in (0, 1] (1 = maximum).")
    for key in ("score_sigma", "tune_score_sigmas", "seg_window", "tune_seg_windows"):
        values = cfg[key] if isinstance(cfg[key], (list, tuple)) else [cfg[key]]
        if any(v < 0 for v in values):
            raise SettingsError(f"{_name(key)}={cfg[key]!r}: must be >= 0 (0 = no filter).")
        if key.endswith(("_window", "_windows")) and any(v > 1 and v % 2 == 0 for v in values):
            raise SettingsError(f"{_name(key)}={cfg[key]!r}: windows are 0 or odd (centred).")
    if cfg["threshold_method"] not in _THRESHOLD_METHODS:
        raise SettingsError(f"THRESHOLD_METHOD={cfg['threshold_method']!r}: use one of "
                            f"{list(_THRESHOLD_METHODS)}.")


def settings(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile's settings with the notebook's overrides (``None`` = profile value), checked.

    Raises:
        SettingsError: unknown key, wrong type (text such as ``'["dagm"]'`` is parsed), epochs
            < 1, unknown dataset or variant, ... naming the notebook parameter.
    """
    return experiment.settings(profile, PROFILES, overrides, names=PARAMETERS, check=_check)


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """One dataset, decoded and split, ready for training and evaluation.

    Attributes:
        split: the validated split (dataset, category and root for the results).
        synthetic: True for the synthetic stand-in.
        train, val: (N, C, H, W) uint8 defect-free images (or patches).
        test: (M, C, H, W) uint8; ``test_labels`` (M,), ``test_masks`` (M, H, W) bool,
            ``test_defects`` and ``test_paths`` (M,) strings.
        unit: ``"image"`` or ``"patch"`` (what one test row is).
        summary: a line for the notebook.
        tune, tune_masks: labelled defective images that are neither training nor test data
            (DAGM: the defective ``Train`` images) for choosing the decision rule; None if none.
        seed: the seed of the hold-out (:func:`train` seeds the model with it too).
    """

    split: Split
    synthetic: bool
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    test_labels: np.ndarray
    test_masks: np.ndarray
    test_defects: list[str]
    test_paths: list[str]
    unit: str = "image"
    summary: str = ""
    tune: torch.Tensor | None = None
    tune_masks: np.ndarray | None = None
    seed: int = 0

    @property
    def dataset(self) -> str:
        """``"dagm"`` or ``"rsdd"``."""
        return self.split.dataset

    @property
    def category(self) -> str:
        """DAGM class (``"Class8"``) or ``"type-I"``."""
        return self.split.category

    @property
    def channels(self) -> int:
        """Image channels."""
        return int(self.train.shape[1])


def _take(tensor: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    if n is None or len(tensor) <= n:
        return tensor
    idx = np.sort(np.random.default_rng(seed).permutation(len(tensor))[:n])
    return tensor[torch.from_numpy(idx)]


def _load_dagm(cfg: dict, data_root: Any, category: str, seed: int, progress: bool) -> Data:
    from adlib.data.torchdata import ImageDataset

    loaded = experiment.load_split("dagm", data_root, category, synthetic_size=cfg["synthetic_size"],
                                   progress=progress)
    split = loaded.split
    train_s, val_s = experiment.hold_out(split.train, cfg["val_fraction"], seed,
                                         where=f"DAGM {category} Train")
    kw = {"image_size": cfg["image_size"], "channels": 1, "decoded": loaded.report,
          "progress": progress}

    def stack(samples: list, with_masks: bool = False) -> tuple[torch.Tensor, np.ndarray | None]:
        ds = ImageDataset(samples, with_masks=with_masks, **kw)
        masks = (np.stack([ds[i]["mask"][0].numpy() > 0.5 for i in range(len(ds))])
                 if with_masks else None)
        return ds.images_uint8(), masks

    train = _take(stack(train_s)[0], cfg["max_train"], seed)
    val = stack(val_s)[0]
    test, test_masks = stack(split.test, with_masks=True)
    tune_s = list(split.extra.get("train_defective", []))
    tune, tune_masks = stack(tune_s, with_masks=True) if tune_s else (None, None)
    labels = split.test_labels
    data = Data(split, loaded.synthetic, train, val, test, labels, test_masks,
                [s.defect for s in split.test], [str(s.path) for s in split.test],
                tune=tune, tune_masks=tune_masks, seed=seed)
    data.summary = (f"DAGM {category} ({'synthetic stand-in' if loaded.synthetic else split.root}): "
                    f"{len(train)} train / {len(val)} validation normals, {len(test)} test images "
                    f"({int(labels.sum())} defective), {len(tune_s)} defective Train images as "
                    f"tuning set, {tuple(test.shape[-2:])} px")
    return data


def load_rsdd_patches(cfg: dict, data_root: Any, seed: int, progress: bool) -> Data:
    """RSDDs as seed 002's patches (``cfg``: ``synthetic_size``, ``rsdd_patch``, ``rsdd_stride``,
    ``val_fraction``, ``max_train``): defect-free training patches, validation from held-out strips
    (notebook 06 uses it too)."""
    from adlib.data.rsdd import rsdd_patches

    loaded = experiment.load_split("rsdd", data_root, synthetic_size=cfg["synthetic_size"],
                                   keep_arrays=False, progress=progress, parameter="RSDD_ROOT")
    patch, stride = tuple(cfg["rsdd_patch"]), cfg["rsdd_stride"]
    ps = rsdd_patches(loaded.split, patch, stride=tuple(stride) if stride else None, seed=seed,
                      progress=progress)
    if len(ps.train) < 2:
        raise DataError(f"RSDDs at {loaded.split.root}: {len(ps.train)} defect-free training "
                        f"patch(es) of {patch} px; need at least 2. Fix: use more strips or a "
                        "smaller rsdd_patch.")
    # Validation: every clean patch of a few whole training strips (never a test strip). With a
    # single usable training strip (tiny stand-ins), a share of its patches instead.
    strips = [ps.train_samples[i] for i in np.unique(ps.train_source)]
    if len(strips) >= 2:
        _, val_strips = experiment.hold_out(strips, cfg["val_fraction"], seed, min_train=1,
                                            where="RSDDs training strips")
        val_idx = [i for i, s in enumerate(ps.train_samples) if s in val_strips]
        is_val = np.isin(ps.train_source, val_idx)
        how = f"{len(val_strips)} held-out training strips"
    else:
        n_val = min(max(1, round(cfg["val_fraction"] * len(ps.train))), len(ps.train) - 1)
        is_val = np.zeros(len(ps.train), bool)
        is_val[np.random.default_rng(seed).permutation(len(ps.train))[:n_val]] = True
        how = "patches of the only usable training strip"

    def to_t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)

    train = _take(to_t(ps.train[~is_val]), cfg["max_train"], seed)
    val, test = to_t(ps.train[is_val]), to_t(ps.test)
    paths = [f"{ps.test_samples[s].path}#y{y}x{x}"
             for s, (y, x) in zip(ps.test_source, ps.test_coords, strict=True)]
    defects = [ps.test_samples[s].defect if lab else "good"
               for s, lab in zip(ps.test_source, ps.test_labels, strict=True)]
    data = Data(loaded.split, loaded.synthetic, train, val, test, ps.test_labels.astype(np.int64),
                ps.test_masks.astype(bool), defects, paths, unit="patch", seed=seed)
    data.summary = (f"RSDDs type I ({'synthetic stand-in' if loaded.synthetic else loaded.split.root})"
                    f": {ps.summary()}; {len(train)} train / {len(val)} validation patches ({how})")
    return data


def load(cfg: dict, *, data_root: Any = None, dataset: str = "dagm", category: str = "Class8",
         seed: int = 0, progress: bool = True) -> Data:
    """Read and validate one dataset (:func:`adlib.experiment.load_split`) and hold validation out.

    Args:
        cfg: from :func:`settings` (``image_size``, ``val_fraction``, ``synthetic_size``,
            ``max_train``, ``rsdd_patch``, ``rsdd_stride``).
        data_root: the dataset folder in its original layout, or None for the synthetic stand-in.
        dataset: ``"dagm"`` or ``"rsdd"``.
        category: the DAGM class (ignored for RSDDs).
        seed: seed of the validation hold-out (and of the RSDDs strip split).

    Raises:
        DataError: missing or malformed data, train/test (or tuning/test) overlap, too few images.
    """
    if dataset == "dagm":
        return _load_dagm(cfg, data_root, category, seed, progress)
    if dataset == "rsdd":
        return load_rsdd_patches(cfg, data_root, seed, progress)
    raise SettingsError(f"Unknown dataset {dataset!r}; choose from {list(DATASETS)}.")


# --------------------------------------------------------------------------- training


def random_crop_batch(x: torch.Tensor, crop: int | None, generator: torch.Generator) -> torch.Tensor:
    """An independent random ``crop`` x ``crop`` window of every image in ``x`` (N, C, H, W).

    Returns ``x`` unchanged when ``crop`` is None or not smaller than the images.
    """
    h, w = x.shape[-2:]
    if crop is None or (crop >= h and crop >= w):
        return x
    ch, cw = min(crop, h), min(crop, w)
    ys = torch.randint(0, h - ch + 1, (len(x),), generator=generator).tolist()
    xs = torch.randint(0, w - cw + 1, (len(x),), generator=generator).tolist()
    return torch.stack([img[:, y:y + ch, xx:xx + cw] for img, y, xx in zip(x, ys, xs, strict=True)])


def spec(data: Data, cfg: dict, variant: str, *, seed: int = 0) -> experiment.TrainSpec:
    """MSE and Adam with default settings (lr 1e-3), as in the seed; random crops per batch.

    The checkpoint name is ``<variant>-<dataset>-<category>``; ``config`` holds what defines the
    weights (variant, data, width, batch, crop, seed).
    """
    from adlib.data.torchdata import PatchDataset, make_loader
    from adlib.train import seed_everything

    seed_everything(seed)
    model = UNetAE.from_variant(variant, in_channels=data.channels, base_channels=cfg["base_channels"])
    loader = make_loader(PatchDataset(data.train.permute(0, 2, 3, 1).numpy()),
                         batch_size=cfg["batch_size"], shuffle=True, seed=seed, num_workers=0)
    crop_gen = torch.Generator().manual_seed(seed)
    crop = cfg["crop"]
    mse = nn.MSELoss()

    def step(m: nn.Module, batch: dict, ctx: Any) -> torch.Tensor:
        # crop where the batch already is (fit moved it to the device): no round trip to the host
        x = random_crop_batch(batch["image"], crop, crop_gen).to(ctx.device)
        return mse(m(x), x)

    config = {"variant": variant, "dataset": data.dataset, "category": data.category,
              "synthetic": data.synthetic, "root": str(data.split.root), "n_train": len(data.train),
              "train_shape": list(data.train.shape[1:]), "seed": seed,
              **{k: cfg[k] for k in ("base_channels", "batch_size", "crop", "image_size")}}
    return experiment.TrainSpec(
        name=f"{variant}-{data.dataset}-{data.category}", model=model,
        optimizer=torch.optim.Adam(model.parameters()), loader=loader, epochs=cfg["epochs"],
        config=config, step_fn=step)


@dataclass
class Trained(experiment.Trained):
    """:class:`adlib.experiment.Trained` plus the variant (the results' method name)."""

    variant: str = ""


def train(data: Data, cfg: dict, variant: str, *, results_dir: Any, run: str, device: Any = "cpu",
          force: bool = False, progress: bool = True) -> Trained:
    """Train one variant (or reuse its finished checkpoint) through :func:`adlib.experiment.train`.

    The seed of :func:`load` (``data.seed``) seeds initialisation, batch order and crops.
    """
    t = experiment.train(spec(data, cfg, variant, seed=data.seed), results_dir=results_dir,
                         notebook=NOTEBOOK, run=run, device=device, force=force, progress=progress)
    return Trained(**{f.name: getattr(t, f.name) for f in fields(t)}, variant=variant)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, device: Any = "cpu",
                batch_size: int = 4) -> np.ndarray:
    """Reconstructions (N, C, H, W) float32 in [0, 1] of uint8 images (any size, full images)."""
    model.to(device).eval()
    out = [model(images[i:i + batch_size].to(device).float() / 255.0).cpu().numpy()
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:]), np.float32)


@torch.no_grad()
def residual_maps(model: nn.Module, images: torch.Tensor, device: Any = "cpu",
                  batch_size: int = 4, progress: bool = False) -> np.ndarray:
    """Squared residual ``(X - AE(X))**2`` (seed Eq. 1), channel mean, (N, H, W) float32."""
    from tqdm.auto import tqdm

    model.to(device).eval()
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="residuals", disable=not progress,
                  leave=False):
        x = images[i:i + batch_size].to(device).float() / 255.0
        out.append(maps.residual_map(x, model(x), kind="l2"))
    return np.concatenate(out) if out else np.zeros((0, *images.shape[-2:]), np.float32)


@dataclass
class Evaluation(experiment.Evaluation):
    """:class:`adlib.experiment.Evaluation` plus the decision rule and the residuals behind it.

    ``maps`` is the rule's decision map (segmentation map, gated for a two-stage rule), so
    ``predicted()`` is the rule's mask and the ORACLE is computed on the same map.
    """

    rule: rules.Rule = field(default_factory=rules.Rule)
    rule_source: str = ""
    tuning: pd.DataFrame | None = None
    """Every candidate rule scored on the tuning set (empty without one)."""
    region: dict[str, Any] = field(default_factory=dict)
    """:func:`adlib.pipelines.unet_rules.region_prf` of the prediction."""
    residual_contrast: float | None = None
    raw_maps: np.ndarray | None = None
    """(M, H, W) unfiltered squared residuals of the test set."""
    val_raw: np.ndarray | None = None


def evaluate_rule(method: str, rule: rules.Rule, raw: np.ndarray, val_raw: np.ndarray, data: Data,
                  cfg: dict, *, rule_source: str, n_boot: int = DEFAULT_N_BOOT) -> Evaluation:
    """One rule on the test residuals, thresholds from the validation residuals, via
    :func:`adlib.experiment.evaluate` (honest and ORACLE values, GUIDE metrics); ``n_boot``
    bootstrap resamples for its 95 % intervals (0: none, for analysis-only calls)."""
    d = rules.decide(rule, raw, val_raw, cfg["threshold_method"])
    gate = f"; two-stage (image {d.image_threshold.source})" if rule.two_stage else ""
    pix = thresholds.Threshold(d.pixel_threshold.value,
                               f"{d.pixel_threshold.source}; rule '{rule.name()}' {rule_source}{gate}")
    ev = experiment.evaluate(method, scores=d.scores, labels=data.test_labels,
                             defects=data.test_defects, paths=data.test_paths,
                             val_scores=d.val_scores, maps=d.maps, masks=data.test_masks,
                             val_maps=d.val_maps, pixel_thresholds={"chosen": pix}, n_boot=n_boot,
                             compare_rules=not rule.two_stage)  # gated maps mislead rules below the gate
    base = {f.name: getattr(ev, f.name) for f in fields(ev)}
    base["image_threshold"] = d.image_threshold  # the rule's image threshold (threshold_method)
    out = Evaluation(**base, rule=rule, rule_source=rule_source, raw_maps=raw, val_raw=val_raw,
                     residual_contrast=rules.residual_contrast(raw, data.test_masks))
    out.region = rules.region_prf(out.predicted(), data.test_masks)
    return out


def evaluate(trained: Trained, data: Data, cfg: dict, *, device: Any = "cpu",
             progress: bool = True) -> list[Evaluation]:
    """Residual maps, the rule choice (:func:`~adlib.pipelines.unet_rules.choose_rule`, never
    the test set), then the GUIDE metrics with honest and ORACLE thresholds (one Evaluation)."""
    model = trained.model
    raw = residual_maps(model, data.test, device, progress=progress)
    val_raw = residual_maps(model, data.val, device, progress=progress)
    tune_raw = (residual_maps(model, data.tune, device, progress=progress)
                if data.tune is not None and cfg["tune"] else None)
    rule, tuning, source = rules.choose_rule(val_raw, tune_raw, data.tune_masks, cfg)
    ev = evaluate_rule(trained.variant, rule, raw, val_raw, data, cfg, rule_source=source)
    ev.tuning = tuning
    return [ev]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save(evals: list[Evaluation], trained: Trained, data: Data, cfg: dict, *, results_dir: Any,
         profile: str, seed: int, run: str) -> list[Path]:
    """Write one results JSON + scores CSV + model bundle per evaluation (:func:`adlib.experiment.save`)."""
    from adlib.scoring.recon import unet_bundle

    paths = []
    for ev in evals:
        params = {
            **{k: _jsonable(v) for k, v in cfg.items()},
            "variant": trained.variant, "skips": list(MODEL_VARIANTS[trained.variant]["skips"]),
            "unit": data.unit, "n_train": len(data.train), "n_val": len(data.val),
            "n_test": len(data.test), "n_tune": 0 if data.tune is None else len(data.tune),
            "rule": ev.rule.name(), "rule_source": ev.rule_source,
            **{f"chosen_{k}": v for k, v in vars(ev.rule).items()},
            **ev.region, "residual_contrast": ev.residual_contrast,
        }
        paths.append(experiment.save(
            ev, results_dir=results_dir, notebook=NOTEBOOK, split=data.split,
            synthetic=data.synthetic, profile=profile, seed=seed, run=run,
            train_seconds=trained.train_seconds, params=params,
            bundle=unet_bundle(ev, trained, data, cfg, run)))
    return paths
