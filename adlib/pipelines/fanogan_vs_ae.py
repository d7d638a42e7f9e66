"""Notebook 04: f-AnoGAN versus a plain autoencoder on MVTec bottle and carpet (seed 001).

The five verbs of :mod:`adlib.experiment`, per category: :func:`settings` (one ``PROFILES``
table; :func:`resolve_categories` picks the categories), :func:`load` (one category read and
validated by :func:`adlib.experiment.load_split`, defect-free validation images held out, datasets
at both image sizes from one decode), :func:`spec` + :func:`train` (``ae-256``: the seed's
autoencoder with MSE; ``f-anogan``: two stages, a WGAN-GP with the critic on every batch and the
generator on every ``n_critic``-th, then the izi_f encoder against the frozen generator and
critic), :func:`evaluate` (mean squared reconstruction error; f-AnoGAN's ``A(x)``) and :func:`save`.
Tables, encoder checks, GAN diagnostics and snapshots: :mod:`adlib.pipelines.fanogan_views`.

``image_size``/``epochs`` (the GUIDE's IMAGE_SIZE/EPOCHS) belong to the autoencoder; the GAN has
its own ``gan_image_size``, ``gan_epochs`` and ``encoder_epochs``.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adlib import config, experiment, maps, threshold_rules
from adlib import train as training
from adlib.config import SettingsError
from adlib.data.torchdata import ImageDataset, RandomAugment, make_loader
from adlib.data.types import Split
from adlib.models import fanogan
from adlib.models.ae256 import ConvAutoencoder
from adlib.scoring.gan import notebook04_bundle

NOTEBOOK = "04_fanogan_vs_autoencoder"
DATASET = "mvtec"
AE_METHOD = "ae-256"
GAN_METHOD = "f-anogan"
VARIANTS: tuple[str, ...] = (AE_METHOD, GAN_METHOD)
STAGES: dict[str, tuple[str, ...]] = {AE_METHOD: ("model",), GAN_METHOD: ("gan", "encoder")}
"""The training stages of each variant (one :class:`~adlib.experiment.TrainSpec` each)."""
SEED_CATEGORIES = ("bottle", "carpet")
"""The two categories seed 001 reports (the synthetic run's default CATEGORIES)."""

# "paper" = the seed's settings; "cpu" = minutes on 2 cores (AE at 128 px, a narrow DCGAN at 64 px),
# its GAN settings chosen on defect-free validation images of real bottle, never on test data: batch
# 16 and encoder_gen_bn="batch" each lowered the validation reconstruction error; "smoke" = CI.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "synthetic_size": "tiny", "val_fraction": 0.25,
        "image_size": 32, "epochs": 2, "ae_width": 8, "ae_latent": 1024, "ae_lr": 1e-3, "ae_batch": 8,
        "gan_image_size": 32, "gan_epochs": 5, "encoder_epochs": 2, "gan_width": 8,
        "latent_dim": 100, "gan_lr": 2e-4, "gan_batch": 32, "n_critic": 5, "gp_weight": 10.0,
        "kappa": 1.0, "encoder_gen_bn": "batch", "sample_every": 1,
    },
    "cpu": {
        "synthetic_size": "default", "val_fraction": 0.1,
        "image_size": 128, "epochs": 30, "ae_width": 32, "ae_latent": 1024, "ae_lr": 1e-3, "ae_batch": 16,
        "gan_image_size": 64, "gan_epochs": 600, "encoder_epochs": 60, "gan_width": 16,
        "latent_dim": 100, "gan_lr": 2e-4, "gan_batch": 16, "n_critic": 5, "gp_weight": 10.0,
        "kappa": 1.0, "encoder_gen_bn": "batch", "sample_every": 100,
    },
    "paper": {
        "synthetic_size": "default", "val_fraction": 0.1,
        "image_size": 256, "epochs": 300, "ae_width": 32, "ae_latent": 1024, "ae_lr": 1e-3, "ae_batch": 16,
        "gan_image_size": 64, "gan_epochs": 1500, "encoder_epochs": 200, "gan_width": 64,
        "latent_dim": 100, "gan_lr": 2e-4, "gan_batch": 32, "n_critic": 5, "gp_weight": 10.0,
        "kappa": 1.0, "encoder_gen_bn": "frozen", "sample_every": 100,
    },
}
"""Per-profile settings (see the module docstring for which model each key belongs to)."""

