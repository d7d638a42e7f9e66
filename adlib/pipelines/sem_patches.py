"""Notebook 03 pipeline: SEM nanofibre patches, three autoencoders + the feature denoiser (seed 003).

The notebook calls, in order: :func:`load_data` (read + validate, hold out defect-free
validation images, cut 32x32 patches) -> :func:`train_all` (each AE, then its denoiser with the
AE frozen, via ``load_or_train``) -> :func:`evaluate_all` (the three scores per patch,
validation threshold, patch metrics, stitched full-image maps and pixel metrics) ->
:func:`save_all` (nine results files). Studies: :func:`depth_study` (denoiser with 10 vs 20
layers).

Conventions (kept the same everywhere in this notebook):

* A score is a per-pixel MEAN of squared differences over the patch (the seed's ``||.||^2``
  divided by the number of pixels: the same ranking, a readable scale):
  ``rec = mean (x - AE(x))^2``, ``smooth = mean (x - x_den)^2``, ``feature = mean (x - f_mask)^2``.
* A "test image" row of the results' scores CSV is a TEST PATCH (the seed evaluates patches):
  ``path`` is ``<image file>#y=<row>,x=<col>`` (file relative to the dataset root; top-left corner), ``label`` the patch label from
  its mask, ``score`` the patch score. The JSON's ``image_auroc`` / ``image_aupr`` are therefore
  the seed's patch-level AUROC / AUPR, recomputable from the CSV.
* Pixel metrics come from full-image maps: each pixel gets the mean score of the test patches
  that cover it (:func:`adlib.maps.stitch_patches`). ``pixel_f1/precision/recall`` threshold
  these maps at the same validation threshold as the patches (same scale).
* The seed's patch precision / recall / F1 (its Tables 1-3) are stored in ``params["patch_prf"]``
  (validation threshold) and ``params["patch_prf_oracle"]`` (best F1 on the test patches: an
  oracle, shown only next to the honest numbers).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import ndimage
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from adlib import maps as MAPS
from adlib import metrics as MET
from adlib import results as R
from adlib import thresholds as T
from adlib import viz
from adlib.data.patches import PatchSet, labelled_grid_patches
from adlib.data.sem import read_sem, sem_patches
from adlib.data.torchdata import PatchDataset, holdout, make_loader
from adlib.data.types import GOOD, Sample, Split
from adlib.data.validate import validate_split
from adlib.models.denoiser import FeatureDenoiser, denoiser_step
from adlib.models.patch_ae import KINDS, PatchAutoencoder, build_patch_model, training_step
from adlib.published import published_table
from adlib.train import History, config_hash, load_or_train

NOTEBOOK = "03_sem_patch_autoencoder_denoiser"
SCORES: tuple[str, ...] = ("rec", "smooth", "feature")
MODEL_NAMES = {"sae": "SAE", "dae": "DAE", "cvae": "CVAE"}
SCORE_NAMES = {
    "rec": "AE reconstruction (Table 1)",
    "smooth": "denoiser smooth output (Table 2)",
    "feature": "denoiser feature mask (Table 3)",
}
_PUBLISHED_SUFFIX = {"rec": "", "smooth": " + denoiser (smooth)", "feature": " + denoiser (feature mask)"}

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "image_size": 32, "epochs": 1, "synthetic_size": "tiny", "n_train": 256, "stride": 16,
        "val_fraction": 0.5, "max_val_patches": 256, "label_min_fraction": 0.05, "base": 8,
        "latent_dim": 32, "batch_size": 64, "lr": 2e-3, "dae_noise": 0.1, "beta": 0.02,
        "den_depth": 4, "den_width": 8, "den_epochs": 1, "den_noise": 0.05, "den_lr": 1e-3,
        "depth_study": [2, 4], "threshold_q": 0.95, "threads": 1,
    },
    "cpu": {
        "image_size": 32, "epochs": 12, "synthetic_size": "default", "n_train": 3000, "stride": 24,
        "val_fraction": 0.2, "max_val_patches": 1000, "label_min_fraction": 0.05, "base": 16,
        "latent_dim": 64, "batch_size": 64, "lr": 2e-3, "dae_noise": 0.1, "beta": 0.02,
        "den_depth": 20, "den_width": 8, "den_epochs": 2, "den_noise": 0.05, "den_lr": 1e-3,
        "depth_study": [10, 20], "threshold_q": 0.95, "threads": 1,
    },
    "paper": {
        "image_size": 32, "epochs": 100, "synthetic_size": "default", "n_train": 20000,
        "stride": 16, "val_fraction": 0.2, "max_val_patches": 5000, "label_min_fraction": 0.05,
        "base": 32, "latent_dim": 128, "batch_size": 128, "lr": 1e-3, "dae_noise": 0.1,
        "beta": 0.02, "den_depth": 20, "den_width": 64, "den_epochs": 20, "den_noise": 0.05,
        "den_lr": 1e-3, "depth_study": [10, 20], "threshold_q": 0.95, "threads": 0,
    },
}
"""Per-profile settings. ``image_size`` is the PATCH side (32 in the seed); ``epochs`` are the
autoencoders' epochs, ``den_epochs`` the denoisers'. ``threads = 0`` leaves torch's default.

