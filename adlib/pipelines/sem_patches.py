"""Notebook 03 pipeline: SEM nanofibre patches, three autoencoders + the feature denoiser (seed 003).

The notebook calls the protocol's verbs (:mod:`adlib.experiment`): :func:`settings` ->
:func:`load` (read + validate, hold out defect-free validation images, cut 32x32 patches) ->
:func:`train` (an autoencoder, then its denoiser with the AE frozen) -> :func:`evaluate` (three
scores per patch, validation threshold, patch and stitched-map pixel metrics) -> :func:`save`.
Tables, figures and the depth study live in :mod:`adlib.pipelines.sem_views`.

Conventions (kept the same everywhere in this notebook):

* Scores and stitched maps: :mod:`adlib.pipelines.sem_scores` (re-exported here). The seed's
  ``rec`` / ``smooth`` / ``feature`` are per-pixel mean squared differences; the SSIM
  autoencoder (``ssim-ae``, beyond the seed, no denoiser) has one score, ``rec`` = mean
  ``1 - SSIM(x, AE(x))`` per patch.
* A "test image" row of the results' scores CSV is a TEST PATCH (the seed evaluates patches):
  ``path`` = ``<image file>#y=<row>,x=<col>`` (relative to the dataset root; top-left corner),
  ``label`` from its mask, ``score`` the patch score: the JSON's ``image_auroc`` / ``image_aupr``
  are the seed's patch-level AUROC / AUPR, recomputable from the CSV.
* Pixel metrics come from full-image maps: each pixel gets the mean score of the test patches
  that cover it (:func:`adlib.maps.stitch_patches`). ``pixel_f1/precision/recall`` threshold
  these maps at the same validation threshold as the patches (same scale).
* The seed's patch precision / recall / F1 (its Tables 1-3) are stored in ``params["patch_prf"]``
  (validation threshold) and ``params["patch_prf_oracle"]`` (best F1 on the test patches: an
  oracle, shown only next to the honest numbers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from adlib import config, experiment
from adlib.config import SettingsError
from adlib.data.patches import PatchSet, labelled_grid_patches
from adlib.data.sem import sem_patches
from adlib.data.torchdata import PatchDataset, make_loader
from adlib.data.types import GOOD, Sample, Split
from adlib.models.denoiser import FeatureDenoiser, denoiser_step
from adlib.models.patch_ae import SSIM_KIND, build_patch_model, training_step
from adlib.pipelines.sem_scores import (  # re-exported: the notebook and tests use P.<name>
    SCORES,
    PatchEvaluation,
    Stages,
    evaluate,
    evaluate_method,
    run_stages,
    ssim_scores,
    stitch,
    to_tensor,
)

__all__ = ["MODEL_NAMES", "SCORES", "VARIANTS", "Data", "PatchEvaluation", "Stages", "Trained",
           "evaluate", "evaluate_method", "load", "run_stages", "save", "settings", "spec",
           "ssim_scores", "stitch", "to_tensor", "train"]
_evaluate_method = evaluate_method  # the name tests used before the move

NOTEBOOK = "03_sem_patch_autoencoder_denoiser"
VARIANTS: tuple[str, ...] = ("sae", "dae", "cvae")
"""The seed's three autoencoders (each followed by a denoiser)."""
SSIM_VARIANT = SSIM_KIND
"""The SSIM autoencoder (``"ssim-ae"``, beyond the seed: one score, no denoiser)."""
ALL_VARIANTS: tuple[str, ...] = (*VARIANTS, SSIM_VARIANT)
MODEL_NAMES = {"sae": "SAE", "dae": "DAE", "cvae": "CVAE", SSIM_VARIANT: "SSIM-AE"}
CATEGORY = "nanofibres"

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "image_size": 32, "epochs": 1, "synthetic_size": "tiny", "n_train": 256, "stride": 16,
        "val_fraction": 0.5, "max_val_patches": 256, "label_min_fraction": 0.05, "base": 8,
        "latent_dim": 32, "batch_size": 64, "lr": 2e-3, "dae_noise": 0.1, "beta": 0.02,
        "den_depth": 4, "den_width": 8, "den_epochs": 1, "den_noise": 0.05, "den_lr": 1e-3,
        "depth_study": [2, 4], "threshold_q": 0.95, "ssim_window": 7, "threads": 1,
    },
    "cpu": {
        "image_size": 32, "epochs": 12, "synthetic_size": "default", "n_train": 3000, "stride": 24,
        "val_fraction": 0.2, "max_val_patches": 1000, "label_min_fraction": 0.05, "base": 16,
        "latent_dim": 64, "batch_size": 64, "lr": 2e-3, "dae_noise": 0.1, "beta": 0.02,
        "den_depth": 20, "den_width": 8, "den_epochs": 2, "den_noise": 0.05, "den_lr": 1e-3,
        "depth_study": [10, 20], "threshold_q": 0.95, "ssim_window": 7, "threads": 1,
    },
    "paper": {
        "image_size": 32, "epochs": 100, "synthetic_size": "default", "n_train": 20000,
        "stride": 16, "val_fraction": 0.2, "max_val_patches": 5000, "label_min_fraction": 0.05,
        "base": 32, "latent_dim": 128, "batch_size": 128, "lr": 1e-3, "dae_noise": 0.1,
        "beta": 0.02, "den_depth": 20, "den_width": 64, "den_epochs": 20, "den_noise": 0.05,
        "den_lr": 1e-3, "depth_study": [10, 20], "threshold_q": 0.95, "ssim_window": 7, "threads": 0,
    },
}
"""Per-profile settings. ``image_size`` is the PATCH side (32 in the seed); ``epochs`` are the
autoencoders' epochs, ``den_epochs`` the denoisers'. ``threads = 0`` leaves torch's default.
``beta`` weights the CVAE's KL term against the per-patch sum of squared errors: seed eq. 3 with
a Gaussian decoder of variance ``sigma^2`` is ``SSE + beta * KL`` with ``beta = 2 sigma^2``;
0.02 assumes ``sigma = 0.1`` (``beta = 1``, the literal unit-variance reading, collapses the
posterior: see the notebook's section 2). ``ssim_window`` is the SSIM autoencoder's window side
(loss and score; 11 in Bergmann et al. for 128 px patches, 7 for our 32 px ones)."""