SELECTION: tuple[str, ...] = ()  # CATEGORIES is not a setting (each category has its own run id)
PARAMETERS: dict[str, str] = {
    "image_size": "IMAGE_SIZE", "epochs": "EPOCHS", "gan_image_size": "GAN_IMAGE_SIZE",
    "gan_epochs": "GAN_EPOCHS", "encoder_epochs": "ENCODER_EPOCHS",
}
"""Setting key -> notebook parameter (the other keys are the profile's only)."""

AE_KEYS = ("image_size", "ae_width", "ae_latent", "ae_lr", "ae_batch", "val_fraction")
GAN_KEYS = ("gan_image_size", "gan_width", "latent_dim", "gan_lr", "gan_batch", "n_critic",
            "gp_weight", "val_fraction")
PIXEL_QUANTILE = 0.99  # the pixel rules' target false-alarm rate is 1 - this (1 % of normal pixels)
PIXEL_RULE = "auto"
"""The results' pixel rule (:mod:`adlib.threshold_rules`; auto: best transfer between validation halves)."""
IMAGE_QUANTILE = 0.95  # image threshold: this quantile of the validation image scores
_QUANTILES = {"pixel_quantile": PIXEL_QUANTILE, "image_quantile": IMAGE_QUANTILE}


# --------------------------------------------------------------------------- 1. settings


_RULES = (
    (("image_size", "gan_image_size"), lambda v: v >= 8 and 2 ** round(math.log2(v)) == v,
     "use a power of two >= 8 (e.g. 64, 128, 256)"),
    (("ae_width", "ae_latent", "ae_batch", "gan_width", "gan_batch", "n_critic", "sample_every"),
     lambda v: v >= 1, "must be at least 1"),
    (("ae_lr", "gan_lr"), lambda v: v > 0, "a learning rate must be positive"),
    (("gp_weight", "kappa"), lambda v: v >= 0, "must not be negative"),
)


def _check(cfg: dict[str, Any]) -> None:
    """This pipeline's own checks (the generic ones are in :func:`adlib.config.settings`)."""
    for keys, ok, fix in _RULES:
        for key in keys:
            if not ok(cfg[key]):
                raise SettingsError(f"{PARAMETERS.get(key, key)}={cfg[key]}: {fix}.")
    if cfg["encoder_gen_bn"] not in ("frozen", "batch"):
        raise SettingsError(f"encoder_gen_bn={cfg['encoder_gen_bn']!r}: use 'frozen' (BatchNorm "
                            "statistics of GAN training) or 'batch' (adapted during encoder training).")