``beta`` weights the CVAE's KL term against the per-patch sum of squared errors. For a Gaussian
decoder with variance ``sigma^2`` the negative log-likelihood is ``SSE / (2 sigma^2)``, so the
loss ``SSE + beta * KL`` is seed eq. 3 with ``beta = 2 sigma^2``. The seed does not state
``sigma``; ``beta = 1`` would assume ``sigma ~ 0.7`` on [0, 1] pixels, far above any reconstruction
error, and the KL then wins (posterior collapse: the CVAE returns a near-average patch, its
validation MSE many times the SAE's). ``beta = 0.02`` assumes ``sigma = 0.1``, about the
reconstruction error the other autoencoders reach; set ``beta = 1.0`` for the literal unit-variance
reading."""


class PipelineError(ValueError):
    """A setting or input that the notebook-03 pipeline cannot use."""


def configure_threads(cfg: dict[str, Any]) -> int:
    """Apply ``cfg["threads"]`` to torch (0 = keep the default) and return the thread count."""
    if int(cfg.get("threads", 0)) > 0:
        torch.set_num_threads(int(cfg["threads"]))
    return torch.get_num_threads()


def method_name(kind: str, score: str) -> str:
    """Results-file method name, e.g. ``"dae-feature"``."""
    return f"{kind}-{score}"


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """Patches for training, defect-free validation and test, and where they came from."""

    split: Split
    synthetic: bool
    patches: PatchSet
    val: np.ndarray
    val_samples: list[Sample]
    train_samples: list[Sample]
    image_shapes: list[tuple[int, int]]

    @property
    def patch_size(self) -> int:
        """Patch side."""
        return int(self.patches.patch_size[0])

    @property
    def labels(self) -> np.ndarray:
        """0/1 label per test patch."""
        return self.patches.test_labels

    def test_masks(self) -> list[np.ndarray]:
        """Full-size ground-truth masks of the test images (bool HxW each)."""
        return [s.load_mask_or_empty(shape) for s, shape in zip(self.split.test, self.image_shapes, strict=True)]

    def patch_paths(self) -> list[str]:
        """``<image>#y=<row>,x=<col>`` for every test patch (the scores-CSV ``path``; the image
        path relative to the dataset root when it lies under it)."""
        root = Path(self.split.root)

        def rel(path: Path) -> str:
            try:
                return Path(path).relative_to(root).as_posix()
            except ValueError:
                return str(path)

        return [f"{rel(self.split.test[i].path)}#y={y},x={x}"
                for i, (y, x) in zip(self.patches.test_source, self.patches.test_coords, strict=True)]


def load_data(
    data_root: str | Path | None,
    category: str,
    cfg: dict[str, Any],
    seed: int = 0,
    progress: bool = True,
) -> Data:
    """Read the SEM set (synthetic stand-in when ``data_root`` is None), validate it, hold out
    defect-free validation images, and cut the patches.

    * training: ``n_train`` random patches of the remaining defect-free images;
    * validation: overlapping grid patches (``stride``) of the held-out defect-free images (at most
      ``max_val_patches``, drawn at random), for the threshold;
    * test: overlapping grid patches of the test images, labelled 1 when at least
      ``label_min_fraction`` of the patch is defect.

    Raises:
        DataError: missing or malformed data (reader / validation), before any training.
        PipelineError: unusable settings.
    """
    size = int(cfg["image_size"])
    if size % 8 or size < 8:
        raise PipelineError(f"IMAGE_SIZE (the patch side) must be a multiple of 8, got {size}; "
                            "seed 003 uses 32.")
    if int(cfg["stride"]) < 1:
        raise PipelineError(f"stride must be >= 1, got {cfg['stride']}.")
    synthetic = data_root is None
    if synthetic:
        from adlib.data.synthetic import ensure_synthetic

        root = ensure_synthetic("sem", category, size=cfg["synthetic_size"], seed=0, progress=progress)
    else:
        root = Path(data_root)
    split = read_sem(root, category=category, progress=progress)
    validate_split(split, check_images=True, progress=progress)
    train, val = holdout(split.train, cfg["val_fraction"], seed=seed)
    if not train or not val:
        raise PipelineError(f"{root}: {len(split.train)} defect-free images are too few to hold out "
                            "validation images; add images or change val_fraction.")
    patches = sem_patches(
        dataclasses.replace(split, train=train), size, n_train=int(cfg["n_train"]),
        stride=int(cfg["stride"]), min_fraction=float(cfg["label_min_fraction"]), seed=seed,
        progress=progress)
    val_patches = labelled_grid_patches(val, size, int(cfg["stride"]), channels=1,
                                        progress=progress)[0]
    cap = int(cfg["max_val_patches"])
    if len(val_patches) > cap:
        keep = np.sort(np.random.default_rng(seed).choice(len(val_patches), cap, replace=False))
        val_patches = val_patches[keep]
    shapes = [tuple(int(v) for v in s.load_image(channels=1).shape[:2]) for s in split.test]
    return Data(split=split, synthetic=synthetic, patches=patches, val=val_patches,
                val_samples=list(val), train_samples=list(train), image_shapes=shapes)


def describe(data: Data) -> pd.DataFrame:
    """Images and patches per role (train / validation / test)."""
    p = data.patches
    n_bad = int(p.test_labels.sum())
    return pd.DataFrame(
        {"images": [len(data.train_samples), len(data.val_samples), len(data.split.test)],
         "patches": [len(p.train), len(data.val), len(p.test)],
         "anomalous patches": [0, 0, n_bad]},
        index=pd.Index(["train (defect-free)", "validation (defect-free)", "test"], name="role"))


def to_tensor(patches: np.ndarray) -> torch.Tensor:
    """uint8 (N, P, P[, C]) patches -> float (N, C, P, P) tensor in [0, 1]."""
    arr = patches[..., None] if patches.ndim == 3 else patches
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


# --------------------------------------------------------------------------- training


@dataclass
class Trained:
    """One autoencoder with its denoiser(s): ``denoisers`` by depth."""

    kind: str
    ae: PatchAutoencoder
    ae_history: History
    ae_seconds: float
    denoisers: dict[int, FeatureDenoiser]
    den_histories: dict[int, History]
    den_seconds: dict[int, float]

    def train_seconds(self, depth: int) -> float:
        """AE + denoiser(depth) training time (0 for parts loaded from a checkpoint)."""
        return self.ae_seconds + self.den_seconds.get(depth, 0.0)


class _ReconDataset(Dataset):
    """``{"image": x, "recon": AE(x)}`` pairs (reconstructions precomputed by the frozen AE)."""

    def __init__(self, x: torch.Tensor, recon: torch.Tensor) -> None:
        self.x, self.recon = x, recon

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        i = int(key[0]) if isinstance(key, tuple) else int(key)  # (index, seed) from make_loader
        return {"image": self.x[i], "recon": self.recon[i]}


def _checkpoint(results_dir: str | Path, name: str, config: dict[str, Any]) -> Path:
    """``<results>/<notebook>/checkpoints/<name>-<config hash>.pt``: profiles never overwrite each other."""
    return Path(results_dir) / NOTEBOOK / "checkpoints" / f"{name}-{config_hash(config)[:8]}.pt"


def _data_config(data: Data, cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    return {"root": str(data.split.root), "category": data.split.category, "seed": seed,
            **{k: cfg[k] for k in ("image_size", "n_train", "val_fraction", "synthetic_size")}}


def train_autoencoder(
    data: Data, cfg: dict[str, Any], kind: str, *, results_dir: str | Path,
    device: torch.device | str = "cpu", seed: int = 0, force_train: bool = False,
    progress: bool = True,
) -> tuple[PatchAutoencoder, History, float]:
    """Train (or load) one patch autoencoder; returns ``(model, history, seconds)`` (0 s if loaded)."""
    torch.manual_seed(seed)
    model = build_patch_model(kind, 1, data.patch_size, cfg["base"], cfg["latent_dim"])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    train_ds = PatchDataset(data.patches.train, seed=seed)
    loader = make_loader(train_ds, batch_size=cfg["batch_size"], shuffle=True, seed=seed,
                         num_workers=0, drop_last=len(train_ds) > cfg["batch_size"])
    val_x = to_tensor(data.val)
    step = training_step(kind, noise_std=cfg["dae_noise"], beta=cfg["beta"])

    def val_fn(m: torch.nn.Module) -> dict[str, float]:
        x = val_x.to(next(m.parameters()).device)
        return {"mse": float(((m(x) - x) ** 2).mean())}

    config = {"model": kind, **_data_config(data, cfg, seed),
              **{k: cfg[k] for k in ("base", "latent_dim", "batch_size", "lr", "dae_noise", "beta")}}
    start = time.perf_counter()
    history = load_or_train(
        model, loader, checkpoint_path=_checkpoint(results_dir, f"{kind}-{data.split.dataset}", config),
        config=config, epochs=int(cfg["epochs"]), force_train=force_train, optimizer=optimizer,
        device=device, step_fn=step, val_fn=val_fn, progress=progress, desc=kind)
    seconds = time.perf_counter() - start if history.trained else 0.0
    model.eval()
    return model, history, seconds


@torch.no_grad()
def reconstruct(ae: torch.nn.Module, x: torch.Tensor, batch_size: int = 512,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """``AE(x)`` in eval mode (the CVAE decodes its posterior mean), in batches, on the CPU."""
    ae.eval()
    out = [ae(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else x.clone()


def train_denoiser(
    data: Data, cfg: dict[str, Any], kind: str, ae: PatchAutoencoder, depth: int, *,
    results_dir: str | Path, device: torch.device | str = "cpu", seed: int = 0,
    force_train: bool = False, progress: bool = True,
) -> tuple[FeatureDenoiser, History, float]:
    """Train (or load) the denoiser of a FROZEN autoencoder (seed eq. 6 with input noise)."""
    for p in ae.parameters():
        p.requires_grad_(False)
    x = to_tensor(data.patches.train)
    recon = reconstruct(ae, x, device=device)
    torch.manual_seed(seed)
    den = FeatureDenoiser(1, depth=depth, width=int(cfg["den_width"]))
    optimizer = torch.optim.Adam(den.parameters(), lr=cfg["den_lr"])
    loader = make_loader(_ReconDataset(x, recon), batch_size=cfg["batch_size"], shuffle=True,
                         seed=seed, num_workers=0)
    val_x = to_tensor(data.val)
    val_r = reconstruct(ae, val_x, device=device)

    def val_fn(m: torch.nn.Module) -> dict[str, float]:
        dev = next(m.parameters()).device
        return {"mse": float(((m(val_r.to(dev)).denoised - val_x.to(dev)) ** 2).mean())}

    config = {"model": f"{kind}-denoiser", "depth": depth, **_data_config(data, cfg, seed),
              "ae": {k: cfg[k] for k in ("base", "latent_dim", "batch_size", "lr", "dae_noise",
                                         "beta", "epochs")},
              **{k: cfg[k] for k in ("den_width", "den_noise", "den_lr", "batch_size")}}
    start = time.perf_counter()
    history = load_or_train(
        den, loader, checkpoint_path=_checkpoint(results_dir, f"{kind}-denoiser{depth}-{data.split.dataset}",
                                                 config),
        config=config, epochs=int(cfg["den_epochs"]), force_train=force_train,
        optimizer=optimizer, device=device, step_fn=denoiser_step(noise_std=cfg["den_noise"]),
        val_fn=val_fn, progress=progress, desc=f"{kind} denoiser ({depth} layers)")
    seconds = time.perf_counter() - start if history.trained else 0.0
    den.eval()
    return den, history, seconds


def train_all(
    data: Data, cfg: dict[str, Any], *, results_dir: str | Path, device: torch.device | str = "cpu",
    seed: int = 0, force_train: bool = False, depths: list[int] | None = None,
    kinds: tuple[str, ...] = KINDS, progress: bool = True,
) -> dict[str, Trained]:
    """Each autoencoder, then its denoiser(s) (``depths``, default ``[den_depth]``) with the AE frozen."""
    depths = sorted(set(depths or [int(cfg["den_depth"])]))
    out: dict[str, Trained] = {}
    for kind in kinds:
        ae, hist, sec = train_autoencoder(data, cfg, kind, results_dir=results_dir, device=device,
                                          seed=seed, force_train=force_train, progress=progress)
        trained = Trained(kind, ae, hist, sec, {}, {}, {})
        for depth in depths:
            den, dhist, dsec = train_denoiser(data, cfg, kind, ae, depth, results_dir=results_dir,
                                              device=device, seed=seed, force_train=force_train,
                                              progress=progress)
            trained.denoisers[depth], trained.den_histories[depth] = den, dhist
            trained.den_seconds[depth] = dsec
        out[kind] = trained
    return out


def training_table(trained: dict[str, Trained]) -> pd.DataFrame:
    """Final losses and training seconds per network (0 s = loaded from a checkpoint)."""
    rows = []
    for kind, t in trained.items():
        last = t.ae_history.epochs[-1] if t.ae_history.epochs else {}
        rows.append({"network": MODEL_NAMES[kind], "epochs": len(t.ae_history.epochs),
                     "train loss": last.get("loss"), "val MSE": last.get("val_mse"),
                     "seconds": round(t.ae_seconds, 1)})
        for depth, h in t.den_histories.items():
            last = h.epochs[-1] if h.epochs else {}
            rows.append({"network": f"{MODEL_NAMES[kind]} denoiser ({depth} layers)",
                         "epochs": len(h.epochs), "train loss": last.get("loss"),
                         "val MSE": last.get("val_mse"), "seconds": round(t.den_seconds[depth], 1)})
    return pd.DataFrame(rows).set_index("network")


# --------------------------------------------------------------------------- scoring


@dataclass
class Stages:
    """Pipeline stages of a set of patches, each (N, 1, P, P) float32 on [0, 1] scale."""

    x: np.ndarray
    recon: np.ndarray
    denoised: np.ndarray
    mask: np.ndarray

    def scores(self) -> dict[str, np.ndarray]:
        """The three per-patch scores (mean squared difference), see the module docstring."""
        def msd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return ((a - b) ** 2).reshape(len(a), -1).mean(axis=1).astype(np.float64)

        return {"rec": msd(self.x, self.recon), "smooth": msd(self.x, self.denoised),
                "feature": msd(self.x, self.mask)}


@torch.no_grad()
def run_stages(ae: torch.nn.Module, den: FeatureDenoiser, patches: np.ndarray,
               device: torch.device | str = "cpu", batch_size: int = 256,
               progress: bool = False, layers: int | None = None) -> Stages:
    """Input, AE reconstruction, denoised output and feature mask of uint8 patches (no noise)."""
    ae.eval()
    den.eval()
    parts: dict[str, list[np.ndarray]] = {"x": [], "recon": [], "denoised": [], "mask": []}
    x_all = to_tensor(patches)
    for i in tqdm(range(0, len(x_all), batch_size), desc="scoring", disable=not progress, leave=False):
        x = x_all[i:i + batch_size].to(device)
        r = ae(x)
        out = den(r, layers=layers)
        for key, val in (("x", x), ("recon", r), ("denoised", out.denoised), ("mask", out.mask)):
            parts[key].append(val.cpu().numpy().astype(np.float32))
    return Stages(**{k: np.concatenate(v) for k, v in parts.items()})


def stitch(data: Data, patch_scores: np.ndarray) -> list[np.ndarray]:
    """Full-image maps: each pixel = mean score of the test patches covering it."""
    src, coords = data.patches.test_source, data.patches.test_coords
    return [MAPS.stitch_patches(patch_scores[src == i], coords[src == i], shape, data.patch_size)
            for i, shape in enumerate(data.image_shapes)]


def _stack(arrays: list[np.ndarray]) -> np.ndarray | None:
    shapes = {a.shape for a in arrays}
    return np.stack(arrays) if len(shapes) == 1 else None


@dataclass
class Evaluation:
    """Scores, thresholds and metrics of one (model, score) method."""

    kind: str
    score: str
    test_scores: np.ndarray
    val_scores: np.ndarray
    labels: np.ndarray
    threshold: T.Threshold
    oracle: T.Threshold
    patch: dict[str, float | None]
    patch_oracle: dict[str, float | None]
    maps: list[np.ndarray]
    metrics: dict[str, Any]

    @property
    def method(self) -> str:
        """Results-file method name."""
        return method_name(self.kind, self.score)


def _patch_prf(scores: np.ndarray, labels: np.ndarray, thr: float) -> dict[str, float | None]:
    prf = MET.image_prf(scores, labels, thr)
    return {"precision": prf.precision, "recall": prf.recall, "f1": prf.f1}


def evaluate_method(data: Data, kind: str, score: str, test_scores: np.ndarray,
                    val_scores: np.ndarray, q: float, masks: list[np.ndarray]) -> Evaluation:
    """Patch metrics (validation threshold + labelled oracle) and pixel metrics of stitched maps."""
    labels = data.labels
    thr = T.threshold_from_normal(val_scores, method="quantile", q=q)
    oracle = T.oracle_best_f1_threshold(test_scores, labels)
    maps = stitch(data, test_scores)
    stacked_maps, stacked_masks = _stack(maps), _stack(masks)
    if stacked_maps is not None and stacked_masks is not None:
        pix = R.metrics_summary(maps=stacked_maps, masks=stacked_masks, threshold=thr)
    else:  # images of different sizes: pixel metrics over the concatenated pixels
        flat_m = np.concatenate([m.ravel() for m in maps])[None, None]
        flat_g = np.concatenate([g.ravel() for g in masks])[None, None]
        pix = R.metrics_summary(maps=flat_m[0], masks=flat_g[0], threshold=thr)
        pix["aupro"] = None  # regions are not defined on concatenated pixels
    metrics = {key: pix[key] for key in R.METRIC_KEYS}
    metrics["image_auroc"] = MET.image_auroc(test_scores, labels)
    metrics["image_aupr"] = MET.image_aupr(test_scores, labels)
    return Evaluation(kind, score, test_scores, val_scores, labels, thr, oracle,
                      _patch_prf(test_scores, labels, thr.value),
                      _patch_prf(test_scores, labels, oracle.value), maps, metrics)


def evaluate_all(data: Data, trained: dict[str, Trained], cfg: dict[str, Any], *,
                 depth: int | None = None, device: torch.device | str = "cpu",
                 progress: bool = True) -> tuple[dict[tuple[str, str], Evaluation], dict[str, Stages]]:
    """All nine (model, score) methods; also returns the test-patch :class:`Stages` per model."""
    depth = int(depth or cfg["den_depth"])
    masks = data.test_masks()
    evals: dict[tuple[str, str], Evaluation] = {}
    stages: dict[str, Stages] = {}
    for kind, t in trained.items():
        den = t.denoisers[depth]
        test = run_stages(t.ae, den, data.patches.test, device, progress=progress)
        val = run_stages(t.ae, den, data.val, device).scores()
        stages[kind] = test
        for score, values in test.scores().items():
            evals[(kind, score)] = evaluate_method(data, kind, score, values, val[score],
                                                   float(cfg["threshold_q"]), masks)
    return evals, stages


# --------------------------------------------------------------------------- tables and results


def _published() -> pd.DataFrame:
    pub = published_table("003")
    return pub.pivot_table(index="method", columns="metric", values="value", aggfunc="first")


def seed_table(evals: dict[tuple[str, str], Evaluation], score: str) -> pd.DataFrame:
    """One of the seed's Tables 1-3 (``score``): measured patch AUROC / precision / recall / F1
    at the validation threshold, the oracle F1, and the seed's published numbers beside them."""
    pub = _published()
    rows = []
    for (kind, sc), ev in evals.items():
        if sc != score:
            continue
        name = MODEL_NAMES[kind]
        published = pub.loc[name + _PUBLISHED_SUFFIX[score]] if name + _PUBLISHED_SUFFIX[score] in pub.index else None
        rows.append({
            "model": name, "AUROC": ev.metrics["image_auroc"], "precision": ev.patch["precision"],
            "recall": ev.patch["recall"], "F1": ev.patch["f1"],
            "F1 (oracle threshold)": ev.patch_oracle["f1"],
            "seed AUROC": None if published is None else published.get("patch_auroc"),
            "seed precision": None if published is None else published.get("patch_precision"),
            "seed recall": None if published is None else published.get("patch_recall"),
            "seed F1": None if published is None else published.get("patch_f1"),
        })
    return pd.DataFrame(rows).set_index("model").astype(float).round(3)


