"""Notebook 01 pipeline: the seed-000 convolutional autoencoder (L2 and SSIM variants).

The notebook calls the protocol's verbs (:mod:`adlib.experiment`), in order::

    cfg = hazelnut_ae.settings(profile, {"epochs": EPOCHS, ...})       # strict, before any I/O
    data = hazelnut_ae.load(cfg, data_root=DATA_ROOT, category=CATEGORY, seed=SEED)
    trained = hazelnut_ae.train(data, cfg, "l2", results_dir=RESULTS_DIR, run=run)
    evals = hazelnut_ae.evaluate(trained, data, cfg)                    # residual maps -> metrics
    paths = hazelnut_ae.save(evals, trained, data, cfg, results_dir=RESULTS_DIR, ...)

Tables, figures and the threshold / latent-size studies live in
:mod:`adlib.pipelines.hazelnut_views` (which also explains the residual scale the seed's tau is
read on).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from adlib import config, experiment, maps, metrics, threshold_rules, thresholds
from adlib.config import SettingsError
from adlib.data.orientation import DEFAULT_TOLERANCE, orientation_free, orientation_spread
from adlib.data.torchdata import ImageDataset, RandomAugment, Repeated, make_loader
from adlib.data.types import Split
from adlib.models.conv_ae import ConvAutoencoder, layout
from adlib.train import History

NOTEBOOK = "01_hazelnut_autoencoder"
METHODS: dict[str, str] = {"l2": "conv-ae-l2", "ssim": "conv-ae-ssim"}
VARIANTS: tuple[str, ...] = ("l2", "ssim")
"""The variants the notebook trains by default (keys of :data:`METHODS`)."""
THRESHOLD_RULES: tuple[str, ...] = ("auto", *threshold_rules.RULES)
"""Validation-only pixel-threshold rules (see :func:`validation_thresholds`); ``"auto"`` (the
default) is the one whose false-alarm rate transfers best between validation halves."""
AUGMENT_MODES: tuple[str, ...] = ("auto", "seed", "noise")
"""Training augmentations (see :func:`augmentation`)."""

_COMMON: dict[str, Any] = {
    "latent_dim": 500, "lr": 1e-3, "augment": "auto", "noise_std": 0.02, "ssim_channels": 1,
    "threshold_rule": "auto", "min_defect_area": 0.002, "region_q": 0.9, "threshold_q": 0.999,
    "image_threshold_q": 0.95, "score": "max",
}
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {**_COMMON, "epochs": 1, "image_size": 64, "batch_size": 8, "augment_factor": 2,
              "val_fraction": 0.25, "synthetic_size": "tiny", "latent_sizes": [50, 500],
              "latent_epochs": 1, "monitor_every": 1},
    "cpu": {**_COMMON, "epochs": 20, "image_size": 64, "batch_size": 16, "augment_factor": 5,
            "val_fraction": 0.1, "synthetic_size": "default", "latent_sizes": [50, 100, 500, 1000],
            "latent_epochs": 5, "monitor_every": 4},
    "paper": {**_COMMON, "epochs": 1000, "image_size": 256, "batch_size": 32, "augment_factor": 5,
              "val_fraction": 0.1, "synthetic_size": "default", "latent_sizes": [50, 100, 500, 1000],
              "latent_epochs": 100, "monitor_every": 10},
}
"""Per-profile settings. ``ssim_channels``: 1 trains the SSIM variant on grey images (Bergmann
et al.), 3 on colour; ``monitor_every``: epochs between the test-set monitoring points (0: off);
``threshold_rule``: the validation rule the results use; ``score``: image score of a map."""
SELECTION: tuple[str, ...] = ("latent_sizes", "latent_epochs")  # only pick the study: not in the run id
PARAMETERS: dict[str, str] = {
    "epochs": "EPOCHS", "image_size": "IMAGE_SIZE", "latent_dim": "LATENT_DIM",
    "latent_sizes": "LATENT_SIZES", "latent_epochs": "LATENT_EPOCHS", "augment": "AUGMENT",
}
"""Setting key -> notebook parameter name (for the messages of :func:`settings`)."""

NO_FLIP: frozenset[str] = frozenset({"metal_nut"})
"""Categories where a mirror image is itself a defect (metal_nut has a ``flip`` defect type):
prior knowledge from the dataset's description, not something the training images can show."""


