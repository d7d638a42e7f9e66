"""Notebook 04: f-AnoGAN versus a plain autoencoder on MVTec bottle and carpet (seed 001).

For every category the pipeline

1. reads and validates the data (MVTec layout; the synthetic stand-in when ``data_root`` is None)
   and holds out defect-free validation images from ``train/good`` for the thresholds;
2. trains the seed's autoencoder (:class:`adlib.models.ae256.ConvAutoencoder`) and scores each
   test image by its mean squared reconstruction error;
3. trains f-AnoGAN (:mod:`adlib.models.fanogan`): a WGAN-GP (critic every batch, generator every
   ``n_critic``-th batch), then the izi_f encoder with generator and critic frozen, and scores
   each image with ``A(x)``;
4. computes the metrics and writes one results file per method (``ae-256``, ``f-anogan``).

All training goes through :func:`adlib.train.load_or_train` (checkpoints under
``<results_dir>/<notebook>/checkpoints/<dataset>-<category>/``); the GAN's critic/generator
alternation is a custom ``step_fn``. During GAN training a sample grid from a fixed latent batch
and a generator snapshot are kept every ``sample_every`` epochs, so a collapsed run stays visible.

Settings: one ``PROFILES`` table. ``image_size``/``epochs`` (the GUIDE's IMAGE_SIZE/EPOCHS)
belong to the autoencoder; the GAN has its own ``gan_image_size``, ``gan_epochs`` and
``encoder_epochs``.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from adlib import config, maps, metrics, published, results, thresholds, train
from adlib.data.mvtec import read_mvtec
from adlib.data.torchdata import ImageDataset, RandomAugment, holdout, make_loader
from adlib.data.types import DataError, Split
from adlib.data.validate import ValidationReport, validate_split
from adlib.models import fanogan as fg
from adlib.models.ae256 import ConvAutoencoder

NOTEBOOK = "04_fanogan_vs_autoencoder"
DATASET = "mvtec"
AE_METHOD = "ae-256"
GAN_METHOD = "f-anogan"
SEED_CATEGORIES = ("bottle", "carpet")
"""The two categories seed 001 reports (and the default of the notebook's CATEGORIES)."""

# The seed's settings are the "paper" profile; "cpu" trades size and epochs for minutes on a
# 2-core CPU (the autoencoder at 128 px, a narrow DCGAN at 64 px); "smoke" only exercises the code.
# The cpu GAN settings were chosen on defect-free validation images of real MVTec bottle (the
# generator's coverage of them and the encoder's reconstruction error), not on test data:
# batch 16 (twice the generator updates per epoch of batch 32, same n_critic=5 as the seed) and
# encoder_gen_bn="batch" (see train_fanogan) each lowered the validation reconstruction error.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "synthetic_size": "tiny", "val_fraction": 0.25,
        "image_size": 32, "epochs": 2, "ae_width": 8, "ae_latent": 1024, "ae_lr": 1e-3,
        "ae_batch": 8,
        "gan_image_size": 32, "gan_epochs": 5, "encoder_epochs": 2, "gan_width": 8,
        "latent_dim": 100, "gan_lr": 2e-4, "gan_batch": 32, "n_critic": 5, "gp_weight": 10.0,
        "kappa": 1.0, "encoder_gen_bn": "batch", "sample_every": 1,
    },
    "cpu": {
        "synthetic_size": "default", "val_fraction": 0.1,
        "image_size": 128, "epochs": 30, "ae_width": 32, "ae_latent": 1024, "ae_lr": 1e-3,
        "ae_batch": 16,
        "gan_image_size": 64, "gan_epochs": 600, "encoder_epochs": 60, "gan_width": 16,
        "latent_dim": 100, "gan_lr": 2e-4, "gan_batch": 16, "n_critic": 5, "gp_weight": 10.0,
        "kappa": 1.0, "encoder_gen_bn": "batch", "sample_every": 100,
    },
    "paper": {
        "synthetic_size": "default", "val_fraction": 0.1,
        "image_size": 256, "epochs": 300, "ae_width": 32, "ae_latent": 1024, "ae_lr": 1e-3,
        "ae_batch": 16,
        "gan_image_size": 64, "gan_epochs": 1500, "encoder_epochs": 200, "gan_width": 64,
        "latent_dim": 100, "gan_lr": 2e-4, "gan_batch": 32, "n_critic": 5, "gp_weight": 10.0,
        "kappa": 1.0, "encoder_gen_bn": "frozen", "sample_every": 100,
    },
}
"""Per-profile settings (see the module docstring for which model each key belongs to)."""