def pixel_table(evals: dict[tuple[str, str], Evaluation]) -> pd.DataFrame:
    """Pixel metrics of the stitched maps for all nine methods (beyond the seed)."""
    rows = [{"method": ev.method, "patch AUROC": ev.metrics["image_auroc"],
             "pixel AUROC": ev.metrics["pixel_auroc"], "AUPRO": ev.metrics["aupro"],
             "pixel F1": ev.metrics["pixel_f1"]} for ev in evals.values()]
    return pd.DataFrame(rows).set_index("method").astype(float).round(3)


def energy_auroc(data: Data) -> float | None:
    """Patch AUROC of a model-free score, the patch energy ``mean x^2``.

    ``A_feature = ||x - f_mask||^2`` reduces to it when the mask is small, so it is the reference
    a feature-mask score must beat to show that the denoiser contributes anything.
    """
    x = to_tensor(data.patches.test).numpy().reshape(len(data.labels), -1)
    return MET.image_auroc((x.astype(np.float64) ** 2).mean(axis=1), data.labels)


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
        auc = MET.image_auroc(values, data.labels)
        rows.append({"model-free score": name, "patch AUROC": auc,
                     "max(AUROC, 1 - AUROC)": None if auc is None else max(auc, 1 - auc)})
    return pd.DataFrame(rows).set_index("model-free score").astype(float).round(3)


