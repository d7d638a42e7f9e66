"""Experiment logic of notebook 02: UNet-like autoencoder on DAGM class 8 and RSDDs type I (seed 002).

The notebook calls, per dataset::

    data = load_data("dagm", data_root, "Class8", settings, seed)      # read + validate + hold out
    for variant in settings["variants"]:
        model, history = train_variant(variant, data, settings, ...)   # load_or_train
        ev = evaluate(model, data, settings, device)                    # maps, scores, thresholds
        save(ev, data, variant, ...)                                     # results JSON + scores CSV

Choices the seed leaves open (documented in the notebook):

* DAGM: train on defect-free ``Train`` images minus a held-out validation set (``val_fraction``),
  evaluate on ``Test``. The cpu profile trains on random ``crop`` x ``crop`` windows of the full
  512 x 512 images and predicts on full images (the network is fully convolutional), which keeps the
  pixel scale of the thin cracks that downscaling would blur away.
* RSDDs: the seed's 200 x 160 patch protocol (:func:`adlib.data.rsdd.rsdd_patches`); validation
  patches come from held-out *training strips*, never from test strips.
* Anomaly map: squared residual (seed Eq. 1). Image score = max of the residual smoothed with
  ``score_sigma`` (0 = unsmoothed). Segmentation map = the residual dilated by a ``seg_size`` x
  ``seg_size`` maximum filter (0 = the raw residual): a crack lights up only a 1-2 px line, the
  DAGM labels are ellipses tens of pixels wide, and the dilation spreads the line's peaks over
  that scale. Pixel threshold = ``pixel_quantile`` quantile of validation-normal map pixels
  (1.0 = their maximum); image threshold from validation-normal scores (``threshold_method``).
  ``two_stage``: pixels are marked only in images whose score passes the image threshold.
* Choosing that rule without test data (:func:`choose_rule`): for DAGM, the defective ``Train``
  images (``split.extra["train_defective"]``, never used for training and never test images) plus
  the validation normals form a small labelled *tuning set*; the rule with the best tuning-set
  pixel F1 (score sigma: best tuning-set image AUROC) is used on ``Test``. Without a tuning set
  (RSDDs) the a-priori defaults in :data:`_RULE_DEFAULTS` are used.
* Besides pixel F1: the labelled oracle (best pixel F1 on the test set) and a region-level F1
  (:func:`region_prf`: a ground-truth region counts as found when the predicted mask touches it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from adlib.models.unet_ae import VARIANTS, UNetAE

NOTEBOOK = "02_unet_autoencoder_dagm_rsdd"
DATASETS: tuple[str, ...] = ("dagm", "rsdd")
RSDD_CATEGORY = "type-I"

_RULE_DEFAULTS: dict[str, Any] = {
    "score_sigma": 0.0, "seg_size": 0, "pixel_quantile": 0.999, "two_stage": False,
}
"""A-priori decision rule, used where no labelled tuning set exists (RSDDs): the seed's plain
thresholded residual (no filtering; the image score is its unsmoothed maximum), with the pixel
threshold at the 0.999 quantile of validation-normal pixels (a 0.1 % false-positive rate on
normals) and the image threshold at the largest validation-normal score (``threshold_method``)."""

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "epochs": 1, "image_size": 64, "crop": None, "base_channels": 4, "batch_size": 8,
        "synthetic_size": "tiny", "val_fraction": 0.2, "threshold_method": "max",
        **_RULE_DEFAULTS, "tune": True, "tune_score_sigmas": (0.0, 1.0), "tune_seg_sizes": (0, 5),
        "tune_pixel_quantiles": (0.999, 1.0), "variants": ("unet-ae", "unet-ae-noskip"),
        "rsdd_patch": (80, 80), "rsdd_stride": None, "max_train": 32,
    },
    "cpu": {
        "epochs": 15, "image_size": None, "crop": 128, "base_channels": 16, "batch_size": 8,
        "synthetic_size": "default", "val_fraction": 0.1, "threshold_method": "max",
        **_RULE_DEFAULTS, "tune": True, "tune_score_sigmas": (0.0, 1.0, 2.0),
        "tune_seg_sizes": (0, 11, 21, 31, 41), "tune_pixel_quantiles": (0.99, 0.999, 0.9999, 1.0),
        "variants": ("unet-ae", "unet-ae-deepskip", "unet-ae-noskip"),
        "rsdd_patch": (200, 160), "rsdd_stride": None, "max_train": None,
    },
    "paper": {
        "epochs": 50, "image_size": None, "crop": None, "base_channels": 16, "batch_size": 8,
        "synthetic_size": "default", "val_fraction": 0.1, "threshold_method": "max",
        **_RULE_DEFAULTS, "tune": True, "tune_score_sigmas": (0.0, 1.0, 2.0),
        "tune_seg_sizes": (0, 11, 21, 31, 41), "tune_pixel_quantiles": (0.99, 0.999, 0.9999, 1.0),
        "variants": ("unet-ae", "unet-ae-deepskip", "unet-ae-noskip"),
        "rsdd_patch": (200, 160), "rsdd_stride": None, "max_train": None,
    },
}
"""Settings per profile. ``paper`` = the seed's 50 epochs of Adam on full images."""