PIXEL_QUANTILE = 0.99
"""Pixel threshold: this quantile of the defect-free validation maps (1 % of normal pixels flagged)."""
IMAGE_QUANTILE = 0.95
"""Image threshold shown in the score plots: this quantile of the validation image scores."""


class ConfigError(ValueError):
    """A notebook parameter is invalid (raised before any data is read or model trained)."""


# --------------------------------------------------------------------------- settings and data


def settings_for(profile: str, **overrides: Any) -> dict[str, Any]:
    """The profile's settings with the non-``None`` overrides applied (keys of :data:`PROFILES`).

    Raises:
        ConfigError: an override names no known setting, or an image size the networks cannot use.
    """
    known = set(PROFILES["cpu"])
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"Unknown setting(s) {unknown}; known: {sorted(known)}.")
    s = config.pick(profile, PROFILES, overrides)
    for key in ("image_size", "gan_image_size"):
        size = s[key]
        if size < 8 or 2 ** round(math.log2(size)) != size:
            raise ConfigError(f"{key.upper()}={size}: use a power of two >= 8 (e.g. 64, 128, 256).")
    for key in ("epochs", "gan_epochs", "encoder_epochs"):
        if int(s[key]) < 1:
            raise ConfigError(f"{key.upper()}={s[key]}: must be at least 1.")
    if s["encoder_gen_bn"] not in ("frozen", "batch"):
        raise ConfigError(f"encoder_gen_bn={s['encoder_gen_bn']!r}: use 'frozen' (BatchNorm statistics "
                          "of GAN training) or 'batch' (adapted during encoder training).")
    return s


def resolve_categories(category: str, categories: Sequence[str] | None) -> list[str]:
    """Which categories a run covers.

    ``categories`` (the notebook's CATEGORIES) lists them; ``category`` (the GUIDE's CATEGORY)
    is the one shown in detail. If ``category`` is not in ``categories`` (e.g. ``papermill -p
    CATEGORY transistor``), only ``category`` is run; ``categories=None`` also means ``[category]``.

    Returns:
        The categories, ``category`` first, without duplicates.

    Raises:
        ConfigError: empty or non-string names.
    """
    if categories is not None and (isinstance(categories, str) or not list(categories)):
        raise ConfigError(
            f"CATEGORIES={categories!r}: give a non-empty list such as ['bottle', 'carpet'] "
            """(papermill: -y 'CATEGORIES: [bottle, carpet]'; -p passes a string).""")
    names = [category] if categories is None or category not in categories else list(categories)
    if any(not isinstance(c, str) or not c.strip() for c in names):
        raise ConfigError(f"Category names must be non-empty strings, got {names!r}.")
    ordered = [category] + [c for c in names if c != category]
    return list(dict.fromkeys(ordered))


KEEP_DECODED_BYTES = 2 * 2**30
"""Decoded arrays :func:`load_category` keeps for :func:`datasets` (all categories together);
a category that does not fit is decoded again by :func:`datasets` instead."""

_decoded: dict[int, tuple[weakref.ref, ValidationReport, list[int]]] = {}


def _keep_decoded(split: Split, report: ValidationReport, sizes: list[int]) -> None:
    """Hold ``report``'s arrays until :func:`datasets` has been called once per entry of
    ``sizes`` (or ``split`` dies)."""
    def nbytes(r: ValidationReport) -> int:
        return sum(a.nbytes for a in r.images.values()) + sum(a.nbytes for a in r.masks.values())

    held = sum(nbytes(r) for _, r, _ in _decoded.values())
    if held + nbytes(report) > KEEP_DECODED_BYTES:
        return
    key = id(split)
    _decoded[key] = (weakref.ref(split, lambda _: _decoded.pop(key, None)), report, list(sizes))


def _take_decoded(split: Split, image_size: int) -> ValidationReport | None:
    """The arrays kept for ``split`` (None if none); released once every size was built."""
    entry = _decoded.get(id(split))
    if entry is None or entry[0]() is not split:
        return None
    _, report, sizes = entry
    if int(image_size) in sizes:
        sizes.remove(int(image_size))
    if not sizes:
        del _decoded[id(split)]
    return report