def ranking_check(evals: dict[tuple[str, str], Evaluation], data: Data | None = None) -> pd.DataFrame:
    """The seed's claim, checked: the feature mask improves SAE and DAE (AUROC, F1) but not CVAE.

    With ``data``, a column gives the model-free energy baseline (:func:`energy_auroc`).
    """
    baseline = energy_auroc(data) if data is not None else None
    rows = []
    for kind in MODEL_NAMES:
        if (kind, "rec") not in evals:
            continue
        rec, feat, smooth = evals[(kind, "rec")], evals[(kind, "feature")], evals[(kind, "smooth")]
        d_auc = feat.metrics["image_auroc"] - rec.metrics["image_auroc"]
        d_f1 = (feat.patch["f1"] or 0.0) - (rec.patch["f1"] or 0.0)
        rows.append({"model": MODEL_NAMES[kind], "AUROC rec": rec.metrics["image_auroc"],
                     "AUROC smooth": smooth.metrics["image_auroc"],
                     "AUROC feature": feat.metrics["image_auroc"], "delta AUROC (feature - rec)": d_auc,
                     "delta F1 (feature - rec)": d_f1, "seed expects": "improves" if kind != "cvae" else "no gain",
                     "holds here": bool(d_auc > 0) == (kind != "cvae")})
        if baseline is not None:
            rows[-1]["AUROC mean x^2 (no model)"] = baseline
    return pd.DataFrame(rows).set_index("model").round(3)