class PipelineError(ValueError):
    """Bad notebook parameters (unknown dataset or variant, ...), raised before any training."""


@dataclass
class Data:
    """One dataset, decoded and split, ready for training and evaluation.

    Attributes:
        dataset, category: e.g. ``"dagm"``, ``"Class8"``.
        synthetic: True for the synthetic stand-in.
        root: folder the reader was given.
        train, val: (N, C, H, W) uint8 defect-free images (or patches).
        test: (M, C, H, W) uint8; ``test_labels`` (M,), ``test_masks`` (M, H, W) bool,
            ``test_defects`` and ``test_paths`` (M,) strings.
        unit: ``"image"`` or ``"patch"`` (what one test row is).
        summary: a line for the notebook.
        tune, tune_masks: labelled defective images that are neither training nor test data
            (DAGM: the defective ``Train`` images) for choosing the decision rule; None if none.
    """

    dataset: str
    category: str
    synthetic: bool
    root: Path
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

    @property
    def channels(self) -> int:
        """Image channels."""
        return int(self.train.shape[1])


@dataclass
class Evaluation:
    """Everything :func:`evaluate` measured for one trained model on one dataset."""

    maps: np.ndarray  # (M, H, W) segmentation maps (seg_size)
    raw_maps: np.ndarray  # (M, H, W) unsmoothed squared residuals
    scores: np.ndarray  # (M,) image scores
    val_maps: np.ndarray
    val_scores: np.ndarray
    recon_examples: np.ndarray  # (K, H, W) reconstructions of the first defective test items
    example_index: np.ndarray  # (K,) test indices of those examples
    metrics: dict[str, Any]
    pixel_threshold: Any
    image_threshold: Any
    image_prf: dict[str, float | None]
    oracle: dict[str, float | None]
    residual_contrast: float | None
    rule: Any = None  # the Rule used (chosen by choose_rule)
    rule_source: str = ""
    tuning: pd.DataFrame | None = None  # every candidate rule scored on the tuning set
    region: dict[str, Any] = field(default_factory=dict)  # region_prf of the prediction
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- parameters


def check_params(datasets: Any, variants: Any) -> tuple[list[str], list[str]]:
    """Validate the DATASETS and VARIANTS notebook parameters (before anything is loaded).

    Raises:
        PipelineError: naming the bad value and the allowed ones.
    """
    ds = [datasets] if isinstance(datasets, str) else list(datasets)
    vs = [variants] if isinstance(variants, str) else list(variants)
    bad_ds = [d for d in ds if d not in DATASETS]
    if bad_ds or not ds:
        raise PipelineError(f"DATASETS={datasets!r}: use a non-empty subset of {list(DATASETS)}.")
    bad_vs = [v for v in vs if v not in VARIANTS]
    if bad_vs or not vs:
        raise PipelineError(f"VARIANTS={variants!r}: use a non-empty subset of {sorted(VARIANTS)}.")
    return ds, vs


# --------------------------------------------------------------------------- data


def _ensure_synthetic(kind: str, category: str | None, size: str, seed: int) -> Path:
    from adlib.data.synthetic import ensure_synthetic

    return Path(ensure_synthetic(kind, category, size=size, seed=seed))