def load_category(data_root: str | Path | None, category: str, settings: dict[str, Any],
                  seed: int = 0) -> tuple[Split, bool]:
    """Read and validate one category (decodes every file once).

    The decoded arrays are kept (within :data:`KEEP_DECODED_BYTES`) until :func:`datasets` has
    built the datasets at both image sizes, so no file is decoded twice.

    Args:
        data_root: folder holding ``<category>/`` in the MVTec layout, or ``None`` for the
            synthetic stand-in (generated once, cached).
        category: MVTec category.
        settings: from :func:`settings_for` (``synthetic_size``).
        seed: generator seed for the synthetic stand-in.

    Returns:
        ``(split, synthetic)``.

    Raises:
        DataError: missing or malformed data (names the path and the fix).
    """
    synthetic = data_root is None
    if synthetic:
        from adlib.data.synthetic import ensure_synthetic

        root = ensure_synthetic("mvtec", category, size=settings["synthetic_size"], seed=seed)
    else:
        root = Path(data_root).expanduser()
    split = read_mvtec(root, category)
    report = validate_split(split, check_images=True, keep_arrays=True, progress=False)
    n_val = max(1, round(settings["val_fraction"] * len(split.train)))
    if len(split.train) - n_val < 2:
        raise DataError(f"{root / category}/train/good holds {len(split.train)} image(s): too few to "
                        "hold out validation images and train. Fix: add defect-free images.")
    _keep_decoded(split, report, [int(settings["image_size"]), int(settings["gan_image_size"])])
    return split, synthetic


def load_all(data_root: str | Path | None, categories: Sequence[str], settings: dict[str, Any],
             seed: int = 0) -> dict[str, tuple[Split, bool]]:
    """:func:`load_category` for every category, so bad input fails before any training."""
    return {c: load_category(data_root, c, settings, seed) for c in categories}


@dataclass
class Data:
    """Datasets of one category at one image size (images in [0, 1]; models see ``2x - 1``)."""

    train: ImageDataset
    val: ImageDataset
    test: ImageDataset