def settings(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile's settings with the non-``None`` overrides applied, strictly checked.

    Raises:
        SettingsError: unknown key, wrong type, ``EPOCHS=0``, an image size the networks cannot
            use, ... (the message names the parameter).
    """
    return config.settings(profile, PROFILES, overrides, names=PARAMETERS, check=_check)


def resolve_categories(category: str, categories: Sequence[str] | str | None = None, *,
                       data_root: Any = None) -> list[str]:
    """Which categories a run covers (the notebook's CATEGORY, CATEGORIES and DATA_ROOT).

    ``categories=None``: the seed's two synthetic stand-ins when ``data_root`` is None, else
    ``[category]`` (a real folder need not hold the seed's two). Text such as ``"['bottle']"``
    (``papermill -p``) is parsed. ``category`` comes first; if it is not among ``categories``
    (``papermill -p CATEGORY transistor``), only ``category`` runs.

    Raises:
        SettingsError: an empty list, or names that are not text.
    """
    if not isinstance(category, str) or not category.strip():
        raise SettingsError(f"CATEGORY={category!r}: give a category name such as 'bottle'.")
    if categories is None:
        categories = SEED_CATEGORIES if data_root is None else [category]
    given = categories
    if isinstance(categories, str):
        try:
            categories = ast.literal_eval(categories.strip())
        except (ValueError, SyntaxError):
            categories = None
    if (not isinstance(categories, (list, tuple)) or not categories
            or any(not isinstance(c, str) or not c.strip() for c in categories)):
        raise SettingsError(f"CATEGORIES={given!r}: give a non-empty list of names such as "
                            """['bottle', 'carpet'] (papermill: -p CATEGORIES "['bottle', 'carpet']").""")
    names = list(categories) if category in categories else [category]
    return list(dict.fromkeys([category, *names]))


# --------------------------------------------------------------------------- 2. data


@dataclass
class Datasets:
    """Train (random horizontal flip only), validation and test datasets at one image size."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset


@dataclass
class Data:
    """One validated category with its datasets for both models (images in [0, 1])."""

    split: Split
    synthetic: bool
    seed: int
    ae: Datasets
    """At ``image_size`` (the autoencoder)."""
    gan: Datasets
    """At ``gan_image_size`` (f-AnoGAN)."""

    @property
    def category(self) -> str:
        return self.split.category

    def datasets(self, variant: str) -> Datasets:
        """The datasets ``variant`` trains and is evaluated on."""
        return self.ae if _variant(variant) == AE_METHOD else self.gan


def load(cfg: dict[str, Any], *, data_root: str | Path | None = None, category: str = "bottle",
         seed: int = 0, progress: bool = True) -> Data:
    """Read and validate one category and build its datasets (every file decoded once).

    Args:
        cfg: from :func:`settings` (``synthetic_size``, ``val_fraction``, both image sizes).
        data_root: the folder holding ``<category>/`` (MVTec layout); ``None``: the synthetic
            stand-in. ``seed``: of the validation hold-out and the augmentation.

    Raises:
        DataError: missing or malformed data, too few training images (names the path and the fix).
    """
    loaded = experiment.load_split(DATASET, data_root, category, synthetic_size=cfg["synthetic_size"],
                                   keep_arrays=True, progress=progress)
    split = loaded.split
    train_s, val_s = experiment.hold_out(split.train, cfg["val_fraction"], seed,
                                         where=f"{Path(split.root) / category}/train/good")
    flip = RandomAugment(hflip=0.5, vflip=0.0, rot90=False)

    def build(size: int) -> Datasets:
        kw = {"image_size": size, "channels": split.channels, "progress": False, "decoded": loaded.report}
        return Datasets(train=ImageDataset(train_s, augment=flip, seed=seed, **kw),
                        val=ImageDataset(val_s, **kw),
                        test=ImageDataset(split.test, with_masks=split.has_masks, **kw))

    return Data(split, loaded.synthetic, seed, build(cfg["image_size"]), build(cfg["gan_image_size"]))


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (mean 0.5, std 0.5, as in the seed)."""
    return x * 2.0 - 1.0


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1.0) / 2.0


def stack(ds: ImageDataset, n: int | None = None) -> torch.Tensor:
    """The first ``n`` (default all) images of ``ds`` as one (N, C, H, W) tensor in [0, 1]."""
    return torch.stack([ds[i]["image"] for i in range(len(ds) if n is None else min(n, len(ds)))])


def _variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise SettingsError(f"Unknown variant {variant!r}: expected one of {VARIANTS}.")
    return variant


def _data_key(data: Data) -> dict[str, Any]:
    return {"root": str(Path(data.split.root).resolve()), "category": data.category,
            "synthetic": data.synthetic, "n_train": len(data.split.train), "seed": data.seed}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------- 3. training


def _ae_spec(data: Data, cfg: dict[str, Any], seed: int) -> experiment.TrainSpec:
    training.seed_everything(seed)
    model = ConvAutoencoder(cfg["image_size"], data.split.channels, cfg["ae_latent"], width=cfg["ae_width"])
    val_x = normalise(stack(data.ae.val))

    def mse(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return ((m(x) - x) ** 2).mean()

    def step(m: nn.Module, batch: dict, ctx: training.StepContext) -> torch.Tensor:
        return mse(m, normalise(batch["image"]))

    def val(m: nn.Module) -> float:
        return float(mse(m, val_x.to(_device(m))))

    return experiment.TrainSpec(
        name=f"{AE_METHOD}-{DATASET}-{data.category}", model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=cfg["ae_lr"]),
        loader=make_loader(data.ae.train, batch_size=cfg["ae_batch"], shuffle=True, seed=seed),
        epochs=cfg["epochs"], config={"model": "ae", **_data_key(data), **{k: cfg[k] for k in AE_KEYS}},
        step_fn=step, val_fn=val, fit_kwargs={"checkpoint_every": max(1, cfg["epochs"] // 10)})


def _gan_config(data: Data, cfg: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The GAN's checkpoint config and its batch size (at most the training images)."""
    return ({"model": "wgan-gp", **_data_key(data), **{k: cfg[k] for k in GAN_KEYS}},
            min(cfg["gan_batch"], len(data.gan.train)))


def _gan_spec(data: Data, cfg: dict[str, Any], seed: int,
              snapshot_dir: Path | None) -> experiment.TrainSpec:
    """Step 1, WGAN-GP: the critic on every batch, the generator on every ``n_critic``-th."""
    training.seed_everything(seed)
    size, channels, width, zdim = cfg["gan_image_size"], data.split.channels, cfg["gan_width"], cfg["latent_dim"]
    gen, critic = fanogan.Generator(zdim, channels, size, width), fanogan.Critic(channels, size, width)
    betas, (gan_cfg, batch_size) = (0.5, 0.9), _gan_config(data, cfg)
    opts = {"critic": torch.optim.Adam(critic.parameters(), lr=cfg["gan_lr"], betas=betas),
            "generator": torch.optim.Adam(gen.parameters(), lr=cfg["gan_lr"], betas=betas)}

    def step(m: nn.ModuleDict, batch: dict, ctx: training.StepContext) -> dict[str, torch.Tensor]:
        real = normalise(batch["image"])
        logs = fanogan.critic_step(m["generator"], m["critic"], ctx.optimizers["critic"], real,
                                   cfg["gp_weight"])
        if (ctx.step + 1) % cfg["n_critic"] == 0:
            logs.update(fanogan.generator_step(m["generator"], m["critic"], ctx.optimizers["generator"],
                                               real.shape[0]))
        return logs

    from adlib.pipelines.fanogan_views import snapshot_callback  # views import this module

    on_epoch_end = None if snapshot_dir is None else snapshot_callback(gen, cfg, seed, snapshot_dir)
    return experiment.TrainSpec(
        name=f"{GAN_METHOD}-gan-{DATASET}-{data.category}",
        model=nn.ModuleDict({"generator": gen, "critic": critic}), optimizer=opts,
        loader=make_loader(data.gan.train, batch_size=batch_size, shuffle=True, seed=seed, drop_last=True),
        epochs=cfg["gan_epochs"], config=gan_cfg, step_fn=step,
        on_epoch_end=on_epoch_end, fit_kwargs={"checkpoint_every": cfg["sample_every"]})


def _encoder_spec(data: Data, cfg: dict[str, Any], seed: int,
                  gan: nn.ModuleDict | None) -> experiment.TrainSpec:
    """Step 2, the izi_f encoder with the generator's weights and the critic frozen.

    ``encoder_gen_bn="frozen"`` keeps the generator entirely fixed (BatchNorm with the running
    statistics of GAN training); ``"batch"`` lets its BatchNorm layers normalise with batch
    statistics of the encoded training images, whose running averages are then used for scoring,
    so the checkpoint also holds the generator (and the unchanged critic: one device move)."""
    if gan is None:  # an untrained GAN (benchmarks of the encoder step)
        gan = _gan_spec(data, cfg, seed, None).model
    gen, critic = gan["generator"], gan["critic"]
    gen.eval().requires_grad_(False)
    critic.eval().requires_grad_(False)
    training.seed_everything(seed)
    enc = fanogan.Encoder(cfg["latent_dim"], data.split.channels, cfg["gan_image_size"], cfg["gan_width"])
    (gan_cfg, batch), bn_mode, kappa = _gan_config(data, cfg), cfg["encoder_gen_bn"], cfg["kappa"]
    gan_hash = training.config_hash({**gan_cfg, "epochs": cfg["gan_epochs"]})
    val_x = normalise(stack(data.gan.val))

    def step(m: nn.ModuleDict, b: dict, ctx: training.StepContext) -> torch.Tensor:
        # fit() puts the whole ModuleDict in train mode; "frozen" keeps G's BatchNorm in eval mode
        # (running statistics from GAN training), "batch" lets it normalise with batch statistics.
        m["generator"].train(bn_mode == "batch")
        return fanogan.izif_loss(m["encoder"], m["generator"], m["critic"], normalise(b["image"]), kappa)

    def val(m: nn.ModuleDict) -> float:  # fit() calls this in eval mode: no statistics change
        return float(fanogan.izif_loss(m["encoder"], m["generator"], m["critic"],
                                       val_x.to(_device(m["encoder"])), kappa))

    epochs = cfg["encoder_epochs"]
    return experiment.TrainSpec(
        name=f"{GAN_METHOD}-encoder-{DATASET}-{data.category}",
        model=nn.ModuleDict({"encoder": enc, "generator": gen, "critic": critic}),
        optimizer=torch.optim.Adam(enc.parameters(), lr=cfg["gan_lr"], betas=(0.5, 0.999)),
        loader=make_loader(data.gan.train, batch_size=batch, shuffle=True, seed=seed), epochs=epochs,
        config={"model": "izif-encoder", "gan": gan_hash, "kappa": kappa, "batch": batch,
                "encoder_gen_bn": bn_mode},
        step_fn=step, val_fn=val, fit_kwargs={"checkpoint_every": max(1, epochs // 10)})


def spec(data: Data, cfg: dict[str, Any], variant: str, *, seed: int | None = None,
         stage: str | None = None, gan: nn.ModuleDict | None = None,
         snapshot_dir: str | Path | None = None) -> experiment.TrainSpec:
    """The :class:`~adlib.experiment.TrainSpec` of one training stage of ``variant``.

    Args:
        data, cfg, variant: from :func:`load`, :func:`settings` and :data:`VARIANTS`.
        seed: of the initial weights and the shuffling (default: ``data.seed``).
        stage: ``"gan"`` (default) or ``"encoder"`` for f-AnoGAN (:data:`STAGES`).
        gan: the trained ``{"generator", "critic"}`` for the encoder stage (default: untrained).
        snapshot_dir: the GAN stage's folder for sample grids and generator snapshots (default: none).
    """
    seed = data.seed if seed is None else int(seed)
    stage = STAGES[_variant(variant)][0] if stage is None else stage
    if stage not in STAGES[variant]:
        raise SettingsError(f"{variant}: unknown stage {stage!r}; expected one of {STAGES[variant]}.")
    if variant == AE_METHOD:
        return _ae_spec(data, cfg, seed)
    if stage == "gan":
        return _gan_spec(data, cfg, seed, None if snapshot_dir is None else Path(snapshot_dir))
    return _encoder_spec(data, cfg, seed, gan)


@dataclass
class Trained:
    """A trained (or reused) variant: one :class:`adlib.experiment.Trained` per stage."""

    variant: str
    stages: dict[str, experiment.Trained]
    sample_grids: list[Path] = field(default_factory=list)
    """f-AnoGAN: the PNG sample grids (fixed latent batch) kept during GAN training, oldest first."""

    @property
    def train_seconds(self) -> float:
        """Seconds of training stored in the checkpoints, all stages together."""
        return float(sum(t.train_seconds for t in self.stages.values()))

    @property
    def reused(self) -> bool:
        """True when every stage's finished weights were loaded instead of trained."""
        return all(t.reused for t in self.stages.values())

    @property
    def model(self) -> nn.Module:
        """The autoencoder (``ae-256``) or the encoder stage's ``{"encoder", "generator", "critic"}``."""
        return self.stages["model" if self.variant == AE_METHOD else "encoder"].model

    generator = property(lambda self: self.model["generator"], doc="f-AnoGAN's generator.")
    critic = property(lambda self: self.model["critic"], doc="f-AnoGAN's critic.")
    encoder = property(lambda self: self.model["encoder"], doc="f-AnoGAN's izi_f encoder.")


def train(data: Data, cfg: dict[str, Any], variant: str, *, results_dir: str | Path, run: str,
          device: torch.device | str = "cpu", force: bool = False, progress: bool = True) -> Trained:
    """Train ``variant`` (or reuse its finished checkpoints, unless ``force``); f-AnoGAN trains both
    stages in turn, its sample grids and generator snapshots beside the GAN checkpoint."""
    kw = {"results_dir": results_dir, "notebook": NOTEBOOK, "run": run, "device": device,
          "force": force, "progress": progress}
    if _variant(variant) == AE_METHOD:
        return Trained(variant, {"model": experiment.train(spec(data, cfg, variant), **kw)})
    gan_name = f"{GAN_METHOD}-gan-{DATASET}-{data.category}"
    folder = experiment.checkpoint_path(results_dir, NOTEBOOK, gan_name, run).with_suffix("")
    for old in (folder / "samples").glob("gan_epoch*.png") if force else ():
        old.unlink()
    gan = experiment.train(spec(data, cfg, variant, stage="gan", snapshot_dir=folder), **kw)
    encoder = experiment.train(spec(data, cfg, variant, stage="encoder", gan=gan.model), **kw)
    return Trained(variant, {"gan": gan, "encoder": encoder},
                   sorted((folder / "samples").glob("gan_epoch*.png")))


# --------------------------------------------------------------------------- 4. evaluation


ScoreFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def score_fn(trained: Trained, cfg: dict[str, Any]) -> ScoreFn:
    """``fn(x01) -> (reconstruction in [0, 1], anomaly map, image score)`` for ``trained``.

    ``ae-256``: map = squared error (channel mean, [0, 1] units), score = its image mean (the
    MSE); ``f-anogan``: score = ``A(x)`` (on [-1, 1] images as in the paper), map = ``|x - G(E(x))|``.
    """

    @torch.no_grad()
    def fn(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if trained.variant == AE_METHOD:
            recon = denormalise(trained.model(normalise(x01))).clamp(0, 1)
            amap = torch.from_numpy(maps.residual_map(x01, recon, kind="l2"))
            return recon, amap, torch.from_numpy(maps.image_scores(amap, "mean"))
        out = fanogan.anomaly_score(trained.encoder, trained.generator, trained.critic, normalise(x01),
                                    cfg["kappa"])
        recon = denormalise(out["recon"]).clamp(0, 1)
        return recon, torch.from_numpy(maps.residual_map(x01, recon, kind="l1")), out["score"]

    return fn


def _run(ds: ImageDataset, fn: ScoreFn, device: torch.device | str,
         batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` over ``ds`` in batches: the maps and the image scores."""
    maps_, scores = [], []
    for i in range(0, len(ds), batch_size):
        _, amap, score = fn(torch.stack([ds[j]["image"] for j in range(i, min(i + batch_size, len(ds)))]).to(device))
        maps_.append(amap.cpu())
        scores.append(score.cpu())
    return torch.cat(maps_).numpy(), torch.cat(scores).numpy().astype(np.float64)


def _masks(ds: ImageDataset) -> np.ndarray | None:
    if not ds.with_masks:
        return None
    return np.stack([ds[i]["mask"][0].numpy() > 0.5 for i in range(len(ds))])


def evaluate(trained: Trained, data: Data, cfg: dict[str, Any], *,
             device: torch.device | str = "cpu") -> list[experiment.Evaluation]:
    """Scores and maps of test and validation images, thresholds and metrics (no I/O; one evaluation).
    Pixel: the :data:`PIXEL_RULE` at the rate ``1 - PIXEL_QUANTILE`` on the defect-free validation
    maps; image: the :data:`IMAGE_QUANTILE` of their scores (ORACLE ones beside them)."""
    trained.model.to(device).eval()
    fn, sets = score_fn(trained, cfg), data.datasets(trained.variant)
    (test_maps, scores), (val_maps, val_scores) = _run(sets.test, fn, device), _run(sets.val, fn, device)
    spec = threshold_rules.RuleSpec.for_maps(val_maps.shape, rate=1 - PIXEL_QUANTILE)
    return [experiment.evaluate(
        trained.variant, scores=scores, labels=sets.test.labels, defects=[s.defect for s in sets.test.samples],
        paths=[str(s.path) for s in sets.test.samples], val_scores=val_scores, image_q=IMAGE_QUANTILE,
        maps=test_maps, masks=_masks(sets.test), val_maps=val_maps,
        pixel_rule=PIXEL_RULE, rule_spec=spec)]


# --------------------------------------------------------------------------- 5. save


def params(cfg: dict[str, Any], variant: str) -> dict[str, Any]:
    """The settings behind ``variant``'s weights and score, for the results' ``params``."""
    if _variant(variant) == AE_METHOD:
        keys = ("image_size", "epochs", "ae_width", "ae_latent", "ae_lr", "ae_batch")
        return {**{k: cfg[k] for k in keys}, **_QUANTILES, "score": "mean squared reconstruction error",
                "augmentation": "random horizontal flip (training only)"}
    keys = ("gan_image_size", "gan_epochs", "encoder_epochs", "gan_width", "latent_dim", "gan_lr",
            "gan_batch", "n_critic", "gp_weight", "kappa", "encoder_gen_bn")
    return {**{k: cfg[k] for k in keys}, **_QUANTILES, "image_size": cfg["gan_image_size"],
            "epochs": cfg["gan_epochs"], "score": "A(x) = image + kappa * feature residual"}


def save(evals: Sequence[experiment.Evaluation], trained: Trained, data: Data, cfg: dict[str, Any], *,
         results_dir: str | Path, profile: str, seed: int, run: str) -> list[Path]:
    """One results file (scores CSV, model bundle) per evaluation, via :func:`adlib.experiment.save`."""
    return [experiment.save(ev, results_dir=results_dir, notebook=NOTEBOOK, split=data.split, synthetic=data.synthetic,
                            profile=profile, seed=seed, run=run, train_seconds=trained.train_seconds,
                            params=params(cfg, trained.variant), bundle=notebook04_bundle(ev, trained, data, cfg, run))
            for ev in evals]