def _take(tensor: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    if n is None or len(tensor) <= n:
        return tensor
    idx = np.sort(np.random.default_rng(seed).permutation(len(tensor))[:n])
    return tensor[torch.from_numpy(idx)]


def load_dagm(root: str | Path | None, category: str, settings: dict, seed: int = 0,
              progress: bool = True) -> Data:
    """Read and validate a DAGM class; hold validation normals out of ``Train``.

    Args:
        root: folder holding ``<category>/`` (DAGM layout), or None for the synthetic stand-in.
        category: ``"Class8"`` (any DAGM class works).
        settings: the profile settings (``image_size``, ``val_fraction``, ``synthetic_size``,
            ``max_train``).
        seed: seed of the validation hold-out.
    """
    from adlib.data import read_dagm, validate_split
    from adlib.data.torchdata import ImageDataset, holdout

    synthetic = root is None
    if synthetic:
        root = _ensure_synthetic("dagm", category, settings["synthetic_size"], seed)
    split = read_dagm(root, category)
    validate_split(split, check_images=False, progress=progress)
    train_s, val_s = holdout(split.train, settings["val_fraction"], seed=seed)
    size = settings["image_size"]
    kw = {"image_size": size, "channels": 1, "progress": progress}
    train = ImageDataset(train_s, **kw).images_uint8()
    val = ImageDataset(val_s, **kw).images_uint8()
    test_ds = ImageDataset(split.test, with_masks=True, **kw)
    test = test_ds.images_uint8()
    masks = np.stack([test_ds[i]["mask"][0].numpy() > 0.5 for i in range(len(test_ds))])
    train = _take(train, settings.get("max_train"), seed)
    labels = test_ds.labels
    data = Data("dagm", category, synthetic, Path(root), train, val, test, labels, masks,
                [s.defect for s in split.test], [str(s.path) for s in split.test])
    tune_s = list(split.extra.get("train_defective", []))
    if tune_s:
        tune_ds = ImageDataset(tune_s, with_masks=True, **kw)
        data.tune = tune_ds.images_uint8()
        data.tune_masks = np.stack([tune_ds[i]["mask"][0].numpy() > 0.5 for i in range(len(tune_ds))])
    data.summary = (f"DAGM {category} ({'synthetic stand-in' if synthetic else root}): "
                    f"{len(train)} train / {len(val)} validation normals, {len(test)} test images "
                    f"({int(labels.sum())} defective), {len(tune_s)} defective Train images as "
                    f"tuning set, {tuple(test.shape[-2:])} px")
    return data


def load_rsdd(root: str | Path | None, settings: dict, seed: int = 0,
              progress: bool = True) -> Data:
    """RSDDs type I with the seed's 200 x 160 patch protocol; validation patches from held-out strips.

    Args:
        root: RSDDs root (holding ``Type-I RSDDs dataset/``), or None for the synthetic stand-in.
        settings: profile settings (``rsdd_patch``, ``rsdd_stride`` (None: no overlap, as in the
            seed), ``val_fraction``,
            ``synthetic_size``).
        seed: seed of the strip splits.
    """
    from adlib.data import read_rsdd, rsdd_patches, validate_split

    synthetic = root is None
    if synthetic:
        root = _ensure_synthetic("rsdd", None, settings["synthetic_size"], seed)
    split = read_rsdd(root)
    validate_split(split, check_images=False, progress=progress)
    stride = settings.get("rsdd_stride")
    ps = rsdd_patches(split, tuple(settings["rsdd_patch"]), stride=tuple(stride) if stride else None,
                      seed=seed, progress=progress)
    # Validation: every clean patch of a few whole training strips (never a test strip). With a
    # single usable training strip (tiny stand-ins), a share of its patches instead.
    rng = np.random.default_rng(seed)
    strips = np.unique(ps.train_source)
    if len(ps.train) < 2:
        raise PipelineError(f"RSDDs at {root}: {len(ps.train)} defect-free training patch(es) of "
                            f"{tuple(settings['rsdd_patch'])} px; need at least 2. Fix: use more "
                            "strips or a smaller rsdd_patch.")
    if len(strips) >= 2:
        n_val = min(max(1, round(settings["val_fraction"] * len(strips))), len(strips) - 1)
        is_val = np.isin(ps.train_source, rng.permutation(strips)[:n_val])
        how = f"{n_val} held-out training strips"
    else:
        n_val = min(max(1, round(settings["val_fraction"] * len(ps.train))), len(ps.train) - 1)
        is_val = np.zeros(len(ps.train), bool)
        is_val[rng.permutation(len(ps.train))[:n_val]] = True
        how = "patches of the only usable training strip"
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # noqa: E731
    train = _take(to_t(ps.train[~is_val]), settings.get("max_train"), seed)
    val = to_t(ps.train[is_val])
    test = to_t(ps.test)
    paths = [f"{ps.test_samples[s].path}#y{y}x{x}"
             for s, (y, x) in zip(ps.test_source, ps.test_coords, strict=True)]
    defects = [ps.test_samples[s].defect if lab else "good"
               for s, lab in zip(ps.test_source, ps.test_labels, strict=True)]
    data = Data("rsdd", RSDD_CATEGORY, synthetic, Path(root), train, val, test,
                ps.test_labels.astype(np.int64), ps.test_masks.astype(bool), defects, paths,
                unit="patch")
    data.summary = (f"RSDDs type I ({'synthetic stand-in' if synthetic else root}): "
                    f"{ps.summary()}; {len(train)} train / {len(val)} validation patches "
                    f"({how})")
    return data


def load_data(dataset: str, root: str | Path | None, category: str, settings: dict,
              seed: int = 0, progress: bool = True) -> Data:
    """Dispatch to :func:`load_dagm` or :func:`load_rsdd`."""
    if dataset == "dagm":
        return load_dagm(root, category, settings, seed, progress)
    if dataset == "rsdd":
        return load_rsdd(root, settings, seed, progress)
    raise PipelineError(f"Unknown dataset {dataset!r}; choose from {list(DATASETS)}.")


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


def build_model(variant: str, channels: int, settings: dict) -> UNetAE:
    """The named variant (:data:`adlib.models.unet_ae.VARIANTS`) at the profile's width."""
    return UNetAE.from_variant(variant, in_channels=channels, base_channels=settings["base_channels"])


def checkpoint_path(results_dir: str | Path, variant: str, data: Data) -> Path:
    """``<results_dir>/<notebook>/checkpoints/<variant>-<dataset>-<category>.pt``."""
    return (Path(results_dir) / NOTEBOOK / "checkpoints"
            / f"{variant}-{data.dataset}-{data.category}{'-synthetic' if data.synthetic else ''}.pt")


def train_variant(
    variant: str, data: Data, settings: dict, *, device: torch.device, results_dir: str | Path,
    seed: int = 0, force_train: bool = False, progress: bool = True,
) -> tuple[UNetAE, Any]:
    """Train (or load) one variant with MSE and Adam (default settings), as in the seed.

    Args:
        variant: ``"unet-ae"``, ``"unet-ae-deepskip"`` or ``"unet-ae-noskip"``.
        data: from :func:`load_data`.
        settings: profile settings (``epochs``, ``batch_size``, ``crop``, ``base_channels``).
        device: torch device.
        results_dir: checkpoints go under ``<results_dir>/<notebook>/checkpoints/``.
        seed: seeds the model initialisation, batch order and crops.
        force_train: retrain even if a matching checkpoint exists (the smoke profile does).

    Returns:
        ``(model in eval mode, History)``; ``history.train_seconds`` is the training time.
    """
    from adlib.data.torchdata import PatchDataset, make_loader
    from adlib.train import load_or_train, seed_everything

    seed_everything(seed)
    model = build_model(variant, data.channels, settings)
    opt = torch.optim.Adam(model.parameters())  # default settings (lr 1e-3), as in the seed
    loader = make_loader(PatchDataset(data.train.permute(0, 2, 3, 1).numpy()),
                         batch_size=settings["batch_size"], shuffle=True, seed=seed, num_workers=0)
    crop_gen = torch.Generator().manual_seed(seed)
    crop = settings.get("crop")
    mse = nn.MSELoss()

    def step(m: nn.Module, batch: dict) -> torch.Tensor:
        # crop where the batch already is (fit moved it to the device): no round trip to the host
        x = random_crop_batch(batch["image"], crop, crop_gen).to(next(m.parameters()).device)
        return mse(m(x), x)

    config = {"variant": variant, "dataset": data.dataset, "category": data.category,
              "synthetic": data.synthetic, "root": str(data.root), "n_train": len(data.train),
              "train_shape": list(data.train.shape[1:]), "seed": seed,
              **{k: settings[k] for k in ("base_channels", "batch_size", "crop", "image_size")}}
    history = load_or_train(
        model, loader, checkpoint_path=checkpoint_path(results_dir, variant, data), config=config,
        epochs=settings["epochs"], force_train=force_train, optimizer=opt, device=device,
        step_fn=step, progress=progress, desc=f"{variant}/{data.dataset}")
    model.to(device).eval()
    return model, history


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, device: torch.device,
                batch_size: int = 4, progress: bool = False) -> np.ndarray:
    """Reconstructions (N, C, H, W) float32 in [0, 1] of uint8 images (any size, full images)."""
    from tqdm.auto import tqdm

    model.eval()
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="reconstruct", disable=not progress,
                  leave=False):
        x = images[i:i + batch_size].to(device).float() / 255.0
        out.append(model(x).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:]), np.float32)