def save_all(
    evals: dict[tuple[str, str], Evaluation], data: Data, trained: dict[str, Trained],
    cfg: dict[str, Any], *, results_dir: str | Path, profile: str, seed: int,
) -> list[Path]:
    """Write the nine results files (GUIDE section 2; one scores-CSV row per test patch)."""
    paths = data.patch_paths()
    defects = np.where(data.labels == 1, data.split.test[0].defect if data.split.test else "defect", GOOD)
    depth = int(cfg["den_depth"])
    out = []
    for ev in evals.values():
        scores = pd.DataFrame({"path": paths, "label": ev.labels, "defect": defects,
                               "score": ev.test_scores})
        params = {**cfg, "den_depth": depth, "score": ev.score, "model": ev.kind,
                  "rows": "test patches", "score_definition": "mean squared difference per patch",
                  "patch_prf": {**ev.patch, "threshold_source": ev.threshold.source},
                  "patch_prf_oracle": {**ev.patch_oracle, "threshold": ev.oracle.value,
                                       "threshold_source": ev.oracle.source}}
        seconds = trained[ev.kind].train_seconds(depth) if ev.score != "rec" else trained[ev.kind].ae_seconds
        out.append(R.save_results(
            results_dir, notebook=NOTEBOOK, method=ev.method, dataset=data.split.dataset,
            category=data.split.category, synthetic=data.synthetic, profile=profile, seed=seed,
            metrics=ev.metrics, scores=scores, threshold=ev.threshold, train_seconds=seconds,
            params=params))
    return out