SELECTION: tuple[str, ...] = ("depth_study",)  # only picks the study: not in the run id
PARAMETERS: dict[str, str] = {
    "epochs": "EPOCHS", "image_size": "IMAGE_SIZE", "den_depth": "DENOISER_DEPTH",
    "stride": "STRIDE", "threshold_q": "THRESHOLD_Q", "beta": "CVAE_BETA",
}
"""Setting key -> notebook parameter (the other keys are set through the profile)."""

_AT_LEAST = {"stride": 1, "den_depth": 1, "depth_study": 1, "n_train": 1, "max_val_patches": 1,
             "base": 1, "den_width": 1, "threads": 0, "lr": 1e-12, "den_lr": 1e-12,
             "beta": 0.0, "dae_noise": 0.0, "den_noise": 0.0, "ssim_window": 3}


def _check(cfg: dict[str, Any]) -> None:
    """The pipeline's own settings checks (after :func:`adlib.config.settings`' generic ones)."""
    if cfg["image_size"] % 8:
        raise SettingsError(f"IMAGE_SIZE={cfg['image_size']}: the patch side must be a multiple "
                            "of 8 (three stride-2 layers); seed 003 uses 32.")
    for key, low in _AT_LEAST.items():
        values = cfg[key] if isinstance(cfg[key], (list, tuple)) else [cfg[key]]
        if any(v < low for v in values):
            bound = "positive" if 0 < low < 1 else f"at least {low:g}"
            raise SettingsError(f"{PARAMETERS.get(key, key.upper())}={cfg[key]!r}: must be {bound}.")
    if not 0.0 < cfg["threshold_q"] < 1.0:
        raise SettingsError(f"THRESHOLD_Q={cfg['threshold_q']!r}: a quantile strictly between 0 "
                            "and 1 is needed (0.95, not 95).")
    if cfg["ssim_window"] % 2 == 0 or cfg["ssim_window"] > cfg["image_size"]:
        raise SettingsError(f"SSIM_WINDOW={cfg['ssim_window']!r}: an odd window no larger than the "
                            "patch (7 for 32x32 patches).")
    if cfg["synthetic_size"] not in ("tiny", "default"):
        raise SettingsError(f"SYNTHETIC_SIZE={cfg['synthetic_size']!r}: 'tiny' or 'default'.")