@torch.no_grad()
def residual_maps(model: nn.Module, images: torch.Tensor, device: torch.device,
                  batch_size: int = 4, progress: bool = False) -> np.ndarray:
    """Squared residual ``(X - AE(X))**2`` (seed Eq. 1), channel mean, (N, H, W) float32."""
    from tqdm.auto import tqdm

    from adlib.maps import residual_map

    model.eval()
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="residuals", disable=not progress,
                  leave=False):
        x = images[i:i + batch_size].to(device).float() / 255.0
        out.append(residual_map(x.cpu(), model(x).cpu(), kind="l2"))
    return np.concatenate(out) if out else np.zeros((0, *images.shape[-2:]), np.float32)


def smooth(maps: np.ndarray, sigma: float | None) -> np.ndarray:
    """Gaussian smoothing (``sigma`` in pixels; None or 0 = unchanged)."""
    from adlib.maps import gaussian_smooth

    return gaussian_smooth(maps, sigma) if sigma else maps


def residual_contrast(raw_maps: np.ndarray, masks: np.ndarray) -> float | None:
    """Mean residual on defect pixels divided by the mean on defect-free pixels (test set).

    About 1 means the residual carries no defect signal (e.g. an autoencoder that learned the
    identity through its skip connections); much larger is good. None without defect pixels.
    """
    defect = masks.astype(bool)
    if not defect.any() or defect.all():
        return None
    normal = float(raw_maps[~defect].mean())
    return float(raw_maps[defect].mean()) / max(normal, 1e-12)


