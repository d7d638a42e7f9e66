"""Notebook 01 pipeline: the seed-000 convolutional autoencoder (L2 and SSIM variants).

The notebook calls, in order: :func:`load_data` (read + validate + hold out defect-free
validation images) -> :func:`train_variant` (``load_or_train``) -> :func:`evaluate` (residual
maps, validation threshold, metrics) -> :func:`save` (results files). Studies:
:func:`threshold_study` (seed's tau = 0.1 / 0.2 / 0.7 and the full P/R/F1 curve) and
:func:`latent_study` (several latent sizes).

Residual scale (what tau means):

* ``conv-ae-l2``: the map is :func:`adlib.maps.residual_map` ``kind="l2"``, the squared colour
  difference averaged over channels, in ``[0, 1]`` for images in ``[0, 1]``, lightly smoothed.
  The seed's tau values are read on the root of that map, the RMS colour difference:
  ``tau = 0.2`` means "the reconstruction is off by 20 % of the full intensity range", i.e. the
  squared map is thresholded at ``tau ** 2``. Squaring is monotonic, so this only renames the
  thresholds; every metric is unchanged.
* ``conv-ae-ssim``: the map is ``1 - SSIM`` (11x11 Gaussian window), already in ``[0, 1]`` in
  practice: ``tau = 0.2`` means "local structural similarity below 0.8".
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from adlib import maps as M
from adlib import metrics as MET
from adlib import results as R
from adlib import thresholds as T
from adlib.data.mvtec import read_mvtec
from adlib.data.orientation import DEFAULT_TOLERANCE, orientation_free, orientation_spread
from adlib.data.torchdata import ImageDataset, RandomAugment, Repeated, holdout, make_loader
from adlib.data.types import DataError, Split
from adlib.data.validate import validate_split
from adlib.models.conv_ae import ConvAutoencoder
from adlib.train import History, load_or_train

NOTEBOOK = "01_hazelnut_autoencoder"
METHODS: dict[str, str] = {"l2": "conv-ae-l2", "ssim": "conv-ae-ssim"}
SEED_TAUS: tuple[float, ...] = (0.1, 0.2, 0.7)
"""The thresholds shown in the seed's Figures 13-14 (on the scale described in the module doc)."""

Loss = Literal["l2", "ssim"]

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "epochs": 1, "image_size": 64, "latent_dim": 500, "batch_size": 8, "lr": 1e-3,
        "augment_factor": 2, "augment": "auto", "noise_std": 0.02, "val_fraction": 0.25, "synthetic_size": "tiny",
        "ssim_channels": 1, "threshold_rule": "region", "min_defect_area": 0.002, "region_q": 0.9,
        "threshold_q": 0.999,
        "image_threshold_q": 0.95, "score": "max", "latent_sizes": [50, 500], "latent_epochs": 1,
        "monitor_every": 1,
    },
    "cpu": {
        "epochs": 20, "image_size": 64, "latent_dim": 500, "batch_size": 16, "lr": 1e-3,
        "augment_factor": 5, "augment": "auto", "noise_std": 0.02, "val_fraction": 0.1, "synthetic_size": "default",
        "ssim_channels": 1, "threshold_rule": "region", "min_defect_area": 0.002, "region_q": 0.9,
        "threshold_q": 0.999,
        "image_threshold_q": 0.95, "score": "max", "latent_sizes": [50, 100, 500, 1000],
        "latent_epochs": 5, "monitor_every": 4,
    },
    "paper": {
        "epochs": 1000, "image_size": 256, "latent_dim": 500, "batch_size": 32, "lr": 1e-3,
        "augment_factor": 5, "augment": "auto", "noise_std": 0.02, "val_fraction": 0.1, "synthetic_size": "default",
        "ssim_channels": 1, "threshold_rule": "region", "min_defect_area": 0.002, "region_q": 0.9,
        "threshold_q": 0.999,
        "image_threshold_q": 0.95, "score": "max", "latent_sizes": [50, 100, 500, 1000],
        "latent_epochs": 100, "monitor_every": 10,
    },
}
"""Per-profile settings; ``epochs`` and ``image_size`` can be overridden by the notebook."""


class PipelineError(ValueError):
    """A setting or input that the notebook-01 pipeline cannot use."""


NO_FLIP: frozenset[str] = frozenset({"metal_nut"})
"""Categories where a mirror image is itself a defect (metal_nut has a ``flip`` defect type):
prior knowledge from the dataset's description, not something the training images can show."""