def settings(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile's settings with the notebook's overrides, strictly checked (SettingsError)."""
    return config.settings(profile, PROFILES, overrides, names=PARAMETERS, check=_check)


def configure_threads(cfg: dict[str, Any]) -> int:
    """Apply ``cfg["threads"]`` to torch (0 = keep the default) and return the thread count."""
    if int(cfg["threads"]) > 0:
        torch.set_num_threads(int(cfg["threads"]))
    return torch.get_num_threads()


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
    seed: int = 0

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

    def _relative(self, path: Path) -> str:
        try:
            return Path(path).relative_to(Path(self.split.root)).as_posix()
        except ValueError:
            return str(path)

    def patch_paths(self) -> list[str]:
        """``<image>#y=<row>,x=<col>`` for every test patch (the scores-CSV ``path``)."""
        return [f"{self._relative(self.split.test[i].path)}#y={y},x={x}"
                for i, (y, x) in zip(self.patches.test_source, self.patches.test_coords, strict=True)]

    def patch_defects(self) -> list[str]:
        """Defect name of every test patch (its image's defect; ``good`` for normal patches)."""
        return [self.split.test[i].defect if label else GOOD
                for i, label in zip(self.patches.test_source, self.labels, strict=True)]


def load(
    cfg: dict[str, Any], *, data_root: str | Path | None = None, category: str = CATEGORY,
    seed: int = 0, progress: bool = True,
) -> Data:
    """Read and validate the SEM set (the ``synthetic_size`` stand-in when ``data_root`` is None),
    hold out defect-free validation images and cut the patches: ``n_train`` random training
    patches of the other defect-free images; overlapping grid patches (``stride``) of the held-out
    images (at most ``max_val_patches``, for the threshold) and of the test images (label 1 when
    at least ``label_min_fraction`` of the patch is defect).

    Raises:
        DataError: missing or malformed data (reader / validation), before any training.
        SettingsError: a synthetic run with another category than ``nanofibres``.
    """
    if data_root is None and category != CATEGORY:
        raise SettingsError(f"CATEGORY={category!r}: the synthetic SEM stand-in has the single "
                            f"category {CATEGORY!r}. Fix: CATEGORY = {CATEGORY!r}, or set DATA_ROOT.")
    loaded = experiment.load_split("sem", data_root, category, synthetic_size=cfg["synthetic_size"],
                                   keep_arrays=False, progress=progress)
    split = dataclasses.replace(loaded.split, category=category)
    train, val = experiment.hold_out(split.train, cfg["val_fraction"], seed,
                                     where=f"SEM images at {split.root}", min_train=1)
    size, stride = int(cfg["image_size"]), int(cfg["stride"])
    patches = sem_patches(
        dataclasses.replace(split, train=train), size, n_train=int(cfg["n_train"]), stride=stride,
        min_fraction=float(cfg["label_min_fraction"]), seed=seed, progress=progress)
    val_patches = labelled_grid_patches(val, size, stride, channels=1, progress=progress)[0]
    cap = int(cfg["max_val_patches"])
    if len(val_patches) > cap:
        keep = np.sort(np.random.default_rng(seed).choice(len(val_patches), cap, replace=False))
        val_patches = val_patches[keep]
    shapes = [tuple(int(v) for v in s.load_image(channels=1).shape[:2]) for s in split.test]
    return Data(split=split, synthetic=loaded.synthetic, patches=patches, val=val_patches,
                val_samples=list(val), train_samples=list(train), image_shapes=shapes, seed=seed)


# --------------------------------------------------------------------------- training


def _data_config(data: Data, cfg: dict[str, Any]) -> dict[str, Any]:
    return {"root": str(data.split.root), "category": data.split.category, "seed": data.seed,
            **{k: cfg[k] for k in ("image_size", "n_train", "val_fraction", "synthetic_size")}}


_AE_KEYS = ("base", "latent_dim", "batch_size", "lr", "dae_noise", "beta")
_SSIM_KEYS = ("base", "latent_dim", "batch_size", "lr", "ssim_window")


def spec(data: Data, cfg: dict[str, Any], variant: str, *, seed: int | None = None) -> experiment.TrainSpec:
    """The autoencoder ``variant``'s training run (seed eqs. 1-3, or the SSIM loss for
    ``ssim-ae``); ``seed`` defaults to the data's."""
    if variant not in ALL_VARIANTS:
        raise SettingsError(f"Unknown variant {variant!r}: expected one of {', '.join(ALL_VARIANTS)}.")
    seed = data.seed if seed is None else seed
    torch.manual_seed(seed)
    model = build_patch_model(variant, 1, data.patch_size, cfg["base"], cfg["latent_dim"])
    train_ds = PatchDataset(data.patches.train, seed=seed)
    loader = make_loader(train_ds, batch_size=cfg["batch_size"], shuffle=True, seed=seed,
                         num_workers=0, drop_last=len(train_ds) > cfg["batch_size"])
    val_x = to_tensor(data.val)
    ae_step = training_step(variant, noise_std=cfg["dae_noise"], beta=cfg["beta"],
                            ssim_window=int(cfg["ssim_window"]))

    def step(model: torch.nn.Module, batch: Any, ctx: Any) -> torch.Tensor:  # noqa: ARG001
        return ae_step(model, batch)

    def val_fn(m: torch.nn.Module) -> dict[str, float]:
        x = val_x.to(next(m.parameters()).device)
        return {"mse": float(((m(x) - x) ** 2).mean())}

    return experiment.TrainSpec(
        name=f"{variant}-{data.split.dataset}", model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=cfg["lr"]), loader=loader,
        epochs=int(cfg["epochs"]), step_fn=step, val_fn=val_fn,
        config={"model": variant, **_data_config(data, cfg),
                **{k: cfg[k] for k in (_SSIM_KEYS if variant == SSIM_VARIANT else _AE_KEYS)}})