@dataclass(frozen=True)
class Rule:
    """How residuals become decisions (see the module docstring).

    Attributes:
        score_sigma: Gaussian sigma of the image-score map (0 = raw residual).
        seg_size: maximum-filter window of the segmentation map (0 = raw residual).
        pixel_quantile: pixel threshold = this quantile of validation-normal map pixels (1.0 = max).
        two_stage: mark pixels only in images whose score passes the image threshold.
        seg_filter: ``"max"`` (dilation, window ``seg_size``) or ``"gauss"`` (Gaussian smoothing
            with sigma ``seg_size``, for comparison).
    """

    score_sigma: float = 0.0
    seg_size: int = 0
    pixel_quantile: float = 0.999
    two_stage: bool = False
    seg_filter: str = "max"

    @classmethod
    def from_settings(cls, settings: dict) -> Rule:
        """The profile's a-priori rule."""
        return cls(float(settings["score_sigma"]), int(settings["seg_size"]),
                   float(settings["pixel_quantile"]), bool(settings["two_stage"]))

    def name(self) -> str:
        """Short label, e.g. ``"max21 q0.999 2-stage"``."""
        seg = f"{self.seg_filter}{self.seg_size}" if self.seg_size else "raw"
        q = "max" if self.pixel_quantile >= 1.0 else f"q{self.pixel_quantile:g}"
        return f"{seg} {q}{' 2-stage' if self.two_stage else ''}"


def seg_map(raw: np.ndarray, size: int, kind: str = "max") -> np.ndarray:
    """Segmentation map: (N, H, W) residuals dilated by a ``size`` x ``size`` maximum filter.

    ``size`` 0 or 1 returns ``raw`` unchanged. A grey dilation keeps the height of the thin crack
    peaks (a Gaussian would average them into the texture noise) and widens them to ``size``.
    ``kind="gauss"`` smooths with a Gaussian of sigma ``size`` instead (for comparison).
    """
    from scipy.ndimage import maximum_filter

    if kind not in ("max", "gauss"):
        raise PipelineError(f"seg_map: kind={kind!r}; use 'max' or 'gauss'.")
    if size <= 1 and kind == "max" or size <= 0:
        return raw
    if kind == "gauss":
        return smooth(raw, float(size))
    return np.stack([maximum_filter(m, size=(int(size), int(size)), mode="reflect") for m in raw])


def score_of(raw: np.ndarray, sigma: float) -> np.ndarray:
    """Image scores: maximum of the residual smoothed with ``sigma`` (0 = unsmoothed)."""
    from adlib.maps import image_scores

    return np.asarray(image_scores(smooth(raw, sigma), "max"), dtype=np.float64)


def pixel_threshold(val_maps: np.ndarray, quantile: float) -> Any:
    """Pixel threshold from validation-normal maps only (``quantile`` 1.0 = their maximum)."""
    from adlib.thresholds import threshold_from_normal

    if quantile >= 1.0:
        return threshold_from_normal(val_maps, method="max")
    return threshold_from_normal(val_maps, method="quantile", q=quantile)


def predict_masks(maps: np.ndarray, pixel_t: float, scores: np.ndarray | None = None,
                  image_t: float | None = None) -> np.ndarray:
    """Boolean masks ``maps > pixel_t``; with ``scores``/``image_t`` (two-stage) only in images
    whose score exceeds ``image_t``."""
    pred = maps > float(pixel_t)
    if scores is not None and image_t is not None:
        pred &= (np.asarray(scores) > float(image_t))[:, None, None]
    return pred


def gate_maps(maps: np.ndarray, pixel_t: float, scores: np.ndarray, image_t: float) -> np.ndarray:
    """Maps whose ``> pixel_t`` pixels are exactly the two-stage prediction (values of images that
    fail the image threshold are capped at ``pixel_t``); lets the PRF metrics score a two-stage rule.
    """
    keep = (np.asarray(scores) > float(image_t))[:, None, None]
    return np.where(keep, maps, np.minimum(maps, np.float32(pixel_t)))


