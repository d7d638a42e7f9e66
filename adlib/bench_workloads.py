"""The benchmark's workloads (:mod:`adlib.bench`), built from each pipeline's training spec.

Each builder reads the pipeline's profile (``cpu``, or ``smoke`` with ``--quick``), loads the
data with the pipeline's ``load`` and takes model, optimizer, loader and step from its
``spec(...)`` (:class:`adlib.experiment.TrainSpec`): exactly what the notebooks train, with no
patching. Inference times the pipeline's own map functions on the spec's untrained networks
(weights do not change the cost).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adlib.experiment import TrainSpec

__all__ = ["Workload", "BUILDERS", "step_of"]


@dataclass
class Workload:
    """One model's training and inference, as its pipeline sets them up.

    Attributes:
        name: key in :data:`adlib.bench.MODELS`.
        description: one line for the report (model and data).
        settings: the sizes used (shown in the report).
        source: where the sizes come from.
        model, optimizer: the freshly initialised network(s) and optimizer(s), copied per run.
        loader: the pipeline's training loader (an epoch = one pass).
        step: ``step(model, batch, ctx) -> loss tensor | dict`` for :func:`adlib.train.fit`.
        prepare: per-batch work done before the step while pre-loading the compute-only batches.
        infer: ``infer(device) -> images`` computes full anomaly maps with the pipeline's
            functions and returns how many images it processed.
        amp_safe: mixed precision may be used on CUDA (not for the WGAN-GP double backward).
        setup_seconds: reading, validating and decoding the data (once).
    """

    name: str
    description: str
    settings: dict[str, Any]
    source: str
    model: nn.Module
    optimizer: Any
    loader: Iterable
    step: Callable[..., Any]
    infer: Callable[[torch.device], int]
    prepare: Callable[[Any], Any] = field(default=lambda b: b)
    amp_safe: bool = True
    setup_seconds: float = 0.0


def step_of(spec: TrainSpec) -> Callable[..., Any]:
    """The spec's step in fit's one protocol (``loss_fn`` becomes :func:`adlib.train.default_step`)."""
    from adlib.train import default_step

    return spec.step_fn if spec.step_fn is not None else default_step(spec.loss_fn)


def _from_spec(name: str, description: str, cfg: dict[str, Any], keys: tuple[str, ...], module: str,
               quick: bool, spec: TrainSpec, infer: Callable[[torch.device], int], setup: float,
               **kw: Any) -> Workload:
    return Workload(name, description, {k: cfg[k] for k in keys if k in cfg},
                    f"adlib.pipelines.{module}.PROFILES[{_pname(quick)!r}]", spec.model, spec.optimizer,
                    spec.loader, step_of(spec), infer, setup_seconds=setup, **kw)


def _pname(quick: bool) -> str:
    return "smoke" if quick else "cpu"


def _loaded(module: Any, quick: bool, **load_kw: Any) -> tuple[dict[str, Any], Any, float]:
    cfg = module.settings(_pname(quick))
    t0 = time.perf_counter()
    data = module.load(cfg, data_root=None, seed=0, progress=False, **load_kw)
    return cfg, data, time.perf_counter() - t0


def _conv_ae(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import hazelnut_ae as P

    cfg, data, setup = _loaded(P, quick)
    spec = P.spec(data, {**cfg, "monitor_every": 0}, "l2")  # monitoring is not training cost

    def infer(dev: torch.device) -> int:
        x, recon = P.reconstruct(spec.model.to(dev), data.test, dev)
        P.anomaly_maps(x, recon, "l2")
        return len(data.test)

    return _from_spec(
        "conv_ae", f"seed-000 conv. AE (L2), MVTec-like hazelnut, {len(data.train)} train images "
        f"x{cfg['augment_factor']} augmented per epoch, {len(data.test)} test images", cfg,
        ("image_size", "latent_dim", "batch_size", "augment_factor", "noise_std"), "hazelnut_ae", quick,
        spec, infer, setup)


def _unet_ae(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import unet_dagm_rsdd as P
    from adlib.pipelines import unet_rules

    cfg, data, setup = _loaded(P, quick, dataset="dagm", category="Class8")
    variant = P.VARIANTS[0]
    spec = P.spec(data, cfg, variant)
    rule = unet_rules.Rule.from_settings(cfg)

    def infer(dev: torch.device) -> int:  # residuals, segmentation map, image score (a-priori rule)
        raw = P.residual_maps(spec.model.to(dev), data.test, dev)
        unet_rules.seg_map(raw, rule.seg_window, rule.seg_filter)
        unet_rules.score_of(raw, rule.score_sigma)
        return len(data.test)

    return _from_spec(
        "unet_ae", f"seed-002 UNet AE ({variant}), DAGM-like Class8, {len(data.train)} train images "
        f"{tuple(data.train.shape[-2:])} px (random crops in the step), {len(data.test)} full test images",
        cfg, ("base_channels", "batch_size", "crop", "image_size", "seg_window", "score_sigma"),
        "unet_dagm_rsdd", quick, spec, infer, setup)


def _patch_ae(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import sem_patches as P

    cfg, data, setup = _loaded(P, quick)
    spec = P.spec(data, cfg, "sae")

    def infer(dev: torch.device) -> int:  # reconstruction-error maps (no denoiser)
        x = P.to_tensor(data.patches.test)
        recon = P.reconstruct(spec.model.to(dev), x, device=dev)
        P.stitch(data, ((x - recon) ** 2).flatten(1).mean(1).numpy())
        return len(data.split.test)

    return _from_spec(
        "patch_ae", f"seed-003 patch AE (sae), SEM-like, {len(data.patches.train)} random train "
        f"patches, {len(data.split.test)} test images as {len(data.patches.test)} grid patches "
        "(maps stitched from patch scores)", cfg,
        ("image_size", "n_train", "stride", "batch_size", "base", "latent_dim"), "sem_patches", quick,
        spec, infer, setup)


def _denoiser(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import sem_patches as P

    cfg, data, setup = _loaded(P, quick)
    ae = P.spec(data, cfg, "sae").model.eval()
    spec = P.denoiser_spec(data, cfg, "sae", ae, int(cfg["den_depth"]))

    def infer(dev: torch.device) -> int:  # AE -> denoiser, the three scores, stitched maps
        stages = P.run_stages(ae.to(dev), spec.model.to(dev), data.patches.test, device=dev)
        for scores in stages.scores().values():
            P.stitch(data, scores)
        return len(data.split.test)

    return _from_spec(
        "denoiser", f"seed-003 feature denoiser on a frozen patch AE (reconstructions precomputed "
        f"by the pipeline), SEM-like, {len(data.patches.train)} train patches, "
        f"{len(data.split.test)} test images (AE + denoiser, 3 stitched maps)", cfg,
        ("image_size", "n_train", "batch_size", "den_depth", "den_width"), "sem_patches", quick,
        spec, infer, setup)


def _fanogan_infer(P: Any, cfg: dict[str, Any], data: Any, variant: str, spec: TrainSpec) -> Callable:
    """Inference of a variant (its final stage's networks, untrained) with the pipeline's score."""
    from adlib.experiment import Trained
    from adlib.history import History

    stage = P.STAGES[variant][-1]
    trained = P.Trained(variant, {stage: Trained(spec.name, spec.model, History(), 0.0, Path(), False)})
    sets = data.datasets(variant)
    fn = P.score_fn(trained, cfg)

    def infer(dev: torch.device) -> int:
        trained.model.to(dev).eval()
        for ds in (sets.test, sets.val):
            for i in range(0, len(ds), 32):
                fn(P.stack(torch.utils.data.Subset(ds, range(i, min(i + 32, len(ds))))).to(dev))
        return len(sets.test) + len(sets.val)

    return infer


def _fanogan(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import fanogan_vs_ae as P

    cfg, data, setup = _loaded(P, quick, category="bottle")
    gan = P.spec(data, cfg, "f-anogan", stage="gan")  # the encoder stage is not benchmarked
    encoder = P.spec(data, cfg, "f-anogan", stage="encoder", gan=copy.deepcopy(gan.model))
    return _from_spec(
        "fanogan", f"seed-001 f-AnoGAN, WGAN-GP stage (critic every step, generator every "
        f"{cfg['n_critic']}th), MVTec-like bottle, {len(data.gan.train)} train images; inference = "
        "izi_f score + residual map", cfg, ("gan_image_size", "gan_width", "latent_dim", "gan_batch", "n_critic"),
        "fanogan_vs_ae", quick, gan, _fanogan_infer(P, cfg, data, "f-anogan", encoder), setup,
        amp_safe=False)


def _ae256(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import fanogan_vs_ae as P

    cfg, data, setup = _loaded(P, quick, category="bottle")
    spec = P.spec(data, cfg, "ae-256")
    infer = _fanogan_infer(P, cfg, data, "ae-256", P.spec(data, cfg, "ae-256"))
    return _from_spec(
        "ae256", f"seed-001 dense-latent conv. AE, MVTec-like bottle, {len(data.ae.train)} train images",
        cfg, ("image_size", "ae_width", "ae_latent", "ae_batch"), "fanogan_vs_ae", quick, spec, infer, setup)


BUILDERS: dict[str, Callable[[bool, torch.device, Path], Workload]] = {
    "conv_ae": _conv_ae, "unet_ae": _unet_ae, "patch_ae": _patch_ae, "denoiser": _denoiser,
    "fanogan": _fanogan, "ae256": _ae256,
}
"""Workload builders by model name (the order of :data:`adlib.bench.MODELS`)."""