# --------------------------------------------------------------------------- settings


def _check(cfg: dict[str, Any]) -> None:
    """The pipeline's own checks (the generic ranges are :func:`adlib.config.settings`'s)."""
    name = {**{k: k.upper() for k in cfg}, **PARAMETERS}
    try:
        layout(int(cfg["image_size"]))
    except ValueError as exc:
        raise SettingsError(f"IMAGE_SIZE={cfg['image_size']!r}: {exc}") from None
    choices = {"augment": AUGMENT_MODES, "threshold_rule": THRESHOLD_RULES,
               "score": ("max", "mean", "topk_mean"), "ssim_channels": (1, 3)}
    for key, allowed in choices.items():
        if cfg[key] not in allowed:
            raise SettingsError(f"{name[key]}={cfg[key]!r}: expected one of {allowed}.")
    ranges = {  # key: (low, high, low allowed, high allowed)
        "threshold_q": (0, 1, False, False), "image_threshold_q": (0, 1, False, False),
        "min_defect_area": (0, 1, False, False), "region_q": (0, 1, False, True),
        "lr": (0, math.inf, False, False), "noise_std": (0, math.inf, True, False),
        "augment_factor": (1, math.inf, True, False), "monitor_every": (0, math.inf, True, False),
    }
    for key, (low, high, with_low, with_high) in ranges.items():
        v = cfg[key]
        if not ((low < v or (with_low and v == low)) and (v < high or (with_high and v == high))):
            span = f"{'[' if with_low else '('}{low}, {high}{']' if with_high else ')'}"
            raise SettingsError(f"{name[key]}={v!r}: must lie in {span}.")