def region_prf(pred: np.ndarray, masks: np.ndarray) -> dict[str, float | int | None]:
    """Region-level detection precision / recall / F1 (8-connected regions).

    A ground-truth region (e.g. a DAGM ellipse) is *found* when at least one predicted pixel lies
    in it; a predicted region is *correct* when it touches a ground-truth region. Recall = found /
    ground-truth regions, precision = correct / predicted regions (over all images, defect-free
    ones included). This is our reading of how a detection F1 near the seed's 0.96 could arise;
    the seed does not define its F1.
    """
    from scipy.ndimage import label

    eight = np.ones((3, 3), int)
    n_gt = found = n_pred = correct = 0
    for p, g in zip(np.asarray(pred, bool), np.asarray(masks, bool), strict=True):
        lg, k = label(g, structure=eight)
        n_gt += k
        if k:
            found += len(np.unique(lg[p & (lg > 0)]))
        lp, k = label(p, structure=eight)
        n_pred += k
        if k:
            correct += len(np.unique(lp[g & (lp > 0)]))
    rec = found / n_gt if n_gt else None
    prec = correct / n_pred if n_pred else None
    f1 = (2 * prec * rec / (prec + rec) if prec is not None and rec is not None and prec + rec > 0
          else (0.0 if n_gt else None))
    return {"region_f1": f1, "region_precision": prec, "region_recall": rec,
            "n_gt_regions": n_gt, "n_pred_regions": n_pred}


def _rule_f1(rule: Rule, raw: np.ndarray, masks: np.ndarray, val_raw: np.ndarray,
             settings: dict, cache: dict) -> tuple[float, float, float]:
    """(pixel F1, pixel threshold, image threshold) of ``rule`` on labelled maps ``raw``/``masks``."""
    from adlib import metrics as M
    from adlib.thresholds import threshold_from_normal

    key = (rule.seg_size, rule.seg_filter)
    if key not in cache:
        cache[key] = (seg_map(raw, *key), seg_map(val_raw, *key))
    maps, vmaps = cache[key]
    t_pix = float(pixel_threshold(vmaps, rule.pixel_quantile))
    t_img = float(threshold_from_normal(score_of(val_raw, rule.score_sigma),
                                        method=settings["threshold_method"]))
    if rule.two_stage:
        maps = gate_maps(maps, t_pix, score_of(raw, rule.score_sigma), t_img)
    return float(M.pixel_prf(maps, masks, t_pix).f1), t_pix, t_img


def choose_rule(val_raw: np.ndarray, tune_raw: np.ndarray | None, tune_masks: np.ndarray | None,
                settings: dict) -> tuple[Rule, pd.DataFrame, str]:
    """Pick the decision rule WITHOUT test data.

    The tuning set is the validation normals (label 0, empty masks) plus ``tune_raw`` (residuals
    of labelled defective images that are neither training nor test images). First the score
    sigma with the best tuning-set image AUROC (ties: the smaller sigma), then the segmentation
    window / pixel quantile / two-stage flag with the best tuning-set pixel F1 (ties: the first in
    grid order). Thresholds always come from the validation normals.

    Returns:
        ``(rule, table of every candidate, source)``; with no tuning set (or ``settings["tune"]``
        False) the a-priori :meth:`Rule.from_settings` and an empty table.
    """
    from adlib import metrics as M

    default = Rule.from_settings(settings)
    if not settings.get("tune") or tune_raw is None or tune_masks is None or not len(tune_raw):
        return default, pd.DataFrame(), "a-priori default (no labelled tuning set)"
    raw = np.concatenate([val_raw, tune_raw])
    masks = np.concatenate([np.zeros(val_raw.shape, bool), np.asarray(tune_masks, bool)])
    labels = np.r_[np.zeros(len(val_raw), int), np.ones(len(tune_raw), int)]
    rows, best_auc, sigma = [], -1.0, float(settings["score_sigma"])
    for s in settings["tune_score_sigmas"]:
        auc = M.image_auroc(score_of(raw, s), labels)
        rows.append({"step": "image score", "score_sigma": s, "tune_image_auroc": auc})
        if auc is not None and auc > best_auc + 1e-9:
            best_auc, sigma = auc, float(s)
    cache: dict = {}
    best, best_f1 = default, -1.0
    for size in settings["tune_seg_sizes"]:
        for q in settings["tune_pixel_quantiles"]:
            for two in (False, True):
                rule = Rule(sigma, int(size), float(q), two)
                f1, t_pix, t_img = _rule_f1(rule, raw, masks, val_raw, settings, cache)
                rows.append({"step": "segmentation", "score_sigma": sigma, "rule": rule.name(),
                             "seg_size": int(size), "pixel_quantile": float(q), "two_stage": two,
                             "tune_pixel_f1": f1})
                if f1 > best_f1 + 1e-9:
                    best, best_f1 = rule, f1
        cache.clear()
    src = (f"tuning set: {len(tune_raw)} labelled defective images outside train/test + "
           f"{len(val_raw)} validation normals")
    return best, pd.DataFrame(rows), src