def depth_study(data: Data, trained: dict[str, Trained], cfg: dict[str, Any],
                device: torch.device | str = "cpu") -> pd.DataFrame:
    """The seed's observation: a denoiser with 10 layers behaves like one with 20.

    For each trained depth and model: patch AUROC of the smooth and feature scores, and how close
    the feature masks of the two depths are (correlation over all test pixels).
    """
    rows, masks = [], {}
    for kind, t in trained.items():
        for depth, den in sorted(t.denoisers.items()):
            st = run_stages(t.ae, den, data.patches.test, device)
            masks[(kind, depth)] = st.mask.ravel()
            sc = st.scores()
            rows.append({"model": MODEL_NAMES[kind], "depth": depth,
                         "AUROC smooth": MET.image_auroc(sc["smooth"], data.labels),
                         "AUROC feature": MET.image_auroc(sc["feature"], data.labels),
                         "train seconds": round(t.den_seconds[depth], 1)})
    df = pd.DataFrame(rows)
    corr = []
    for _, row in df.iterrows():
        kind = next(k for k, v in MODEL_NAMES.items() if v == row["model"])
        deepest = max(trained[kind].denoisers)
        a, b = masks[(kind, row["depth"])], masks[(kind, deepest)]
        corr.append(float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else np.nan)
    df["mask corr. with deepest"] = corr
    return df.set_index(["model", "depth"]).round(3)