def augmentation(
    category: str, mode: str = "auto", noise_std: float = 0.02,
    spread: dict[str, float] | None = None, tolerance: float = DEFAULT_TOLERANCE,
) -> RandomAugment:
    """The training augmentation for a category.

    Args:
        category: dataset category.
        mode: ``"seed"``: rotations by 90 degrees, flips and Gaussian noise (seed 000, hazelnut);
            ``"noise"``: Gaussian noise only; ``"auto"``: each geometric transform only where the
            defect-free training images show it is harmless (``spread`` from
            :func:`adlib.data.orientation.orientation_spread`; never flips for :data:`NO_FLIP`).
            On aligned objects (bottle, transistor, cable, ...) rotating or mirroring a normal
            image makes images no normal sample looks like, and can create what the test set
            calls a defect (misplaced, swapped, flipped parts).
        noise_std: standard deviation of the added noise (pixels in [0, 1]).
        spread: the training images' orientation check (needed for ``"auto"``).
        tolerance: largest distance ratio still called orientation-free.
    """
    if mode not in ("auto", "seed", "noise"):
        raise PipelineError(f"AUGMENT={mode!r}: expected 'auto', 'seed' or 'noise'.")
    no_flip = category in NO_FLIP
    if mode == "noise":
        return RandomAugment(hflip=0.0, vflip=0.0, rot90=False, noise_std=noise_std)
    if mode == "seed":
        flip = 0.0 if no_flip else 0.5
        return RandomAugment(hflip=flip, vflip=flip, rot90=True, noise_std=noise_std)
    if spread is None:
        raise PipelineError("AUGMENT='auto' needs the orientation check of the training images "
                            "(spread=orientation_spread(train_images)).")
    free = orientation_free(spread, tolerance)
    return RandomAugment(
        hflip=0.5 if free["hflip"] and not no_flip else 0.0,
        vflip=0.5 if free["vflip"] and not no_flip else 0.0,
        rot90=free["rot90"] and free["rot180"], noise_std=noise_std,
    )


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """Everything the notebook needs about its data (images decoded once, resized)."""

    split: Split
    synthetic: bool
    image_size: int
    channels: int
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    augment: RandomAugment
    augment_factor: int
    orientation: dict[str, float] = field(default_factory=dict)
    """The training images' orientation check (:func:`adlib.data.orientation.orientation_spread`)."""
    gray: Data | None = None
    """The same images converted to grey (the SSIM variant's input, ``cfg["ssim_channels"] = 1``)."""

    def for_loss(self, loss: str) -> Data:
        """The data a variant works on: the grey copy for ``"ssim"`` when one was built."""
        return self.gray if loss == "ssim" and self.gray is not None else self

    @property
    def has_masks(self) -> bool:
        """True when the test set has ground-truth masks (pixel metrics possible)."""
        return self.split.has_masks

    @property
    def test_labels(self) -> np.ndarray:
        """0/1 labels of the test images."""
        return self.test.labels

    @property
    def test_defects(self) -> list[str]:
        """Defect type per test image (``"good"`` for defect-free)."""
        return [s.defect for s in self.test.samples]

    def test_masks(self) -> np.ndarray | None:
        """(N, H, W) bool ground truth at the working size, or None without masks."""
        if not self.has_masks:
            return None
        return np.stack([self.test[i]["mask"][0].numpy() > 0.5 for i in range(len(self.test))])



def load_data(
    data_root: str | Path | None,
    category: str,
    cfg: dict[str, Any],
    seed: int = 0,
    progress: bool = True,
) -> Data:
    """Read an MVTec-layout category (synthetic stand-in when ``data_root`` is None), validate it,
    hold out defect-free validation images and decode everything once at ``cfg["image_size"]``.

    Raises:
        DataError: missing or malformed data (from the reader / validation).
        PipelineError: unusable settings (image size, too few training images).
    """
    size = int(cfg["image_size"])
    threshold_rule(cfg)  # a bad setting fails here, before any training
    try:
        ConvAutoencoder(latent_dim=1, image_size=size)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    synthetic = data_root is None
    if synthetic:
        from adlib.data.synthetic import ensure_synthetic

        root = ensure_synthetic("mvtec", category, size=cfg["synthetic_size"], seed=0, progress=progress)
    else:
        root = Path(data_root)
    split = read_mvtec(root, category)
    report = validate_split(split, check_images=True, keep_arrays=True, progress=progress)
    channels = int(cfg.get("channels") or report.channels or 3)
    train, val = holdout(split.train, cfg["val_fraction"], seed=seed)
    if len(train) < 2 or not val:
        raise PipelineError(
            f"{root}/{category}: {len(split.train)} training images are too few to hold out a "
            "defect-free validation set; add images or lower val_fraction."
        )
    kw = {"image_size": size, "channels": channels, "decoded": report, "progress": progress}
    train_ds = ImageDataset(train, seed=seed, **kw)
    spread = orientation_spread(train_ds.images_uint8())
    augment = augmentation(category, cfg.get("augment", "auto"), cfg["noise_std"], spread)
    train_ds.augment = augment

    def build(channel_count: int, train_set: ImageDataset) -> Data:
        k = {**kw, "channels": channel_count}
        return Data(
            split=split, synthetic=synthetic, image_size=size, channels=channel_count,
            train=train_set, val=ImageDataset(val, **k),
            test=ImageDataset(split.test, with_masks=split.has_masks, **k),
            augment=augment, augment_factor=int(cfg["augment_factor"]), orientation=spread,
        )

    data = build(channels, train_ds)
    if int(cfg.get("ssim_channels") or channels) == 1 and channels != 1:
        data.gray = build(1, ImageDataset(train, seed=seed, augment=augment, **{**kw, "channels": 1}))
    return data


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