def settings(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile's settings with the notebook's overrides, strictly checked.

    Text such as ``'[50]'`` for ``latent_sizes`` is parsed; ``epochs=0``, an image size that is
    not a power of two >= 32, an unknown augmentation or threshold rule are refused here.

    Raises:
        SettingsError: naming the notebook parameter and the fix.
    """
    return config.settings(profile, PROFILES, overrides, names=PARAMETERS, check=_check)


def run_options(num_threads: Any, force_train: Any, profile: str) -> bool:
    """Apply ``NUM_THREADS`` (None: torch's default); retrain when ``FORCE_TRAIN`` or smoke
    (so that CI exercises the training code). Raises SettingsError for values of other types."""
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise SettingsError(f"NUM_THREADS={num_threads!r} must be None or an integer >= 1. "
                                "Fix: -p NUM_THREADS 1.")
        torch.set_num_threads(num_threads)
    if not isinstance(force_train, bool):
        raise SettingsError(f"FORCE_TRAIN={force_train!r} must be True or False.")
    return force_train or profile == "smoke"


def augmentation(
    category: str, mode: str = "auto", noise_std: float = 0.02,
    spread: dict[str, float] | None = None, tolerance: float = DEFAULT_TOLERANCE,
) -> RandomAugment:
    """The training augmentation for a category.

    Args:
        category: dataset category.
        mode: ``"seed"``: rotations by 90 degrees, flips and Gaussian noise (seed 000, hazelnut);
            ``"noise"``: noise only; ``"auto"``: each geometric transform only where the
            defect-free training images show it is harmless (``spread``, from
            :func:`adlib.data.orientation.orientation_spread`; never flips for :data:`NO_FLIP`).
            On aligned objects (bottle, transistor, ...) a rotated or mirrored normal image
            looks like no normal sample, and can be what the test set calls a defect.
        noise_std: standard deviation of the added noise (pixels in [0, 1]).
        spread: the training images' orientation check (needed for ``"auto"``).
        tolerance: largest distance ratio still called orientation-free.
    """
    if mode not in AUGMENT_MODES:
        raise SettingsError(f"AUGMENT={mode!r}: expected one of {AUGMENT_MODES}.")
    no_flip = category in NO_FLIP
    if mode == "noise":
        return RandomAugment(hflip=0.0, vflip=0.0, rot90=False, noise_std=noise_std)
    if mode == "seed":
        flip = 0.0 if no_flip else 0.5
        return RandomAugment(hflip=flip, vflip=flip, rot90=True, noise_std=noise_std)
    if spread is None:
        raise ValueError("AUGMENT='auto' needs the orientation check of the training images "
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
    seed: int = 0
    """The seed of the validation hold-out, the augmentations and the training."""
    orientation: dict[str, float] = field(default_factory=dict)
    """The training images' orientation check (:func:`adlib.data.orientation.orientation_spread`)."""
    gray: Data | None = None
    """The same images converted to grey (the SSIM variant's input, ``cfg["ssim_channels"] = 1``)."""

    def for_variant(self, variant: str) -> Data:
        """The data a variant works on: the grey copy for ``"ssim"`` when one was built."""
        return self.gray if variant == "ssim" and self.gray is not None else self

    @property
    def has_masks(self) -> bool:
        """True when the test set has ground-truth masks (pixel metrics possible)."""
        return self.split.has_masks

    @property
    def test_defects(self) -> list[str]:
        """Defect type per test image (``"good"`` for defect-free)."""
        return [s.defect for s in self.test.samples]

    def test_masks(self) -> np.ndarray | None:
        """(N, H, W) bool ground truth at the working size, or None without masks."""
        ds = self.test
        return np.stack([ds[i]["mask"][0].numpy() > 0.5 for i in range(len(ds))]) if self.has_masks else None


def load(
    cfg: dict[str, Any], *, data_root: str | Path | None = None, category: str = "hazelnut",
    seed: int = 0, progress: bool = True,
) -> Data:
    """Read an MVTec-layout category (the synthetic stand-in when ``data_root`` is None) with
    :func:`adlib.experiment.load_split`, hold out defect-free validation images and decode
    everything once at ``cfg["image_size"]``; the augmentation follows the training images'
    orientation check.

    Raises:
        DataError: missing or malformed data, too few training images to hold out validation.
    """
    size = int(cfg["image_size"])
    loaded = experiment.load_split("mvtec", data_root, category, synthetic_size=cfg["synthetic_size"],
                                   keep_arrays=True, progress=progress)
    split = loaded.split
    channels = int(loaded.report.channels or 3)
    train, val = experiment.hold_out(split.train, cfg["val_fraction"], seed, where=f"{split.root}/{category}")
    kw = {"image_size": size, "channels": channels, "decoded": loaded.report, "progress": progress}
    train_ds = ImageDataset(train, seed=seed, **kw)
    spread = orientation_spread(train_ds.images_uint8())
    augment = augmentation(category, cfg["augment"], cfg["noise_std"], spread)
    train_ds.augment = augment

    def build(channel_count: int, train_set: ImageDataset) -> Data:
        k = {**kw, "channels": channel_count}
        return Data(
            split=split, synthetic=loaded.synthetic, image_size=size, channels=channel_count,
            train=train_set, val=ImageDataset(val, **k),
            test=ImageDataset(split.test, with_masks=split.has_masks, **k), augment=augment,
            augment_factor=int(cfg["augment_factor"]), seed=seed, orientation=spread,
        )

    data = build(channels, train_ds)
    if int(cfg["ssim_channels"]) == 1 and channels != 1:
        data.gray = build(1, ImageDataset(train, seed=seed, augment=augment, **{**kw, "channels": 1}))
    return data


# --------------------------------------------------------------------------- maps and thresholds


def loss_function(variant: str, window: int = 11):
    """The training loss ``fn(recon, x)``: MSE for ``"l2"``, ``1 - mean SSIM`` for ``"ssim"``."""
    if variant == "l2":
        return F.mse_loss
    if variant == "ssim":
        return lambda recon, x: maps.ssim_loss(recon, x, window)
    raise SettingsError(f"Unknown variant {variant!r}: expected one of {VARIANTS}.")


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


def anomaly_maps(x: np.ndarray, recon: np.ndarray, variant: str) -> np.ndarray:
    """Residual maps (N, H, W) on the variant's scale: squared colour difference (``l2``,
    compare with ``tau ** 2``) or ``1 - SSIM`` (``ssim``), smoothed lightly."""
    kind = "l2" if variant == "l2" else "ssim"
    return maps.residual_map(x, recon, kind=kind, smooth_sigma=smooth_sigma(x.shape[-1]))


def min_area_pixels(cfg: dict[str, Any], image_size: int) -> int:
    """The minimum defect area of the region rule in pixels at the working size (at least 2)."""
    return max(2, round(float(cfg["min_defect_area"]) * image_size * image_size))


def rule_spec(cfg: dict[str, Any], image_size: int) -> threshold_rules.RuleSpec:
    """The rules' options: rate ``1 - threshold_q``, region area, ``region_q``, ``image_threshold_q``."""
    return threshold_rules.RuleSpec(1 - float(cfg["threshold_q"]), min_area_pixels(cfg, image_size),
                                    float(cfg["region_q"]), image_q=float(cfg["image_threshold_q"]))


def validation_thresholds(val_maps: np.ndarray, cfg: dict[str, Any]) -> dict[str, thresholds.Threshold]:
    """Every pixel threshold of :mod:`adlib.threshold_rules` from the validation maps only:
    ``"region"`` (MVTec AD paper; ``min_defect_area``, ``region_q``), ``"quantile"``, ``"k_sigma"``,
    ``"tail"`` (rate ``1 - threshold_q``), ``"image_max"`` and ``"auto"`` (the best transfer between
    validation halves); ``cfg["threshold_rule"]`` names the results' one."""
    return threshold_rules.all_thresholds(val_maps, rule_spec(cfg, val_maps.shape[-1]))[0]


# --------------------------------------------------------------------------- learner and training


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
    variant: str
    cfg: dict[str, Any]
    every: int
    epochs: int

    def __call__(self, epoch: int, history: History) -> None:
        last = epoch + 1
        if self.every <= 0 or (last % self.every and last != self.epochs):
            return
        device = next(self.model.parameters()).device
        maps_val = anomaly_maps(*reconstruct(self.model, self.data.val, device), self.variant)
        maps_test = anomaly_maps(*reconstruct(self.model, self.data.test, device), self.variant)
        defects = np.array(self.data.test_defects)
        row = history.epochs[-1]
        if self.data.has_masks:
            tau = validation_thresholds(maps_val, self.cfg)[self.cfg["threshold_rule"]]
            per = metrics.per_defect_prf(maps_test, self.data.test_masks(), defects, tau.value)
            for name, vals in per.items():
                row[f"monitor_f1_{name}"] = float(vals["pixel_f1"] or 0.0)
        else:
            scores = maps.image_scores(maps_test, self.cfg["score"])
            for name in sorted(set(defects) - {"good"}):
                sel = (defects == name) | (defects == "good")
                auc = metrics.image_auroc(scores[sel], self.data.test.labels[sel])
                row[f"monitor_auroc_{name}"] = float(auc) if auc is not None else float("nan")


def variant_name(data: Data, cfg: dict[str, Any], variant: str) -> str:
    """The checkpoint name of a variant: method, data, latent size, epochs (with the ``run`` id
    of :func:`adlib.experiment.checkpoint_path` after it), e.g. ``conv-ae-l2-mvtec-hazelnut-z500-e20``."""
    vdata = data.for_variant(variant)
    return (f"{METHODS[variant]}-{data.split.dataset}-{data.split.category}-z{int(cfg['latent_dim'])}"
            f"-e{int(cfg['epochs'])}{'-gray' if vdata.channels == 1 else ''}"
            f"{'' if cfg['monitor_every'] else '-nomonitor'}")


def spec(data: Data, cfg: dict[str, Any], variant: str, *, seed: int | None = None) -> experiment.TrainSpec:
    """Model, Adam, augmented loader, loss, validation loss and monitoring of one variant.

    Args:
        data: from :func:`load`.
        cfg: from :func:`settings` (``latent_dim``, ``epochs`` and ``monitor_every`` pick the
            variant; the latent study passes other values).
        variant: ``"l2"`` or ``"ssim"``.
        seed: weight initialisation and batch order (None: the seed the data was loaded with).
    """
    if variant not in METHODS:
        raise SettingsError(f"Unknown variant {variant!r}: expected one of {VARIANTS}.")
    seed = data.seed if seed is None else int(seed)
    vdata = data.for_variant(variant)
    latent, epochs = int(cfg["latent_dim"]), int(cfg["epochs"])
    torch.manual_seed(seed)
    model = ConvAutoencoder(latent_dim=latent, image_size=vdata.image_size, channels=vdata.channels)
    n_items = len(vdata.train) * vdata.augment_factor
    loader = make_loader(Repeated(vdata.train, vdata.augment_factor), batch_size=cfg["batch_size"],
                         shuffle=True, seed=seed, drop_last=n_items > cfg["batch_size"])
    loss_fn = loss_function(variant)
    val_x = torch.stack([vdata.val[i]["image"] for i in range(len(vdata.val))])

    def val_fn(m: torch.nn.Module) -> dict[str, float]:  # the same loss on held-out normal images
        x = val_x.to(next(m.parameters()).device)
        return {"loss": float(loss_fn(m(x), x))}

    every = int(cfg["monitor_every"])
    monitor = Monitor(model, vdata, variant, cfg, every, epochs) if every else None
    weights = {  # what defines the trained weights: another value never reuses a checkpoint
        "loss": variant, "latent_dim": latent, "image_size": vdata.image_size, "seed": seed,
        "channels": vdata.channels, "root": str(data.split.root), "category": data.split.category,
        "n_train": len(vdata.train), "monitor": bool(every), "augment": repr(vdata.augment),
        **{k: cfg[k] for k in ("batch_size", "lr", "augment_factor", "noise_std", "val_fraction")},
    }
    return experiment.TrainSpec(
        name=variant_name(data, cfg, variant), model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=cfg["lr"]), loader=loader, epochs=epochs,
        config=weights, loss_fn=loss_fn, val_fn=val_fn, on_epoch_end=monitor,
    )


@dataclass
class Trained(experiment.Trained):
    """:class:`adlib.experiment.Trained` with the variant and its latent size."""

    variant: str = "l2"
    latent_dim: int = 0


def train(
    data: Data, cfg: dict[str, Any], variant: str, *, results_dir: str | Path, run: str,
    device: torch.device | str = "cpu", force: bool = False, progress: bool = True,
) -> Trained:
    """Train one variant with :func:`adlib.experiment.train` (or reuse its finished checkpoint
    ``<results_dir>/01_hazelnut_autoencoder/checkpoints/<variant_name>-<run>.pt``)."""
    trained = experiment.train(spec(data, cfg, variant), results_dir=results_dir, notebook=NOTEBOOK,
                               run=run, device=device, force=force, progress=progress)
    return Trained(**vars(trained), variant=variant, latent_dim=int(cfg["latent_dim"]))


# --------------------------------------------------------------------------- evaluation and results


@dataclass
class Evaluation(experiment.Evaluation):
    """:class:`adlib.experiment.Evaluation` with the variant, inputs and reconstructions.

    ``pixel_thresholds`` holds every validation rule also when the test set has no masks (the
    figures still show predicted pixels then); ``pixel_threshold`` (the results' one) is None then.
    """

    variant: str = "l2"
    x: np.ndarray | None = None
    recon: np.ndarray | None = None
    rule: str = "auto"

    @property
    def threshold(self) -> thresholds.Threshold:
        """The honest pixel threshold of the results' rule (from validation maps only)."""
        return self.pixel_thresholds[self.rule]

    def predicted(self, threshold: float | None = None) -> np.ndarray:
        """Predicted defect pixels ``maps > threshold`` (default: :attr:`threshold`)."""
        return super().predicted(self.threshold.value if threshold is None else threshold)


def evaluate(trained: Trained, data: Data, cfg: dict[str, Any], *, device: torch.device | str = "cpu"
             ) -> list[Evaluation]:
    """Residual maps of the test and validation images -> image scores, the honest validation
    thresholds (both rules), the ORACLE beside them and the GUIDE metrics (one evaluation)."""
    variant = trained.variant
    vdata = data.for_variant(variant)
    x, recon = reconstruct(trained.model, vdata.test, device)
    test_maps = anomaly_maps(x, recon, variant)
    val_maps = anomaly_maps(*reconstruct(trained.model, vdata.val, device), variant)
    honest, choice = threshold_rules.all_thresholds(val_maps, rule_spec(cfg, val_maps.shape[-1]))
    core = experiment.evaluate(
        METHODS[variant], scores=maps.image_scores(test_maps, cfg["score"]), labels=vdata.test.labels,
        defects=vdata.test_defects, paths=[str(s.path) for s in vdata.test.samples],
        val_scores=maps.image_scores(val_maps, cfg["score"]), image_q=float(cfg["image_threshold_q"]),
        maps=test_maps, masks=vdata.test_masks(), val_maps=val_maps, pixel_thresholds=honest,
        pixel_rule=cfg["threshold_rule"], rules=(honest, choice),
    )
    fields = {**vars(core), "pixel_thresholds": honest}
    return [Evaluation(**fields, variant=variant, x=x, recon=recon, rule=cfg["threshold_rule"])]


def params(cfg: dict[str, Any], trained: Trained, data: Data) -> dict[str, Any]:
    """The settings saved with the results (the thresholds are added by :func:`adlib.experiment.save`)."""
    vdata = data.for_variant(trained.variant)
    keys = ("batch_size", "lr", "augment_factor", "noise_std", "val_fraction", "threshold_rule",
            "min_defect_area", "region_q", "threshold_q", "image_threshold_q", "score")
    return {
        "epochs": len(trained.history.epochs), "image_size": vdata.image_size,
        "latent_dim": trained.latent_dim, "channels": vdata.channels, "loss": trained.variant,
        **{k: cfg[k] for k in keys}, "augment": repr(vdata.augment),
        "min_area_pixels": min_area_pixels(cfg, vdata.image_size),
        "smooth_sigma": smooth_sigma(vdata.image_size), "n_train": len(vdata.train),
        "n_val": len(vdata.val), "checkpoint": trained.checkpoint.name,
    }


def save(
    evals: list[Evaluation], trained: Trained, data: Data, cfg: dict[str, Any], *,
    results_dir: str | Path, profile: str, seed: int, run: str,
) -> list[Path]:
    """Write ``<results_dir>/01_hazelnut_autoencoder/<method>-mvtec-<category>-<run>.json`` and
    its scores CSV (and the model bundle) for each evaluation, through :func:`adlib.experiment.save`."""
    from adlib.scoring.recon import conv_ae_bundle as _bundle

    return [
        experiment.save(ev, results_dir=results_dir, notebook=NOTEBOOK, split=data.split,
                        synthetic=data.synthetic, profile=profile, seed=seed, run=run,
                        train_seconds=trained.train_seconds, params=params(cfg, trained, data),
                        bundle=_bundle(ev, trained, data, cfg, run)) for ev in evals
    ]