# --------------------------------------------------------------------------- figures


def curves_grid(evals: dict[tuple[str, str], Evaluation], kind: str = "roc") -> Figure:
    """The seed's Figs. 3-5: a 3x3 grid (rows: models, columns: scores) of ROC curves (``roc``),
    PR curves (``pr``) or score histograms with the validation and oracle thresholds (``hist``)."""
    models = [k for k in MODEL_NAMES if (k, "rec") in evals]
    fig, axes = plt.subplots(len(models), len(SCORES), figsize=(4.2 * len(SCORES), 3.4 * len(models)),
                             squeeze=False)
    for r, model in enumerate(models):
        for c, score in enumerate(SCORES):
            ev, ax = evals[(model, score)], axes[r, c]
            title = f"{MODEL_NAMES[model]} / {score}"
            if kind == "roc":
                viz.roc_curves({ev.method: (ev.labels, ev.test_scores)}, title=title, ax=ax)
            elif kind == "pr":
                viz.pr_curves({ev.method: (ev.labels, ev.test_scores)}, title=title, ax=ax)
            elif kind == "hist":
                viz.score_distributions(
                    ev.test_scores, ev.labels, {"validation": ev.threshold.value, "oracle": ev.oracle.value},
                    kde=False, log=bool((ev.test_scores > 0).all()), title=title, ax=ax)
            else:
                raise PipelineError(f"kind must be 'roc', 'pr' or 'hist', got {kind!r}.")
    fig.tight_layout()
    return fig