def evaluate(model: nn.Module, data: Data, settings: dict, device: torch.device,
             n_examples: int = 4, progress: bool = True) -> Evaluation:
    """Maps, image scores, validation thresholds, the GUIDE metrics, image F1 and the oracles.

    The decision rule is chosen by :func:`choose_rule` (tuning set, never the test set); both
    thresholds use the validation normals only. The oracle (best F1 on the test set) is computed
    for comparison and named ``oracle``.
    """
    from adlib import metrics as M
    from adlib.results import metrics_summary
    from adlib.thresholds import oracle_best_f1_threshold, threshold_from_normal

    raw = residual_maps(model, data.test, device, progress=progress)
    val_raw = residual_maps(model, data.val, device, progress=progress)
    tune_raw = (residual_maps(model, data.tune, device, progress=progress)
                if data.tune is not None and settings.get("tune") else None)
    rule, tuning, rule_source = choose_rule(val_raw, tune_raw, data.tune_masks, settings)
    maps = seg_map(raw, rule.seg_size, rule.seg_filter)
    val_maps = seg_map(val_raw, rule.seg_size, rule.seg_filter)
    scores, val_scores = score_of(raw, rule.score_sigma), score_of(val_raw, rule.score_sigma)
    pix_t = pixel_threshold(val_maps, rule.pixel_quantile)
    img_t = threshold_from_normal(val_scores, method=settings["threshold_method"])
    summary = metrics_summary(scores=scores, labels=data.test_labels, maps=maps,
                              masks=data.test_masks, threshold=pix_t, defects=data.test_defects)
    pred_maps = maps
    if rule.two_stage:
        pred_maps = gate_maps(maps, float(pix_t), scores, float(img_t))
        summary.update(M.pixel_prf(pred_maps, data.test_masks, float(pix_t)).as_dict("pixel_"))
        summary["per_defect"] = M.per_defect_prf(pred_maps, data.test_masks, data.test_defects,
                                                 float(pix_t))
    region = region_prf(pred_maps > float(pix_t), data.test_masks)
    img = M.image_prf(scores, data.test_labels, float(img_t)).as_dict("image_")
    oracle: dict[str, float | None] = {}
    if data.test_labels.any():
        o_img = oracle_best_f1_threshold(scores, data.test_labels)
        o_pix = oracle_best_f1_threshold(maps, data.test_masks)
        oracle = {"oracle_image_threshold": o_img.value,
                  "oracle_image_f1": M.image_prf(scores, data.test_labels, o_img.value).f1,
                  "oracle_pixel_threshold": o_pix.value,
                  "oracle_pixel_f1": M.pixel_prf(maps, data.test_masks, o_pix.value).f1}
    idx = np.flatnonzero(data.test_labels == 1)[:n_examples]
    recon = reconstruct(model, data.test[torch.from_numpy(idx)], device)[:, 0] if len(idx) else \
        np.zeros((0, *maps.shape[1:]), np.float32)
    return Evaluation(maps=maps, raw_maps=raw, scores=scores, val_maps=val_maps,
                      val_scores=val_scores, recon_examples=recon, example_index=idx,
                      metrics=summary, pixel_threshold=pix_t, image_threshold=img_t,
                      image_prf=img, oracle=oracle,
                      residual_contrast=residual_contrast(raw, data.test_masks),
                      rule=rule, rule_source=rule_source, tuning=tuning, region=region,
                      extra={"val_raw": val_raw})