# --------------------------------------------------------------------------- model and training


def loss_function(loss: Loss, window: int = 11):
    """The training loss ``fn(recon, x)``: MSE for ``"l2"``, ``1 - mean SSIM`` for ``"ssim"``."""
    if loss == "l2":
        return F.mse_loss
    if loss == "ssim":
        return lambda recon, x: M.ssim_loss(recon, x, window)
    raise PipelineError(f"Unknown loss {loss!r}: expected 'l2' or 'ssim'.")


@torch.no_grad()
def reconstruct(
    model: torch.nn.Module, dataset: Dataset, device: torch.device | str = "cpu", batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and reconstructions of a whole (non-augmented) dataset, ``(N, C, H, W)`` in ``[0, 1]``.

    Reconstructions are clipped to ``[0, 1]`` (the decoder's output is linear).
    """
    was_training = model.training
    model.eval()
    xs, rs = [], []
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        x = batch["image"].to(device)
        xs.append(x.cpu())
        rs.append(model(x).clamp(0, 1).cpu())
    model.train(was_training)
    return torch.cat(xs).numpy(), torch.cat(rs).numpy()


def smooth_sigma(image_size: int) -> float:
    """Gaussian smoothing of residual maps: 1 pixel at 128 px, scaled with the image size."""
    return max(0.5, image_size / 128)


def anomaly_maps(x: np.ndarray, recon: np.ndarray, loss: Loss) -> np.ndarray:
    """Residual maps (N, H, W) on the variant's scale: squared colour difference (``l2``,
    compare with ``tau ** 2``) or ``1 - SSIM`` (``ssim``), smoothed lightly."""
    kind = "l2" if loss == "l2" else "ssim"
    return M.residual_map(x, recon, kind=kind, smooth_sigma=smooth_sigma(x.shape[-1]))


def to_map_scale(tau: float | np.ndarray, loss: Loss) -> float | np.ndarray:
    """A tau on the display scale (RMS colour difference / 1 - SSIM) -> the map's own scale."""
    return np.square(tau) if loss == "l2" else tau


def from_map_scale(value: float | np.ndarray, loss: Loss) -> float | np.ndarray:
    """Inverse of :func:`to_map_scale`."""
    return np.sqrt(np.maximum(value, 0)) if loss == "l2" else value


THRESHOLD_RULES: tuple[str, ...] = ("region", "quantile")
"""Validation-only pixel-threshold rules (see :func:`validation_thresholds`)."""


def min_area_pixels(cfg: dict[str, Any], image_size: int) -> int:
    """The minimum defect area of the region rule in pixels at the working size (at least 2)."""
    return max(2, round(float(cfg["min_defect_area"]) * image_size * image_size))


def validation_thresholds(val_maps: np.ndarray, cfg: dict[str, Any]) -> dict[str, T.Threshold]:
    """Both pixel thresholds from the defect-free validation maps only.

    * ``"region"`` (after the MVTec AD paper): the lowest threshold at which no validation map
      has a connected region of at least ``min_defect_area`` (a fraction of the image area);
      with ``region_q < 1`` the ``region_q``-quantile of the per-image thresholds, so that one
      unusual normal image among a dozen does not decide alone;
    * ``"quantile"``: the ``threshold_q``-quantile of all validation pixels.

    ``cfg["threshold_rule"]`` names the one used for the results (:func:`validation_threshold`).
    """
    return {
        "region": T.threshold_from_normal_regions(
            val_maps, min_area=min_area_pixels(cfg, val_maps.shape[-1]), q=float(cfg["region_q"])),
        "quantile": T.threshold_from_normal(val_maps, method="quantile", q=float(cfg["threshold_q"])),
    }


def validation_threshold(val_maps: np.ndarray, cfg: dict[str, Any]) -> T.Threshold:
    """The pixel threshold the results use: rule ``cfg["threshold_rule"]`` of
    :func:`validation_thresholds`."""
    return validation_thresholds(val_maps, cfg)[threshold_rule(cfg)]


def threshold_rule(cfg: dict[str, Any]) -> str:
    """``cfg["threshold_rule"]``, checked against :data:`THRESHOLD_RULES`."""
    rule = cfg.get("threshold_rule", "region")
    if rule not in THRESHOLD_RULES:
        raise PipelineError(f"threshold_rule={rule!r}: expected one of {THRESHOLD_RULES}.")
    return rule


def image_threshold(val_scores: np.ndarray, q: float) -> T.Threshold:
    """Image-score threshold: the ``q``-quantile of the defect-free validation images' scores
    (linear interpolation; with about 12 validation images, 0.95 lies between the two largest)."""
    return T.threshold_from_normal(np.asarray(val_scores, dtype=np.float64), method="quantile", q=q)


def threshold_params(ev: Evaluation) -> dict[str, Any]:
    """Honest and ORACLE thresholds for the results ``params`` (None where not computable).

    Keys: ``image_threshold``/``image_threshold_source`` (defect-free validation scores),
    ``oracle_image_threshold``/``oracle_image_f1`` (best image F1 on the test set) and
    ``oracle_pixel_threshold``/``oracle_pixel_f1`` (best pixel F1 on the test masks).
    """
    out: dict[str, Any] = {
        "image_threshold": ev.image_threshold.value if ev.image_threshold is not None else None,
        "image_threshold_source": ev.image_threshold.source if ev.image_threshold is not None else None,
        "oracle_image_threshold": None, "oracle_image_f1": None,
        "oracle_pixel_threshold": None, "oracle_pixel_f1": None,
    }
    if ev.oracle_image is not None:
        out["oracle_image_threshold"] = ev.oracle_image.value
        out["oracle_image_f1"] = MET.image_prf(ev.scores, ev.labels, ev.oracle_image.value).f1
    if ev.oracle is not None:
        out["oracle_pixel_threshold"] = ev.oracle.value
        out["oracle_pixel_f1"] = ev.oracle_per_defect["all"]["pixel_f1"]
    return out


@dataclass
class Monitor:
    """Seed Figs. 6-7: per-defect F1 on the TEST set during training, for monitoring only.

    Called by ``fit`` after each epoch (``on_epoch_end``); it writes ``monitor_f1_<defect>``
    (pixel F1 at that epoch's validation threshold) or, without masks,
    ``monitor_auroc_<defect>`` (image AUROC of that defect type vs good) into the epoch row of
    the history. Nothing is decided from these numbers: the threshold comes from validation
    data, and training always runs for the configured number of epochs.
    """

    model: torch.nn.Module
    data: Data
    loss: Loss
    cfg: dict[str, Any]
    every: int
    device: torch.device | str = "cpu"
    score: str = "max"

    def __call__(self, epoch: int, history: History) -> None:
        last = epoch + 1
        if self.every <= 0 or (last % self.every and last != self._epochs):
            return None
        maps_val = anomaly_maps(*reconstruct(self.model, self.data.val, self.device), self.loss)
        maps_test = anomaly_maps(*reconstruct(self.model, self.data.test, self.device), self.loss)
        defects = np.array(self.data.test_defects)
        row = history.epochs[-1]
        if self.data.has_masks:
            tau = validation_threshold(maps_val, self.cfg)
            per = MET.per_defect_prf(maps_test, self.data.test_masks(), defects, tau.value)
            for name, vals in per.items():
                row[f"monitor_f1_{name}"] = float(vals["pixel_f1"] or 0.0)
        else:
            scores = M.image_scores(maps_test, self.score)
            for name in sorted(set(defects) - {"good"}):
                sel = (defects == name) | (defects == "good")
                auc = MET.image_auroc(scores[sel], self.data.test_labels[sel])
                row[f"monitor_auroc_{name}"] = float(auc) if auc is not None else float("nan")
        return None

    _epochs: int = field(default=0, repr=False)


@dataclass
class Trained:
    """A trained variant: model, history, seconds of training (0 if loaded) and checkpoint."""

    model: ConvAutoencoder
    history: History
    loss: Loss
    latent_dim: int
    train_seconds: float
    checkpoint: Path


def train_variant(
    data: Data,
    cfg: dict[str, Any],
    loss: Loss,
    *,
    results_dir: str | Path,
    device: torch.device | str = "cpu",
    seed: int = 0,
    latent_dim: int | None = None,
    epochs: int | None = None,
    force_train: bool = False,
    monitor: bool = True,
    progress: bool = True,
) -> Trained:
    """Train (or load) one autoencoder with ``adlib.train.load_or_train``.

    Checkpoints: ``<results_dir>/01_hazelnut_autoencoder/checkpoints/<variant>.pt``.
    """
    data = data.for_loss(loss)
    latent = int(latent_dim if latent_dim is not None else cfg["latent_dim"])
    n_epochs = int(epochs if epochs is not None else cfg["epochs"])
    torch.manual_seed(seed)
    model = ConvAutoencoder(latent_dim=latent, image_size=data.image_size, channels=data.channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    loader = make_loader(Repeated(data.train, data.augment_factor), batch_size=cfg["batch_size"],
                         shuffle=True, seed=seed, drop_last=len(data.train) * data.augment_factor
                         > cfg["batch_size"])
    loss_fn = loss_function(loss)
    val_x = torch.stack([data.val[i]["image"] for i in range(len(data.val))])

    def val_fn(m: torch.nn.Module) -> dict[str, float]:
        x = val_x.to(next(m.parameters()).device)
        return {"loss": float(loss_fn(m(x), x))}

    callback = None
    if monitor:
        callback = Monitor(model, data, loss, cfg, int(cfg["monitor_every"]), device,
                           cfg["score"])
        callback._epochs = n_epochs
    tag = (f"{METHODS[loss]}-{data.split.dataset}-{data.split.category}-z{latent}-s{data.image_size}"
           f"-e{n_epochs}{'-gray' if data.channels == 1 else ''}{'' if monitor else '-nomonitor'}")
    ckpt = Path(results_dir) / NOTEBOOK / "checkpoints" / f"{tag}.pt"
    config = {
        "loss": loss, "latent_dim": latent, "image_size": data.image_size, "seed": seed,
        "channels": data.channels, "root": str(data.split.root), "category": data.split.category,
        "n_train": len(data.train), "monitor": monitor,
        **{k: cfg[k] for k in ("batch_size", "lr", "augment_factor", "noise_std", "val_fraction")},
        "augment": repr(data.augment),
    }
    start = time.perf_counter()
    history = load_or_train(
        model, loader, checkpoint_path=ckpt, config=config, epochs=n_epochs,
        force_train=force_train, optimizer=optimizer, device=device, loss_fn=loss_fn,
        val_fn=val_fn, on_epoch_end=callback, progress=progress, desc=tag,
    )
    seconds = history.train_seconds if not history.trained else time.perf_counter() - start
    model.eval()
    return Trained(model, history, loss, latent, float(seconds), ckpt)


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """Maps, scores, thresholds and metrics of one trained variant on the test set."""

    method: str
    loss: Loss
    x: np.ndarray
    recon: np.ndarray
    maps: np.ndarray
    val_maps: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    defects: list[str]
    masks: np.ndarray | None
    threshold: T.Threshold
    oracle: T.Threshold | None
    metrics: dict[str, Any]
    oracle_per_defect: dict[str, dict[str, float | None]]
    paths: list[str]
    image_threshold: T.Threshold | None = None
    """Image-score threshold from the defect-free validation images (see :func:`image_threshold`)."""
    oracle_image: T.Threshold | None = None
    """ORACLE: best-F1 image threshold on the test set (None without both classes)."""
    honest_thresholds: dict[str, T.Threshold] = field(default_factory=dict)
    """Every validation-only pixel threshold (:func:`validation_thresholds`); ``threshold`` is one."""

    def scores_frame(self) -> pd.DataFrame:
        """One row per test image: ``path, label, defect, score`` (GUIDE section 2)."""
        return pd.DataFrame({"path": self.paths, "label": self.labels, "defect": self.defects,
                             "score": self.scores})

    def predicted(self, tau_map: float | None = None) -> np.ndarray:
        """Predicted defect pixels ``map > tau`` (default: the validation threshold)."""
        return self.maps > (self.threshold.value if tau_map is None else tau_map)


def evaluate(
    trained: Trained, data: Data, cfg: dict[str, Any], device: torch.device | str = "cpu"
) -> Evaluation:
    """Residual maps -> image scores, validation threshold, oracle, and the GUIDE metrics."""
    loss = trained.loss
    data = data.for_loss(loss)
    x, recon = reconstruct(trained.model, data.test, device)
    maps = anomaly_maps(x, recon, loss)
    val_maps = anomaly_maps(*reconstruct(trained.model, data.val, device), loss)
    scores = M.image_scores(maps, cfg["score"])
    labels = data.test_labels
    defects = data.test_defects
    masks = data.test_masks()
    honest = validation_thresholds(val_maps, cfg)  # both rules, computed once
    tau = honest[threshold_rule(cfg)]
    img_tau = image_threshold(M.image_scores(val_maps, cfg["score"]), cfg["image_threshold_q"])
    oracle_img = (T.oracle_best_f1_threshold(scores, labels)
                  if len(set(np.asarray(labels).tolist())) == 2 else None)
    summary = R.metrics_summary(scores=scores, labels=labels, maps=maps, masks=masks,
                                threshold=tau if masks is not None else None, defects=defects)
    oracle, oracle_per = None, {}
    if masks is not None and masks.any():
        oracle = T.oracle_best_f1_threshold(maps, masks)
        oracle_per = MET.per_defect_prf(maps, masks, defects, oracle.value)
        oracle_per["all"] = MET.pixel_prf(maps, masks, oracle.value).as_dict("pixel_")
    return Evaluation(
        method=METHODS[loss], loss=loss, x=x, recon=recon, maps=maps, val_maps=val_maps,
        scores=scores, labels=labels, defects=defects, masks=masks, threshold=tau, oracle=oracle,
        metrics=summary, oracle_per_defect=oracle_per, paths=[str(s.path) for s in data.test.samples],
        image_threshold=img_tau, oracle_image=oracle_img, honest_thresholds=honest,
    )


def per_defect_table(ev: Evaluation) -> pd.DataFrame:
    """Pixel P/R/F1 per defect type: ours at the validation threshold, the oracle, and the seed.

    The seed's rows (``adlib.published``) are the authors' numbers on real MVTec hazelnut at
    256 px after 1000 epochs with a hand-picked tau; ours are on the data of this run.
    """
    from adlib.published import published_table

    rows = []
    primary = ev.threshold.source.split(":")[-1]
    others = {}
    if ev.masks is not None:
        others = {t.source.split(":")[-1]: MET.per_defect_prf(ev.maps, ev.masks, ev.defects, t.value)
                  for t in ev.honest_thresholds.values() if t.source != ev.threshold.source}
    for defect, vals in ev.metrics.get("per_defect", {}).items():
        rows.append({"defect": defect, "source": f"{ev.method} @ validation {primary} (used)", **vals})
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
    if not rows:
        return pd.DataFrame(columns=["defect", "source", "pixel_precision", "pixel_recall", "pixel_f1"])
    df = pd.DataFrame(rows)
    cols = ["defect", "source", "pixel_precision", "pixel_recall", "pixel_f1"]
    return df[cols].sort_values(["defect", "source"]).reset_index(drop=True)


def _first_of_each(defects: Sequence[str], per_defect: int) -> list[int]:
    out: list[int] = []
    for name in sorted(set(defects) - {"good"}) + ["good"]:
        out += [i for i, d in enumerate(defects) if d == name][:per_defect]
    return out


def examples(ev: Evaluation, per_defect: int = 1) -> list[int]:
    """Indices of test images to show: the first ``per_defect`` of each defect type, then a good one."""
    return _first_of_each(ev.defects, per_defect)


def examples_for(data: Data, per_defect: int = 1) -> list[int]:
    """Like :func:`examples`, from the data (before any evaluation)."""
    return _first_of_each(data.test_defects, per_defect)


def result_figure(ev: Evaluation, idx: Sequence[int] | None = None, tau_map: float | None = None):
    """Seed's figure per defect type: original, output, residual, predicted pixels, ground truth."""
    from adlib import viz

    idx = list(idx) if idx is not None else examples(ev)
    pred = ev.predicted(tau_map)
    gts = [ev.masks[i] if ev.masks is not None else None for i in idx]
    titles = [f"{ev.defects[i]} (score {ev.scores[i]:.3g})" for i in idx]
    return viz.result_grid(ev.x[idx], ev.recon[idx], ev.maps[idx], pred[idx],
                           gts if ev.masks is not None else None, titles=titles, max_rows=None)


# --------------------------------------------------------------------------- threshold study


def threshold_study(ev: Evaluation, taus: Sequence[float] = SEED_TAUS, n: int = 80) -> dict[str, Any]:
    """P/R/F1 at the seed's taus and along a full tau grid (taus on the display scale).

    Returns:
        ``{"at_taus": DataFrame, "curve": DataFrame, "marks": {name: tau}}``; the curve's
        ``threshold`` column is on the display scale (RMS difference for L2, 1 - SSIM for SSIM).
    """
    if ev.masks is None:
        raise PipelineError("The threshold study needs ground-truth masks; this dataset has none.")
    hi = float(from_map_scale(float(ev.maps.max()), ev.loss))
    grid = np.unique(np.concatenate([np.linspace(0.0, max(hi, max(taus)), n), list(taus)]))
    curve = MET.prf_curve(ev.maps, ev.masks, to_map_scale(grid, ev.loss))
    curve["threshold"] = grid
    at = MET.prf_curve(ev.maps, ev.masks, to_map_scale(np.asarray(taus, float), ev.loss))
    at.insert(0, "tau", list(taus))
    at["predicted_pixel_share"] = (at["tp"] + at["fp"]) / ev.masks.size
    marks = {f"validation {t.source.split(':')[-1]}": float(from_map_scale(t.value, ev.loss))
             for t in (ev.honest_thresholds.values() or [ev.threshold])}
    if ev.oracle is not None:
        marks["ORACLE best F1 (test)"] = float(from_map_scale(ev.oracle.value, ev.loss))
    return {"at_taus": at.drop(columns=["threshold"]), "curve": curve, "marks": marks}


def tau_figure(ev: Evaluation, index: int, taus: Sequence[float] = SEED_TAUS):
    """Seed's Fig. 14: the predicted pixels of one test image at each tau, next to the truth."""
    from adlib import viz

    preds = [ev.maps[index] > to_map_scale(t, ev.loss) for t in taus]
    gt = ev.masks[index] if ev.masks is not None else np.zeros_like(preds[0])
    panels = [ev.x[index], *[p.astype(float) for p in preds], gt.astype(float)]
    fig = viz.image_grid(np.stack([viz.to_display(p) if p.ndim == 3 else np.repeat(p[..., None], 3, -1)
                                   for p in panels]).transpose(0, 3, 1, 2), nrow=len(panels),
                         value_range=(0, 1),
                         title=f"{ev.defects[index]}: input | tau = {' | '.join(map(str, taus))} | truth")
    return fig


# --------------------------------------------------------------------------- baselines, results


def naive_baselines(data: Data, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Two bars an autoencoder has to clear, scored like the autoencoders (smoothed map, ``score``):

    * ``naive: distance to mean image``: squared difference to the mean training image;
    * ``classical: variation model``: per-pixel mean/std z-score (:mod:`adlib.baselines`).

    Both are fitted on the un-augmented training images (not the validation or test images).
    """
    from adlib.baselines import VariationModel

    train = data.train.images_uint8().float().div(255).numpy().transpose(0, 2, 3, 1)
    test = data.test.images_uint8().float().div(255).numpy().transpose(0, 2, 3, 1)
    sigma = smooth_sigma(data.image_size)
    candidates = {
        "naive: distance to mean image": ((test - train.mean(axis=0)) ** 2).mean(axis=-1),
        "classical: variation model": VariationModel().fit(train).score_maps(test),
    }
    masks = data.test_masks()
    out: dict[str, dict[str, Any]] = {}
    for name, raw in candidates.items():
        maps = M.gaussian_smooth(raw.astype(np.float32), sigma)
        summary = R.metrics_summary(scores=M.image_scores(maps, cfg["score"]), labels=data.test_labels,
                                    maps=maps, masks=masks)
        out[name] = {k: summary[k] for k in ("image_auroc", "image_aupr", "pixel_auroc", "aupro")}
    return out


def params(cfg: dict[str, Any], trained: Trained, data: Data) -> dict[str, Any]:
    """The settings saved with the results."""
    return {
        "epochs": int(trained.history.epochs[-1]["epoch"]) + 1 if trained.history.epochs else 0,
        "image_size": data.image_size, "latent_dim": trained.latent_dim,
        "channels": data.for_loss(trained.loss).channels,
        "batch_size": cfg["batch_size"], "lr": cfg["lr"], "augment_factor": cfg["augment_factor"],
        "noise_std": cfg["noise_std"], "augment": repr(data.augment), "val_fraction": cfg["val_fraction"],
        "threshold_rule": cfg["threshold_rule"], "min_defect_area": cfg["min_defect_area"],
        "region_q": cfg["region_q"],
        "min_area_pixels": min_area_pixels(cfg, data.image_size),
        "threshold_q": cfg["threshold_q"], "score": cfg["score"], "loss": trained.loss,
        "smooth_sigma": smooth_sigma(data.image_size), "n_train": len(data.train),
        "n_val": len(data.val),
    }


def save(
    ev: Evaluation, trained: Trained, data: Data, cfg: dict[str, Any], *,
    results_dir: str | Path, profile: str, seed: int,
) -> Path:
    """Write ``<results_dir>/01_hazelnut_autoencoder/<method>-mvtec-<category>.json`` + scores CSV."""
    has_pixel = ev.masks is not None
    return R.save_results(
        results_dir, notebook=NOTEBOOK, method=ev.method, dataset=data.split.dataset,
        category=data.split.category, synthetic=data.synthetic, profile=profile, seed=seed,
        metrics=ev.metrics, scores=ev.scores_frame(),
        threshold=ev.threshold if has_pixel else None,  # a Threshold carries its source
        train_seconds=trained.train_seconds,
        params={**params(cfg, trained, data), "image_threshold_q": cfg["image_threshold_q"], **threshold_params(ev)},
    )


def comparison_table(
    evals: Sequence[Evaluation], baselines: dict[str, dict[str, Any]] | None = None
) -> pd.DataFrame:
    """L2 vs SSIM (and the baselines of :func:`naive_baselines`) side by side, oracle F1 labelled."""
    rows = {}
    for ev in evals:
        m = {k: ev.metrics[k] for k in R.METRIC_KEYS}
        m["threshold (display scale)"] = float(from_map_scale(ev.threshold.value, ev.loss))
        m["threshold rule"] = ev.threshold.source.split(":")[-1]
        if ev.masks is not None:
            for t in ev.honest_thresholds.values():
                if t.source != ev.threshold.source:
                    m[f"pixel_f1 @ {t.source.split(':')[-1]}"] = MET.pixel_prf(ev.maps, ev.masks, t.value).f1
        if ev.oracle is not None:
            m["ORACLE pixel_f1 (test)"] = ev.oracle_per_defect["all"]["pixel_f1"]
        if ev.image_threshold is not None:
            m["image_f1 @ validation"] = MET.image_prf(ev.scores, ev.labels, ev.image_threshold.value).f1
        if ev.oracle_image is not None:
            m["ORACLE image_f1 (test)"] = MET.image_prf(ev.scores, ev.labels, ev.oracle_image.value).f1
        rows[ev.method] = m
    for name, vals in (baselines or {}).items():
        rows[name] = dict(vals)
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------- latent-size study


def latent_study(
    data: Data, cfg: dict[str, Any], sizes: Sequence[int], epochs: int, *,
    results_dir: str | Path, device: torch.device | str = "cpu", seed: int = 0,
    force_train: bool = False, progress: bool = True,
) -> tuple[pd.DataFrame, dict[int, Evaluation]]:
    """Train the L2 autoencoder at several latent sizes (``epochs`` each) and compare them.

    Returns:
        A table (one row per latent size: parameters, reconstruction error on validation /
        good test / defective test images, image AUROC, pixel AUROC, AUPRO, F1 at the validation
        threshold) and the evaluations (for reconstruction examples).
    """
    rows, evals = [], {}
    for z in tqdm(list(sizes), desc="latent sizes", disable=not progress):
        tr = train_variant(data, cfg, "l2", results_dir=results_dir, device=device, seed=seed,
                           latent_dim=int(z), epochs=epochs, force_train=force_train, monitor=False,
                           progress=progress)
        ev = evaluate(tr, data, cfg, device)
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
    gap = t["test_mse_defective"] - t["test_mse_good"]
    lines = [
        f"Good test images: reconstruction MSE {t.loc[small, 'test_mse_good']:.4g} at latent {small} "
        f"vs {t.loc[large, 'test_mse_good']:.4g} at latent {large} -> the larger code reconstructs "
        f"normal images {_compare(t.loc[large, 'test_mse_good'], t.loc[small, 'test_mse_good'], 'better', 'worse')}.",
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


def check_data(data_root: str | Path | None, category: str) -> None:
    """Fail fast with a clear message when DATA_ROOT/CATEGORY cannot be right."""
    if data_root is not None and not Path(data_root).is_dir():
        raise DataError(f"DATA_ROOT={data_root!s} is not a folder. Fix: pass the folder that holds "
                        f"'{category}/' in the MVTec AD layout, or DATA_ROOT = None for the "
                        "synthetic stand-in.")