def pick_examples(data: Data, n: int = 3) -> np.ndarray:
    """Test patches to show: the ``n - 1`` most anomalous by defect area, and one normal patch."""
    frac = data.patches.test_masks.reshape(len(data.patches.test_masks), -1).mean(axis=1)
    bad = np.argsort(-frac)[: max(n - 1, 1)]
    good = np.flatnonzero(frac == 0)
    return np.concatenate([bad, good[:1]]) if len(good) else bad


def stages_figure(stages: dict[str, Stages], data: Data, index: int) -> Figure:
    """The seed's Fig. 6 for one test patch: rows = pipeline stages (input, reconstruction,
    denoised, feature mask, residual ``|x - AE(x)|``), columns = models; ground truth on top."""
    models = list(stages)
    names = ["input", "reconstruction", "denoised", "feature mask", "residual |x - AE(x)|"]
    fig, axes = plt.subplots(len(names), len(models), figsize=(2.3 * len(models), 2.2 * len(names)),
                             squeeze=False)
    gt = data.patches.test_masks[index]
    for c, kind in enumerate(models):
        st = stages[kind]
        panels = [st.x[index, 0], st.recon[index, 0], st.denoised[index, 0], st.mask[index, 0],
                  np.abs(st.x[index, 0] - st.recon[index, 0])]
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


def maps_figure(evals: dict[tuple[str, str], Evaluation], data: Data, methods: list[str],
                image: int = 0) -> Figure:
    """Stitched full-image anomaly maps of one test image for several methods, over the image,
    with the ground truth and the prediction at the validation threshold."""
    img = data.split.test[image].load_image(channels=1)[..., 0]
    gt = data.test_masks()[image]
    by_method = {ev.method: ev for ev in evals.values()}
    fig, axes = plt.subplots(2, len(methods) + 1, figsize=(3.6 * (len(methods) + 1), 7), squeeze=False)
    viz.overlay(img, gt, title="ground truth", ax=axes[0, 0])
    axes[1, 0].imshow(img, cmap="gray")
    axes[1, 0].set_title("image")
    axes[1, 0].axis("off")
    for c, name in enumerate(methods, start=1):
        ev = by_method[name]
        viz.overlay(img, ev.maps[image], title=f"{name} map", ax=axes[0, c])
        viz.overlay(img, ev.maps[image] > ev.threshold.value, title=f"{name} > validation thr.",
                    colorbar=False, ax=axes[1, c])
    fig.tight_layout()
    return fig