def datasets(split: Split, image_size: int, settings: dict[str, Any], seed: int = 0) -> Data:
    """Train (random horizontal flip only), validation and test datasets (no augmentation)."""
    train_s, val_s = holdout(split.train, settings["val_fraction"], seed)
    flip = RandomAugment(hflip=0.5, vflip=0.0, rot90=False)
    kw = {"image_size": image_size, "channels": split.channels, "progress": False,
          "decoded": _take_decoded(split, image_size)}
    return Data(
        train=ImageDataset(train_s, augment=flip, seed=seed, **kw),
        val=ImageDataset(val_s, **kw),
        test=ImageDataset(split.test, with_masks=split.has_masks, **kw),
    )


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (mean 0.5, std 0.5, as in the seed)."""
    return x * 2.0 - 1.0


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1.0) / 2.0


def _checkpoint_dir(results_dir: str | Path, category: str, synthetic: bool) -> Path:
    tag = f"{DATASET}-synthetic" if synthetic else DATASET
    return Path(results_dir) / NOTEBOOK / "checkpoints" / f"{tag}-{category}"


def _data_key(split: Split, synthetic: bool, seed: int) -> dict[str, Any]:
    return {"root": str(Path(split.root).resolve()), "category": split.category,
            "synthetic": synthetic, "n_train": len(split.train), "seed": seed}


# --------------------------------------------------------------------------- training


def train_autoencoder(split: Split, synthetic: bool, data: Data, settings: dict[str, Any], *,
                      results_dir: str | Path, device: torch.device, seed: int = 0,
                      force_train: bool = False) -> tuple[ConvAutoencoder, train.History]:
    """Train (or load) the seed's autoencoder with MSE on normalised images."""
    s = settings
    train.seed_everything(seed)
    model = ConvAutoencoder(s["image_size"], split.channels, s["ae_latent"], width=s["ae_width"])
    opt = torch.optim.Adam(model.parameters(), lr=s["ae_lr"])
    loader = make_loader(data.train, batch_size=s["ae_batch"], shuffle=True, seed=seed)
    cfg = {"model": "ae", **_data_key(split, synthetic, seed),
           **{k: s[k] for k in ("image_size", "ae_width", "ae_latent", "ae_lr", "ae_batch", "val_fraction")}}

    def step(m: nn.Module, batch: dict) -> torch.Tensor:
        x = normalise(batch["image"])
        return ((m(x) - x) ** 2).mean()

    def val(m: nn.Module) -> float:
        x = normalise(torch.stack([data.val[i]["image"] for i in range(len(data.val))]).to(device))
        return float(((m(x) - x) ** 2).mean())

    history = train.load_or_train(
        model, loader, checkpoint_path=_checkpoint_dir(results_dir, split.category, synthetic) / "ae.pt",
        config=cfg, epochs=s["epochs"], force_train=force_train, optimizer=opt, device=device,
        step_fn=step, val_fn=val, checkpoint_every=max(1, s["epochs"] // 10),
        desc=f"AE {split.category}")
    return model.eval(), history


@dataclass
class GanRun:
    """A trained f-AnoGAN: the three networks, both training histories and the kept snapshots."""

    generator: fg.Generator
    critic: fg.Critic
    encoder: fg.Encoder
    gan_history: train.History
    encoder_history: train.History
    sample_grids: list[Path] = field(default_factory=list)
    """PNG sample grids (fixed latent batch) written during GAN training, oldest first."""

    @property
    def train_seconds(self) -> float:
        """GAN plus encoder training time."""
        return self.gan_history.train_seconds + self.encoder_history.train_seconds


def _save_grid(images: torch.Tensor, path: Path) -> Path:
    import torchvision.utils as vutils

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    vutils.save_image(denormalise(images).clamp(0, 1), tmp, nrow=8, padding=2)
    tmp.replace(path)
    return path


def train_fanogan(split: Split, synthetic: bool, data: Data, settings: dict[str, Any], *,
                  results_dir: str | Path, device: torch.device, seed: int = 0,
                  force_train: bool = False) -> GanRun:
    """Step 1: WGAN-GP; step 2: izi_f encoder with G and D frozen (both via ``load_or_train``).

    ``settings["encoder_gen_bn"]``: ``"frozen"`` keeps the generator entirely fixed in step 2
    (BatchNorm with the running statistics of GAN training); ``"batch"`` keeps its weights fixed
    but lets its BatchNorm layers normalise with batch statistics of the encoded training images,
    whose running averages are then used for scoring.
    """
    s = settings
    size, ch, width, zdim = s["gan_image_size"], split.channels, s["gan_width"], s["latent_dim"]
    ckpt_dir = _checkpoint_dir(results_dir, split.category, synthetic)
    train.seed_everything(seed)
    gen, critic = fg.Generator(zdim, ch, size, width), fg.Critic(ch, size, width)
    gan = nn.ModuleDict({"generator": gen, "critic": critic})
    betas = (0.5, 0.9)
    opts = {"critic": torch.optim.Adam(critic.parameters(), lr=s["gan_lr"], betas=betas),
            "generator": torch.optim.Adam(gen.parameters(), lr=s["gan_lr"], betas=betas)}
    batch = min(s["gan_batch"], len(data.train))
    loader = make_loader(data.train, batch_size=batch, shuffle=True, seed=seed, drop_last=True)
    gan_cfg = {"model": "wgan-gp", **_data_key(split, synthetic, seed),
               **{k: s[k] for k in ("gan_image_size", "gan_width", "latent_dim", "gan_lr",
                                    "gan_batch", "n_critic", "gp_weight", "val_fraction")}}
    fixed_z = fg.sample_latent(32, zdim, generator=torch.Generator().manual_seed(seed + 1))
    grid_dir = ckpt_dir / "samples"

    def gan_step(m: nn.ModuleDict, b: dict, ctx: train.StepContext) -> dict[str, torch.Tensor]:
        real = normalise(b["image"])
        logs = fg.critic_step(m["generator"], m["critic"], ctx.optimizers["critic"], real,
                              s["gp_weight"])
        if (ctx.step + 1) % s["n_critic"] == 0:
            logs.update(fg.generator_step(m["generator"], m["critic"], ctx.optimizers["generator"],
                                          real.shape[0]))
        return logs

    def keep_snapshot(epoch: int, history: train.History) -> None:
        done = epoch + 1
        if done % s["sample_every"] and done != s["gan_epochs"]:
            return
        gen.eval()
        with torch.no_grad():
            _save_grid(gen(fixed_z.to(device)).cpu(), grid_dir / f"gan_epoch{done:05d}.png")
        gen.train()
        train.save_checkpoint({"epoch": done, "generator": gen.state_dict()},
                              ckpt_dir / "snapshots" / f"generator_epoch{done:05d}.pt")

    if force_train and grid_dir.exists():
        for old in grid_dir.glob("gan_epoch*.png"):
            old.unlink()
    gan_hist = train.load_or_train(
        gan, loader, checkpoint_path=ckpt_dir / "gan.pt", config=gan_cfg, epochs=s["gan_epochs"],
        force_train=force_train, optimizer=opts, device=device, step_fn=gan_step,
        on_epoch_end=keep_snapshot, checkpoint_every=s["sample_every"],
        desc=f"WGAN-GP {split.category}")

    gen.eval().requires_grad_(False)
    critic.eval().requires_grad_(False)
    train.seed_everything(seed)
    enc = fg.Encoder(zdim, ch, size, width)
    enc_opt = torch.optim.Adam(enc.parameters(), lr=s["gan_lr"], betas=(0.5, 0.999))
    enc_loader = make_loader(data.train, batch_size=batch, shuffle=True, seed=seed)
    bn_mode = s["encoder_gen_bn"]
    enc_cfg = {"model": "izif-encoder", "gan": train.config_hash({**gan_cfg, "epochs": s["gan_epochs"]}),
               "kappa": s["kappa"], "batch": batch, "encoder_gen_bn": bn_mode}
    # The encoder checkpoint also holds the generator: its weights stay those of step 1, but with
    # encoder_gen_bn="batch" its BatchNorm running statistics follow the encoded training images.
    enc_model = nn.ModuleDict({"encoder": enc, "generator": gen})

    def enc_step(m: nn.ModuleDict, b: dict) -> torch.Tensor:
        # fit() puts the whole ModuleDict in train mode; "frozen" keeps G's BatchNorm in eval mode
        # (running statistics from GAN training), "batch" lets it normalise with batch statistics.
        m["generator"].train(bn_mode == "batch")
        return fg.izif_loss(m["encoder"], m["generator"], critic, normalise(b["image"]), s["kappa"])

    def enc_val(m: nn.ModuleDict) -> float:  # fit() calls this in eval mode: no statistics change
        x = normalise(torch.stack([data.val[i]["image"] for i in range(len(data.val))]).to(device))
        return float(fg.izif_loss(m["encoder"], m["generator"], critic, x, s["kappa"]))

    enc_hist = train.load_or_train(
        enc_model, enc_loader, checkpoint_path=ckpt_dir / "encoder.pt", config=enc_cfg,
        epochs=s["encoder_epochs"], force_train=force_train, optimizer=enc_opt, device=device,
        step_fn=enc_step, val_fn=enc_val, checkpoint_every=max(1, s["encoder_epochs"] // 10),
        desc=f"izi_f encoder {split.category}")
    gen.eval()
    return GanRun(gen, critic, enc.eval(), gan_hist, enc_hist, sorted(grid_dir.glob("gan_epoch*.png")))


# --------------------------------------------------------------------------- scoring


@dataclass
class Scored:
    """One method's outputs on one category (images, maps and scores at the model's size)."""

    method: str
    scores: np.ndarray
    """(N,) image anomaly scores of the test images."""
    val_scores: np.ndarray
    """(M,) image scores of the defect-free validation images."""
    maps: np.ndarray
    """(N, H, W) anomaly maps of the test images."""
    val_maps: np.ndarray
    images: np.ndarray
    """(N, C, H, W) test images in [0, 1]."""
    recons: np.ndarray
    """(N, C, H, W) reconstructions in [0, 1]."""
    masks: np.ndarray | None
    """(N, H, W) ground truth, or None when the data has no masks."""


def _batches(ds: ImageDataset, device: torch.device, batch_size: int = 32):
    for i in range(0, len(ds), batch_size):
        yield torch.stack([ds[j]["image"] for j in range(i, min(i + batch_size, len(ds)))]).to(device)


def _masks(ds: ImageDataset) -> np.ndarray | None:
    if not ds.with_masks:
        return None
    return np.stack([ds[i]["mask"][0].numpy() > 0.5 for i in range(len(ds))])


def _score_with(data: Data, method: str, fn, device: torch.device) -> Scored:  # noqa: ANN001
    """Run ``fn(x01) -> (recon01, map, score)`` over the test and validation images."""
    out: dict[str, dict[str, list]] = {}
    for name, ds in (("test", data.test), ("val", data.val)):
        parts: dict[str, list] = {"x": [], "r": [], "m": [], "s": []}
        for x in _batches(ds, device):
            recon, amap, score = fn(x)
            parts["x"].append(x.cpu())
            parts["r"].append(recon.cpu())
            parts["m"].append(amap.cpu())
            parts["s"].append(score.cpu())
        out[name] = {k: torch.cat(v).numpy() for k, v in parts.items()}
    return Scored(method, out["test"]["s"].astype(np.float64), out["val"]["s"].astype(np.float64),
                  out["test"]["m"], out["val"]["m"], out["test"]["x"], out["test"]["r"], _masks(data.test))


def score_autoencoder(model: ConvAutoencoder, data: Data, device: torch.device) -> Scored:
    """Map = squared error (channel mean, [0, 1] units); score = its image mean (the MSE)."""
    model.to(device).eval()

    @torch.no_grad()
    def fn(x01: torch.Tensor):
        recon = denormalise(model(normalise(x01))).clamp(0, 1)
        amap = torch.from_numpy(maps.residual_map(x01, recon, kind="l2"))
        return recon, amap, torch.from_numpy(maps.image_scores(amap, "mean"))

    return _score_with(data, AE_METHOD, fn, device)


def score_fanogan(run: GanRun, data: Data, device: torch.device, kappa: float) -> Scored:
    """Score = ``A(x)`` (computed on [-1, 1] images as in the paper); map = ``|x - G(E(x))|``."""
    for net in (run.generator, run.critic, run.encoder):
        net.to(device).eval()

    @torch.no_grad()
    def fn(x01: torch.Tensor):
        out = fg.anomaly_score(run.encoder, run.generator, run.critic, normalise(x01), kappa)
        recon = denormalise(out["recon"]).clamp(0, 1)
        amap = torch.from_numpy(maps.residual_map(x01, recon, kind="l1"))
        return recon, amap, out["score"]

    return _score_with(data, GAN_METHOD, fn, device)


# --------------------------------------------------------------------------- metrics and results


@dataclass
class MethodResult:
    """Metrics, thresholds and the written results file of one method on one category."""

    scored: Scored
    metrics: dict[str, Any]
    image_threshold: thresholds.Threshold
    pixel_threshold: thresholds.Threshold
    image_oracle: thresholds.Threshold
    train_seconds: float
    results_path: Path
    frame: pd.DataFrame
    """The scores CSV content: ``path, label, defect, score``."""

    def decision_table(self) -> pd.DataFrame:
        """Image-level precision/recall/F1 at the honest (validation) and the oracle threshold."""
        labels = self.frame["label"].to_numpy()
        rows = []
        for thr in (self.image_threshold, self.image_oracle):
            prf = metrics.image_prf(self.scored.scores, labels, thr.value)
            rows.append({"method": self.scored.method, "threshold source": thr.source,
                         "threshold": thr.value, "precision": prf.precision,
                         "recall": prf.recall, "F1": prf.f1})
        return pd.DataFrame(rows)


def evaluate(scored: Scored, split: Split, synthetic: bool, settings: dict[str, Any], *,
             profile: str, seed: int, train_seconds: float, results_dir: str | Path,
             params: dict[str, Any]) -> MethodResult:
    """Metrics (pixel ones only with masks), validation thresholds, and the results files."""
    labels = np.array([s.label for s in split.test])
    defects = [s.defect for s in split.test]
    pix_thr = thresholds.threshold_from_normal(scored.val_maps, method="quantile", q=PIXEL_QUANTILE)
    img_thr = thresholds.threshold_from_normal(scored.val_scores, method="quantile", q=IMAGE_QUANTILE)
    summary = results.metrics_summary(scores=scored.scores, labels=labels, maps=scored.maps,
                                      masks=scored.masks, threshold=pix_thr, defects=defects)
    frame = pd.DataFrame({"path": [str(s.path) for s in split.test], "label": labels,
                          "defect": defects, "score": scored.scores})
    img_oracle = thresholds.oracle_best_f1_threshold(scored.scores, labels)
    path = results.save_results(
        results_dir, notebook=NOTEBOOK, method=scored.method, dataset=DATASET,
        category=split.category, synthetic=synthetic, profile=profile, seed=seed,
        metrics=summary, scores=frame, threshold=pix_thr, train_seconds=train_seconds,
        params={**params, **threshold_params(scored, labels, img_thr, img_oracle)})
    return MethodResult(scored, summary, img_thr, pix_thr, img_oracle, train_seconds, path, frame)


def threshold_params(scored: Scored, labels: np.ndarray, image_threshold: thresholds.Threshold,
                     image_oracle: thresholds.Threshold) -> dict[str, Any]:
    """Honest and ORACLE thresholds for the results ``params`` (read by notebook 05).

    Returns:
        ``image_threshold``/``image_threshold_source`` (defect-free validation scores),
        ``oracle_image_threshold``/``oracle_image_f1`` (best F1 on the test set) and, when the
        test masks hold defective pixels, ``oracle_pixel_threshold``/``oracle_pixel_f1``.
    """
    out: dict[str, Any] = {
        "image_threshold": float(image_threshold.value),
        "image_threshold_source": image_threshold.source,
        "oracle_image_threshold": float(image_oracle.value),
        "oracle_image_f1": float(metrics.image_prf(scored.scores, labels, image_oracle.value).f1),
    }
    if scored.masks is not None and scored.masks.any():
        pix_oracle = thresholds.oracle_best_f1_threshold(scored.maps, scored.masks)
        out["oracle_pixel_threshold"] = float(pix_oracle.value)
        out["oracle_pixel_f1"] = float(metrics.pixel_prf(scored.maps, scored.masks, pix_oracle.value).f1)
    return out


@dataclass
class CategoryRun:
    """Everything the notebook shows for one category."""

    category: str
    split: Split
    synthetic: bool
    ae_model: ConvAutoencoder
    ae_history: train.History
    gan: GanRun
    ae: MethodResult
    fanogan: MethodResult
    ae_data: Data
    gan_data: Data


def run_category(split: Split, synthetic: bool, settings: dict[str, Any], *, profile: str,
                 device: torch.device, seed: int = 0, results_dir: str | Path = "results") -> CategoryRun:
    """Train (or load) both models on one validated category, score, and write both results files.

    The smoke profile always retrains (so CI exercises the training code).
    """
    force = config.resolve_profile(profile) == "smoke"
    s = settings
    ae_data = datasets(split, s["image_size"], s, seed)
    t0 = time.perf_counter()
    ae_model, ae_hist = train_autoencoder(split, synthetic, ae_data, s, results_dir=results_dir,
                                          device=device, seed=seed, force_train=force)
    ae_scored = score_autoencoder(ae_model, ae_data, device)
    ae_params = {k: s[k] for k in ("image_size", "epochs", "ae_width", "ae_latent", "ae_lr", "ae_batch")}
    ae_res = evaluate(ae_scored, split, synthetic, s, profile=profile, seed=seed,
                      train_seconds=ae_hist.train_seconds, results_dir=results_dir,
                      params={**ae_params, "score": "mean squared reconstruction error",
                              "augmentation": "random horizontal flip (training only)"})
    gan_data = datasets(split, s["gan_image_size"], s, seed)
    gan = train_fanogan(split, synthetic, gan_data, s, results_dir=results_dir, device=device,
                        seed=seed, force_train=force)
    gan_scored = score_fanogan(gan, gan_data, device, s["kappa"])
    gan_params = {k: s[k] for k in ("gan_image_size", "gan_epochs", "encoder_epochs", "gan_width",
                                    "latent_dim", "gan_lr", "gan_batch", "n_critic", "gp_weight",
                                    "kappa", "encoder_gen_bn")}
    gan_res = evaluate(gan_scored, split, synthetic, s, profile=profile, seed=seed,
                       train_seconds=gan.train_seconds, results_dir=results_dir,
                       params={**gan_params, "image_size": s["gan_image_size"],
                               "epochs": s["gan_epochs"], "score": "A(x) = image + kappa * feature residual"})
    print(f"{split.category}: done in {time.perf_counter() - t0:.0f} s "
          f"(AE {ae_hist.train_seconds:.0f} s, f-AnoGAN {gan.train_seconds:.0f} s of training)")
    return CategoryRun(split.category, split, synthetic, ae_model, ae_hist, gan, ae_res, gan_res,
                       ae_data, gan_data)


def comparison_table(runs: Sequence[CategoryRun]) -> pd.DataFrame:
    """Our image AUROC/AUPR beside seed 001's published numbers, one row per (method, category)."""
    pub = published.published_table(seed="001")
    names = {AE_METHOD: "autoencoder", GAN_METHOD: "f-anogan"}
    rows = []
    for run in runs:
        for method, res in ((AE_METHOD, run.ae), (GAN_METHOD, run.fanogan)):
            row = {"method": method, "category": run.category,
                   "data": "synthetic" if run.synthetic else "real",
                   "AUROC (ours)": res.metrics["image_auroc"], "AUPR (ours)": res.metrics["image_aupr"]}
            for metric, col in (("image_auroc", "AUROC (seed 001)"), ("image_aupr", "AUPR (seed 001)")):
                hit = pub[(pub["category"] == run.category) & (pub["method"] == names[method])
                          & (pub["metric"] == metric)]
                row[col] = float(hit["value"].iloc[0]) if len(hit) else None
            row["train s"] = round(res.train_seconds, 1)
            rows.append(row)
    cols = ["method", "category", "data", "AUROC (ours)", "AUROC (seed 001)", "AUPR (ours)",
            "AUPR (seed 001)", "train s"]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- quality checks


@torch.no_grad()
def encoder_checks(run: CategoryRun, n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """The seed's encoder checks, images in [0, 1].

    Returns:
        ``{"x", "x_recon"}``: defect-free validation images and ``G(E(x))``;
        ``{"g_z", "g_cycle"}``: generated images ``G(z)`` and ``G(E(G(z)))`` (the z cycle).
    """
    gen, enc = run.gan.generator.eval(), run.gan.encoder.eval()
    dev = next(gen.parameters()).device
    ds = run.gan_data.val if len(run.gan_data.val) else run.gan_data.train
    x = torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))]).to(dev)
    z = fg.sample_latent(n, gen.latent_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    g_z = gen(z)
    out = {"x": x, "x_recon": denormalise(gen(enc(normalise(x)))),
           "g_z": denormalise(g_z), "g_cycle": denormalise(gen(enc(g_z)))}
    return {k: v.clamp(0, 1).cpu().numpy() for k, v in out.items()}


def _mean_pairwise_distance(x: torch.Tensor) -> float:
    flat = x.flatten(1).double()
    n = len(flat)
    return float(torch.cdist(flat, flat).sum() / (n * (n - 1)))


@torch.no_grad()
def gan_diagnostics(run: CategoryRun, n: int = 256, seed: int = 0) -> dict[str, Any]:
    """Numbers that show whether the GAN trained and how well it covers normal images.

    Computed from this run only (training history, generator, encoder, defect-free validation
    images); no test data is used.

    Returns:
        ``peak_wasserstein``/``peak_epoch`` (largest epoch-mean Wasserstein estimate),
        ``peak_gp``, ``final_wasserstein``/``final_gp`` (mean over the last tenth of the epochs),
        ``diversity`` (mean pairwise distance of ``n`` generated images divided by that of
        training images: near 1 is healthy, far below 1 means mode collapse),
        ``val_nearest_mse`` (per validation image, the MSE to the closest of the ``n`` generated
        images, averaged: lower = the generator covers the normal images better) and
        ``val_image_residual`` (mean ``||x - G(E(x))||^2 / n`` on validation images).
    """
    import copy

    ep = run.gan.gan_history.to_frame("epoch")
    tail = ep.tail(max(1, len(ep) // 10))
    peak = int(ep["wasserstein"].idxmax())
    gen = run.gan.generator
    dev = next(gen.parameters()).device
    z = fg.sample_latent(n, gen.latent_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
    # batch statistics, as the critic saw the generator in training (a copy: no buffer changes)
    fake = copy.deepcopy(gen).train()(z).cpu()
    train_ds, val_ds = run.gan_data.train, run.gan_data.val
    real = normalise(torch.stack([train_ds[i]["image"] for i in range(min(n, len(train_ds)))]))
    val = normalise(torch.stack([val_ds[i]["image"] for i in range(len(val_ds))]))
    nearest = (torch.cdist(val.flatten(1), fake.flatten(1)) ** 2).min(1).values / val[0].numel()
    recon = fg.anomaly_score(run.gan.encoder, gen.eval(), run.gan.critic, val.to(dev))
    return {
        "category": run.category,
        "peak_wasserstein": float(ep["wasserstein"].max()), "peak_epoch": int(ep["epoch"][peak]) + 1,
        "peak_gp": float(ep["gp"].max()),
        "final_wasserstein": float(tail["wasserstein"].mean()), "final_gp": float(tail["gp"].mean()),
        "diversity": _mean_pairwise_distance(fake) / _mean_pairwise_distance(real),
        "val_nearest_mse": float(nearest.mean()),
        "val_image_residual": float(recon["image_residual"].mean()),
    }


def snapshot_images(run: CategoryRun) -> tuple[list[np.ndarray], list[str]]:
    """The sample grids kept during GAN training (fixed latent batch) and their titles."""
    from adlib.data.io import read_image

    paths = run.gan.sample_grids
    return [read_image(p) for p in paths], [f"epoch {int(p.stem.split('epoch')[-1])}" for p in paths]


def example_rows(res: MethodResult, per_defect: int = 1) -> list[int]:
    """Indices of test images to show: the first ``per_defect`` of every defect type (good first)."""
    frame = res.frame
    order = ["good"] + sorted(d for d in frame["defect"].unique() if d != "good")
    idx: list[int] = []
    for d in order:
        idx += list(frame.index[frame["defect"] == d][:per_defect])
    return idx