@torch.no_grad()
def reconstruct(ae: torch.nn.Module, x: torch.Tensor, batch_size: int = 512,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """``AE(x)`` in eval mode (the CVAE decodes its posterior mean), in batches, on the CPU."""
    ae.eval()
    out = [ae(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else x.clone()


class _ReconDataset(Dataset):
    """``{"image": x, "recon": AE(x)}`` pairs (reconstructions precomputed by the frozen AE)."""

    def __init__(self, x: torch.Tensor, recon: torch.Tensor) -> None:
        self.x, self.recon = x, recon

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        i = int(key[0]) if isinstance(key, tuple) else int(key)  # (index, seed) from make_loader
        return {"image": self.x[i], "recon": self.recon[i]}


def denoiser_spec(
    data: Data, cfg: dict[str, Any], variant: str, ae: torch.nn.Module, depth: int, *,
    seed: int | None = None, device: torch.device | str = "cpu",
) -> experiment.TrainSpec:
    """The denoiser of the FROZEN autoencoder ``ae`` (seed eq. 6 with input noise), ``depth`` layers.

    Its own name (``<variant>-denoiser<depth>-sem``) gives it its own checkpoint: the three
    scores, the depth study and later runs share it. ``ae`` must be on ``device``.
    """
    seed = data.seed if seed is None else seed
    for p in ae.parameters():
        p.requires_grad_(False)
    x = to_tensor(data.patches.train)
    recon = reconstruct(ae, x, device=device)
    torch.manual_seed(seed)
    den = FeatureDenoiser(1, depth=depth, width=int(cfg["den_width"]))
    loader = make_loader(_ReconDataset(x, recon), batch_size=cfg["batch_size"], shuffle=True,
                         seed=seed, num_workers=0)
    val_x = to_tensor(data.val)
    val_r = reconstruct(ae, val_x, device=device)
    den_step = denoiser_step(noise_std=cfg["den_noise"])

    def step(model: torch.nn.Module, batch: Any, ctx: Any) -> torch.Tensor:  # noqa: ARG001
        return den_step(model, batch)

    def val_fn(m: torch.nn.Module) -> dict[str, float]:
        dev = next(m.parameters()).device
        return {"mse": float(((m(val_r.to(dev)).denoised - val_x.to(dev)) ** 2).mean())}

    config = {"model": f"{variant}-denoiser", "depth": depth, **_data_config(data, cfg),
              "ae": {k: cfg[k] for k in (*_AE_KEYS, "epochs")},
              **{k: cfg[k] for k in ("den_width", "den_noise", "den_lr", "batch_size")}}
    return experiment.TrainSpec(
        name=f"{variant}-denoiser{depth}-{data.split.dataset}", model=den,
        optimizer=torch.optim.Adam(den.parameters(), lr=cfg["den_lr"]), loader=loader,
        epochs=int(cfg["den_epochs"]), config=config, step_fn=step, val_fn=val_fn)


@dataclass
class Trained:
    """One autoencoder with its denoiser(s) by depth (each an :class:`adlib.experiment.Trained`);
    the SSIM autoencoder has none."""

    variant: str
    ae: experiment.Trained
    denoisers: dict[int, experiment.Trained]
    depth: int
    """The denoiser depth the scores use (``cfg["den_depth"]``)."""

    @property
    def denoiser(self) -> experiment.Trained:
        """The denoiser the scores use."""
        return self.denoisers[self.depth]

    @property
    def train_seconds(self) -> float:
        """Stored training seconds of the AE and its scoring denoiser (identical when reused)."""
        return self.ae.train_seconds + (self.denoiser.train_seconds if self.denoisers else 0.0)

    @property
    def reused(self) -> bool:
        """True when every network was loaded from its checkpoint."""
        return self.ae.reused and all(d.reused for d in self.denoisers.values())

    def seconds(self, score: str) -> float:
        """Training seconds behind ``score`` (``rec`` needs no denoiser)."""
        return self.ae.train_seconds if score == "rec" else self.train_seconds


def train(
    data: Data, cfg: dict[str, Any], variant: str, *, results_dir: str | Path, run: str,
    device: torch.device | str = "cpu", force: bool = False, progress: bool = True,
    depths: list[int] | None = None,
) -> Trained:
    """The autoencoder ``variant``, then its denoiser(s) with the AE frozen (``den_depth`` and
    every depth in ``depths``; none for the SSIM autoencoder), each trained or reused from its
    checkpoint."""
    where = dict(results_dir=results_dir, notebook=NOTEBOOK, run=run, device=device, force=force,
                 progress=progress)
    ae = experiment.train(spec(data, cfg, variant), **where)
    depth = int(cfg["den_depth"])
    if variant == SSIM_VARIANT:
        return Trained(variant, ae, {}, depth)
    dens = {d: experiment.train(denoiser_spec(data, cfg, variant, ae.model, d, device=device), **where)
            for d in sorted(set(depths or []) | {depth})}
    return Trained(variant, ae, dens, depth)


# --------------------------------------------------------------------------- results


def save(
    evals: list[PatchEvaluation], trained: Trained | Mapping[str, Trained], data: Data,
    cfg: dict[str, Any], *, results_dir: str | Path, profile: str, seed: int, run: str,
) -> list[Path]:
    """One results file per method (GUIDE section 2; one scores-CSV row per test patch);
    ``trained``: the evaluations' :class:`Trained`, or ``{variant: Trained}`` for several models.
    Each method's model bundle (:mod:`adlib.scoring.sem`) is written beside its JSON."""
    from adlib.scoring.sem import sem_bundle

    out = []
    for ev in evals:
        t = trained[ev.kind] if isinstance(trained, Mapping) else trained
        oracle = ev.oracle_image
        params = {**cfg, "score": ev.score, "model": ev.kind, "rows": "test patches",
                  "score_definition": "mean 1 - SSIM per patch" if ev.kind == SSIM_VARIANT
                  else "mean squared difference per patch",
                  "patch_prf": {**ev.patch_prf(), "threshold_source": ev.image_threshold.source},
                  "patch_prf_oracle": {**ev.patch_prf(oracle=True),
                                       "threshold": oracle.value if oracle else None,
                                       "threshold_source": oracle.source if oracle else None}}
        out.append(experiment.save(
            ev, results_dir=results_dir, notebook=NOTEBOOK, split=data.split,
            synthetic=data.synthetic, profile=profile, seed=seed, run=run,
            train_seconds=t.seconds(ev.score), params=params, bundle=sem_bundle(ev, t, data, cfg, run)))
    return out