def rule_table(ev: Evaluation, data: Data, settings: dict,
               rules: dict[str, Rule] | None = None) -> pd.DataFrame:
    """Every decision rule side by side on the test set (analysis of the choice, not tuning).

    For each rule: thresholds from validation normals exactly as in :func:`evaluate`, the test
    pixel F1, the region-level F1, the map's pixel AUROC and its labelled test-set oracle F1.
    Default rules: the seed's raw residual with the max and the 0.999-quantile threshold, a
    Gaussian-smoothed map (sigma 6, max: this notebook's earlier rule), the dilated map, the
    two-stage version, and the chosen one.
    """
    from adlib import metrics as M
    from adlib.thresholds import oracle_best_f1_threshold, threshold_from_normal

    if rules is None:
        size = ev.rule.seg_size or max(settings["tune_seg_sizes"])
        s = ev.rule.score_sigma
        chosen = "a-priori default" if ev.tuning is None or ev.tuning.empty else \
            "chosen on tuning set"
        rules = {"seed: raw residual, max of validation": Rule(s, 0, 1.0, False),
                 "raw residual, 0.999 quantile": Rule(s, 0, 0.999, False),
                 "gaussian sigma 6, max (earlier rule)": Rule(s, 6, 1.0, False, "gauss"),
                 f"dilated {size}, 0.999 quantile": Rule(s, size, 0.999, False),
                 f"dilated {size}, 0.999 quantile, two-stage": Rule(s, size, 0.999, True),
                 f"{chosen}: {ev.rule.name()}": ev.rule}
    val_raw, rows = ev.extra["val_raw"], []
    for label, r in rules.items():
        m, vm = seg_map(ev.raw_maps, r.seg_size, r.seg_filter), seg_map(val_raw, r.seg_size, r.seg_filter)
        sc, vs = score_of(ev.raw_maps, r.score_sigma), score_of(val_raw, r.score_sigma)
        t_pix = float(pixel_threshold(vm, r.pixel_quantile))
        t_img = float(threshold_from_normal(vs, method=settings["threshold_method"]))
        pm = gate_maps(m, t_pix, sc, t_img) if r.two_stage else m
        row = {"rule": label, **M.pixel_prf(pm, data.test_masks, t_pix).as_dict("pixel_"),
               **{k: v for k, v in region_prf(pm > t_pix, data.test_masks).items()
                  if k.startswith("region_")},
               "pixel_auroc": M.pixel_auroc(m, data.test_masks, exact=False)}
        if data.test_labels.any():
            o = oracle_best_f1_threshold(m, data.test_masks)
            row["oracle_pixel_f1"] = M.pixel_prf(m, data.test_masks, o.value).f1
        rows.append(row)
    return pd.DataFrame(rows)


def run_variant(
    variant: str, data: Data, settings: dict, *, device: torch.device, results_dir: str | Path,
    profile: str, seed: int = 0, force_train: bool = False, progress: bool = True,
) -> tuple[UNetAE, Any, Evaluation, Path]:
    """Train/load, evaluate and save one variant; returns ``(model, history, evaluation, json)``."""
    model, history = train_variant(variant, data, settings, device=device, results_dir=results_dir,
                                   seed=seed, force_train=force_train, progress=progress)
    t0 = time.perf_counter()
    ev = evaluate(model, data, settings, device, progress=progress)
    ev.extra["eval_seconds"] = time.perf_counter() - t0
    path = save(ev, data, variant, settings, history, results_dir=results_dir, profile=profile,
                seed=seed)
    return model, history, ev, path


def save(ev: Evaluation, data: Data, variant: str, settings: dict, history: Any, *,
         results_dir: str | Path, profile: str, seed: int) -> Path:
    """Write ``<variant>-<dataset>-<category>.json`` and its scores CSV (GUIDE section 2)."""
    from adlib.results import save_results

    scores = pd.DataFrame({"path": data.test_paths, "label": data.test_labels.astype(int),
                           "defect": data.test_defects, "score": ev.scores})
    params = {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "variant": variant, "skips": list(VARIANTS[variant]["skips"]), "unit": data.unit,
        "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
        "image_threshold": float(ev.image_threshold), "image_threshold_source": ev.image_threshold.source,
        **ev.image_prf, **ev.oracle, **ev.region,
        "rule": ev.rule.name(), "rule_source": ev.rule_source,
        "chosen_score_sigma": ev.rule.score_sigma, "chosen_seg_size": ev.rule.seg_size,
        "chosen_pixel_quantile": ev.rule.pixel_quantile, "chosen_two_stage": ev.rule.two_stage,
        "residual_contrast": ev.residual_contrast,
        "eval_seconds": ev.extra.get("eval_seconds"),
        "trained_now": bool(getattr(history, "trained", True)),
    }
    return save_results(
        results_dir, notebook=NOTEBOOK, method=variant, dataset=data.dataset,
        category=data.category, synthetic=data.synthetic, profile=profile, seed=seed,
        metrics=ev.metrics, scores=scores, threshold=float(ev.pixel_threshold),
        threshold_source=ev.pixel_threshold.source + (
            f"; two-stage (image {ev.image_threshold.source})" if ev.rule.two_stage else ""),
        train_seconds=float(getattr(history, "train_seconds", 0.0) or 0.0), params=params)


def comparison_table(rows: list[dict]) -> pd.DataFrame:
    """Our numbers next to the seed's Table 1 F1 (``rows``: one dict per dataset and variant).

    Each row needs ``dataset, method, image_auroc, image_f1, pixel_f1, pixel_auroc, aupro``.
    """
    from adlib.published import published_table

    pub = published_table(seed="002")
    seed_f1 = {r.dataset: r.value for r in pub.itertuples() if r.metric == "f1"}
    df = pd.DataFrame(rows)
    df.insert(2, "seed_table1_f1", df["dataset"].map(seed_f1))
    return df
