"""Throughput benchmark of every course model through its real data pipeline.

Run ``python -m adlib.bench`` (``--quick`` for tiny data and the smoke sizes). For each model at
its CPU-profile size it measures:

* **end-to-end** training throughput (images/s): reader -> :class:`ImageDataset` (decoded once,
  cached as uint8) -> tensor augmentation -> :func:`make_loader` -> the pipeline's own train step,
  run by :func:`adlib.train.fit`;
* **compute-only** throughput: the same model, optimizer and step on batches pre-loaded as tensors
  (already on the device); ``overhead = compute-only / end-to-end`` (1.0 = the data pipeline
  costs nothing);
* **inference** throughput for full anomaly maps (the pipeline's map functions, images/s);
* **peak resident memory** of the process while that model is benchmarked, and the peak GPU
  memory on CUDA.

The models are built, and their loaders and steps taken, by calling each pipeline's own training
function with :func:`adlib.train.load_or_train` intercepted (:func:`capture_training`), so the
benchmark times exactly what the notebooks run (minus per-epoch validation and monitoring
callbacks). Sizes come from each pipeline's ``PROFILES["cpu"]`` (``PROFILES["smoke"]`` with
``--quick``).

Timing: warm-up repetitions first, then end-to-end and compute-only repetitions interleaved (so
that a change in machine load hits both), medians reported. Torch uses as many threads as the
process has cores. Results go to ``docs/benchmarks.md`` (between the ``bench`` markers, prose
outside them is kept) and a JSON file beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import inspect
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODELS: tuple[str, ...] = ("conv_ae", "unet_ae", "patch_ae", "denoiser", "fanogan", "ae256")
"""Benchmarked workloads, in notebook order."""

NOTEBOOKS: dict[str, str] = {
    "conv_ae": "01", "unet_ae": "02", "patch_ae": "03", "denoiser": "03", "fanogan": "04",
    "ae256": "04",
}

TARGET_OVERHEAD = 1.10
"""Pipeline overhead target: end-to-end time per image at most 10 % above compute-only."""

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


class BenchError(ValueError):
    """Bad benchmark arguments (unknown model, device), raised before anything is loaded."""


# --------------------------------------------------------------------------- workloads


@dataclass
class Workload:
    """One model's training and inference, as its pipeline sets them up.

    Attributes:
        name: key in :data:`MODELS`.
        description: one line for the report (model and data).
        settings: the sizes used (shown in the report).
        source: where the sizes come from.
        model, optimizer: the freshly initialised network(s) and optimizer(s), copied per run.
        loader: the pipeline's training loader (an epoch = one pass).
        step: ``step(model, batch, ctx) -> loss tensor | dict`` for :func:`adlib.train.fit`.
        prepare: per-batch work the pipeline's step does before the network (e.g. random crops);
            applied once while pre-loading the compute-only batches, so there it costs nothing.
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


@dataclass
class _Call:
    model: nn.Module
    optimizer: Any
    loader: Iterable
    step: Callable[..., Any]


def _n_positional(fn: Callable) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 3
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _as_step(step_fn: Callable | None, loss_fn: Callable | None) -> Callable[..., Any]:
    """A three-argument step from a pipeline's ``step_fn`` or ``loss_fn`` (fit's default step)."""
    from adlib.train import batch_input

    if step_fn is None:
        if loss_fn is None:
            raise BenchError("The pipeline called load_or_train without step_fn or loss_fn.")

        def default(m: nn.Module, b: Any, ctx: Any) -> torch.Tensor:
            x = batch_input(b)
            with ctx.autocast():
                return loss_fn(m(x), x)

        return default
    if _n_positional(step_fn) >= 3:
        return lambda m, b, ctx: step_fn(m, b, ctx)

    def two(m: nn.Module, b: Any, ctx: Any) -> Any:
        with ctx.autocast():
            return step_fn(m, b)

    return two


@contextlib.contextmanager
def capture_training(*modules: Any) -> Iterator[list[_Call]]:
    """Intercept :func:`adlib.train.load_or_train` (and the same name in ``modules``).

    Every call is recorded as a snapshot (deep copy of model and optimizer, taken before the
    pipeline touches them again) with its loader and step, and returns an empty ``History``
    instead of training. Restored on exit.
    """
    import adlib.train as T

    calls: list[_Call] = []

    def fake(model: nn.Module, train_loader: Iterable, **kw: Any) -> T.History:
        model_copy, opt_copy = copy.deepcopy((model, kw.get("optimizer")))
        calls.append(_Call(model_copy, opt_copy, train_loader,
                           _as_step(kw.get("step_fn"), kw.get("loss_fn"))))
        return T.History()

    targets = [T, *modules]
    saved = [(m, m.load_or_train) for m in targets if hasattr(m, "load_or_train")]
    try:
        for m, _ in saved:
            m.load_or_train = fake
        yield calls
    finally:
        for m, orig in saved:
            m.load_or_train = orig


def _pick(cfg: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The listed settings that the profile has (profiles evolve; the report shows what was used)."""
    return {k: cfg[k] for k in keys if k in cfg}


def _profile(module: Any, quick: bool) -> dict[str, Any]:
    return dict(module.PROFILES["smoke" if quick else "cpu"])


def _conv_ae(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import hazelnut_ae as P

    cfg = _profile(P, quick)
    t0 = time.perf_counter()
    data = P.load_data(None, "hazelnut", cfg, seed=0, progress=False)
    setup = time.perf_counter() - t0
    with capture_training(P) as calls:
        trained = P.train_variant(data, cfg, "l2", results_dir=work, device=device, seed=0,
                                  force_train=True, monitor=False, progress=False)
    (call,) = calls
    model = trained.model

    def infer(dev: torch.device) -> int:
        x, recon = P.reconstruct(model.to(dev), data.test, dev)
        P.anomaly_maps(x, recon, "l2")
        return len(data.test)

    keys = ("image_size", "latent_dim", "batch_size", "augment_factor", "noise_std")
    return Workload(
        "conv_ae", f"seed-000 conv. AE (L2), MVTec-like hazelnut, {len(data.train)} train images "
        f"x{cfg['augment_factor']} augmented per epoch, {len(data.test)} test images",
        _pick(cfg, keys), f"adlib.pipelines.hazelnut_ae.PROFILES[{_pname(quick)!r}]",
        call.model, call.optimizer, call.loader, call.step, infer, setup_seconds=setup)


def _unet_ae(quick: bool, device: torch.device, work: Path) -> Workload:
    from adlib.pipelines import unet_dagm_rsdd as P

    cfg = _profile(P, quick)
    t0 = time.perf_counter()
    data = P.load_dagm(None, "Class8", cfg, seed=0, progress=False)
    setup = time.perf_counter() - t0
    variant = cfg["variants"][0]
    with capture_training(P) as calls:
        model, _ = P.train_variant(variant, data, cfg, device=device, results_dir=work, seed=0,
                                   force_train=True, progress=False)
    (call,) = calls
    crop_gen = torch.Generator().manual_seed(1)

    def prepare(batch: dict) -> dict:
        return {**batch, "image": P.random_crop_batch(batch["image"], cfg["crop"], crop_gen)}

    rule = P.Rule.from_settings(cfg)

    def infer(dev: torch.device) -> int:  # residuals, segmentation map, image score (a-priori rule)
        raw = P.residual_maps(model.to(dev), data.test, dev)
        P.seg_map(raw, rule.seg_size, rule.seg_filter)
        P.score_of(raw, rule.score_sigma)
        return len(data.test)

    keys = ("base_channels", "batch_size", "crop", "image_size", "seg_size", "score_sigma")
    return Workload(
        "unet_ae", f"seed-002 UNet AE ({variant}), DAGM-like Class8, {len(data.train)} train "
        f"images {tuple(data.train.shape[-2:])} px, {len(data.test)} full test images",
        _pick(cfg, keys), f"adlib.pipelines.unet_dagm_rsdd.PROFILES[{_pname(quick)!r}]",
        call.model, call.optimizer, call.loader, call.step, infer, prepare=prepare,
        setup_seconds=setup)


def _pname(quick: bool) -> str:
    return "smoke" if quick else "cpu"


def _sem(quick: bool) -> tuple[Any, dict[str, Any], Any, float]:
    from adlib.pipelines import sem_patches as P

    cfg = _profile(P, quick)
    t0 = time.perf_counter()
    data = P.load_data(None, "nanofibres", cfg, seed=0, progress=False)
    return P, cfg, data, time.perf_counter() - t0


def _patch_ae(quick: bool, device: torch.device, work: Path) -> Workload:
    P, cfg, data, setup = _sem(quick)
    with capture_training(P) as calls:
        ae, _, _ = P.train_autoencoder(data, cfg, "sae", results_dir=work, device=device, seed=0,
                                       force_train=True, progress=False)
    (call,) = calls

    def infer(dev: torch.device) -> int:  # reconstruction-error maps (no denoiser)
        x = P.to_tensor(data.patches.test)
        recon = P.reconstruct(ae.to(dev), x, device=dev)
        P.stitch(data, ((x - recon) ** 2).flatten(1).mean(1).numpy())
        return len(data.split.test)

    keys = ("image_size", "n_train", "stride", "batch_size", "base", "latent_dim")
    return Workload(
        "patch_ae", f"seed-003 patch AE (sae), SEM-like, {len(data.patches.train)} random train "
        f"patches, {len(data.split.test)} test images as {len(data.patches.test)} grid patches "
        "(maps stitched from patch scores)",
        _pick(cfg, keys), f"adlib.pipelines.sem_patches.PROFILES[{_pname(quick)!r}]",
        call.model, call.optimizer, call.loader, call.step, infer, setup_seconds=setup)


def _denoiser(quick: bool, device: torch.device, work: Path) -> Workload:
    P, cfg, data, setup = _sem(quick)
    torch.manual_seed(0)
    ae = P.build_patch_model("sae", 1, data.patch_size, cfg["base"], cfg["latent_dim"]).eval()
    depth = int(cfg["den_depth"])
    with capture_training(P) as calls:
        den, _, _ = P.train_denoiser(data, cfg, "sae", ae, depth, results_dir=work, device=device,
                                     seed=0, force_train=True, progress=False)
    (call,) = calls

    def infer(dev: torch.device) -> int:  # AE -> denoiser, the three scores, stitched maps
        stages = P.run_stages(ae.to(dev), den.to(dev), data.patches.test, device=dev)
        for scores in stages.scores().values():
            P.stitch(data, scores)
        return len(data.split.test)

    keys = ("image_size", "n_train", "batch_size", "den_depth", "den_width")
    return Workload(
        "denoiser", f"seed-003 feature denoiser on a frozen patch AE (reconstructions precomputed "
        f"by the pipeline), SEM-like, {len(data.patches.train)} train patches, "
        f"{len(data.split.test)} test images (AE + denoiser, 3 stitched maps)",
        _pick(cfg, keys), f"adlib.pipelines.sem_patches.PROFILES[{_pname(quick)!r}]",
        call.model, call.optimizer, call.loader, call.step, infer, setup_seconds=setup)


def _fanogan_data(quick: bool, size_key: str) -> tuple[Any, dict, Any, Any, bool, float]:
    from adlib.pipelines import fanogan_vs_ae as P

    s = P.settings_for(_pname(quick))
    t0 = time.perf_counter()
    split, synthetic = P.load_category(None, "bottle", s)
    data = P.datasets(split, s[size_key], s)
    return P, s, split, data, synthetic, time.perf_counter() - t0


def _fanogan(quick: bool, device: torch.device, work: Path) -> Workload:
    P, s, split, data, synthetic, setup = _fanogan_data(quick, "gan_image_size")
    with capture_training(P) as calls:
        run = P.train_fanogan(split, synthetic, data, s, results_dir=work, device=device, seed=0,
                              force_train=True)
    gan = calls[0]  # calls[1] is the izi_f encoder stage (not benchmarked)

    def infer(dev: torch.device) -> int:
        P.score_fanogan(run, data, dev, s["kappa"])
        return len(data.test) + len(data.val)

    keys = ("gan_image_size", "gan_width", "latent_dim", "gan_batch", "n_critic")
    return Workload(
        "fanogan", f"seed-001 f-AnoGAN, WGAN-GP stage (critic every step, generator every "
        f"{s['n_critic']}th), MVTec-like bottle, {len(data.train)} train images; inference = "
        "izi_f score + residual map", _pick(s, keys),
        f"adlib.pipelines.fanogan_vs_ae.PROFILES[{_pname(quick)!r}]",
        gan.model, gan.optimizer, gan.loader, gan.step, infer, amp_safe=False,
        setup_seconds=setup)


def _ae256(quick: bool, device: torch.device, work: Path) -> Workload:
    P, s, split, data, synthetic, setup = _fanogan_data(quick, "image_size")
    with capture_training(P) as calls:
        model, _ = P.train_autoencoder(split, synthetic, data, s, results_dir=work, device=device,
                                       seed=0, force_train=True)
    (call,) = calls

    def infer(dev: torch.device) -> int:
        P.score_autoencoder(model, data, dev)
        return len(data.test) + len(data.val)

    keys = ("image_size", "ae_width", "ae_latent", "ae_batch")
    return Workload(
        "ae256", f"seed-001 dense-latent conv. AE, MVTec-like bottle, {len(data.train)} train images",
        _pick(s, keys), f"adlib.pipelines.fanogan_vs_ae.PROFILES[{_pname(quick)!r}]",
        call.model, call.optimizer, call.loader, call.step, infer, setup_seconds=setup)


BUILDERS: dict[str, Callable[[bool, torch.device, Path], Workload]] = {
    "conv_ae": _conv_ae, "unet_ae": _unet_ae, "patch_ae": _patch_ae, "denoiser": _denoiser,
    "fanogan": _fanogan, "ae256": _ae256,
}


# --------------------------------------------------------------------------- measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak resident memory (and peak CUDA memory) over a ``with`` block.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``) and read
    on exit (``VmHWM``), so the value belongs to this block alone; elsewhere the lifetime peak
    from ``resource.getrusage`` is reported and ``method`` says so.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_mb: float | None = None
        self.gpu_mb: float | None = None
        self.method = "getrusage (process lifetime peak)"
        self.start_mb: float | None = None
        self._reset = False

    def __enter__(self) -> PeakMemory:
        self.start_mb = _status_mb("VmRSS:")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._reset = True
            self.method = "VmHWM after clear_refs (peak during this model)"
        except OSError:
            self._reset = False
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        self.rss_mb = _status_mb("VmHWM:") if self._reset else None
        if self.rss_mb is None:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.rss_mb = kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024
        if self.device.type == "cuda":
            self.gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2**20


def _status_mb(field: str) -> float | None:
    """A memory field of ``/proc/self/status`` in MB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _epochs_for(steps_per_epoch: int, min_steps: int) -> int:
    return max(1, -(-min_steps // max(1, steps_per_epoch)))


def _timed_fit(model: nn.Module, optimizer: Any, batches: Iterable, step: Callable, *,
               epochs: int, device: torch.device, amp: bool) -> tuple[float, int]:
    """Seconds and images of ``epochs`` epochs of :func:`adlib.train.fit` over ``batches``."""
    from adlib.train import batch_input, fit

    count = [0]

    def counted(m: nn.Module, b: Any, ctx: Any) -> Any:
        count[0] += int(batch_input(b).shape[0])
        return step(m, b, ctx)

    _sync(device)
    t0 = time.perf_counter()
    fit(model, batches, optimizer=optimizer, epochs=epochs, device=device, step_fn=counted,
        progress=False, amp=amp)
    _sync(device)
    return time.perf_counter() - t0, count[0]


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def measure(w: Workload, device: torch.device, *, warmup: int, reps: int, min_steps: int,
            amp: bool, min_seconds: float = 0.0) -> dict[str, Any]:
    """Time one workload (see the module docstring); returns a JSON-able record.

    Each repetition runs whole epochs, at least ``min_steps`` steps and (judged from the last
    compute-only warm-up) at least ``min_seconds``, so that short steps are not lost in timer noise.
    """
    use_amp = amp and w.amp_safe and device.type == "cuda"
    preloaded = [_to_device(w.prepare(b), device) for b in w.loader]
    if not preloaded:
        raise BenchError(f"{w.name}: the training loader yields no batch (too little data).")
    epochs = _epochs_for(len(preloaded), min_steps)
    e2e_model, e2e_opt = copy.deepcopy((w.model, w.optimizer))
    cmp_model, cmp_opt = copy.deepcopy((w.model, w.optimizer))
    kw = {"epochs": epochs, "device": device, "amp": use_amp}
    for _ in range(warmup):
        _timed_fit(e2e_model, e2e_opt, w.loader, w.step, **kw)
        sec, _ = _timed_fit(cmp_model, cmp_opt, preloaded, w.step, **kw)
        if min_seconds > 0 and sec > 0:
            kw["epochs"] = max(epochs, math.ceil(min_seconds / (sec / epochs)))
    epochs = kw["epochs"]
    e2e, cmp = [], []
    for _ in range(reps):
        sec, n = _timed_fit(e2e_model, e2e_opt, w.loader, w.step, **kw)
        e2e.append(n / sec)
        sec, n = _timed_fit(cmp_model, cmp_opt, preloaded, w.step, **kw)
        cmp.append(n / sec)
    n_steps = len(preloaded)
    del e2e_model, e2e_opt, cmp_model, cmp_opt, preloaded
    infer = []
    with torch.autocast(device_type="cuda", dtype=torch.float16) if use_amp else \
            contextlib.nullcontext():
        for i in range(max(1, warmup) + reps):
            _sync(device)
            t0 = time.perf_counter()
            n = w.infer(device)
            _sync(device)
            if i >= max(1, warmup):
                infer.append(n / (time.perf_counter() - t0))
    e2e_ips, cmp_ips = statistics.median(e2e), statistics.median(cmp)
    return {
        "epochs_per_rep": epochs, "steps_per_epoch": n_steps,
        "train_ips_end_to_end": e2e_ips, "train_ips_compute_only": cmp_ips,
        "overhead_ratio": cmp_ips / e2e_ips,
        "overhead_ratio_paired_median": statistics.median(c / e for c, e in zip(cmp, e2e, strict=True)),
        "infer_ips": statistics.median(infer),
        "reps": {"end_to_end": e2e, "compute_only": cmp, "infer": infer},
        "amp": use_amp,
    }


# --------------------------------------------------------------------------- the run


def _load() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch version, GPU (if any), load average and date."""
    from adlib.data.torchdata import available_cores

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu": cpu, "cores": available_cores(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "platform": platform.platform(), "gpu": None,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


def resolve_models(models: Sequence[str] | None) -> list[str]:
    """Validate model names (``None`` = all of :data:`MODELS`).

    Raises:
        BenchError: unknown names.
    """
    names = list(MODELS) if not models else list(models)
    bad = [m for m in names if m not in MODELS]
    if bad:
        raise BenchError(f"Unknown model(s) {bad}; choose from {list(MODELS)}.")
    return names


def run_benchmark(
    models: Sequence[str] | None = None,
    *,
    quick: bool = False,
    device: str = "auto",
    warmup: int | None = None,
    reps: int | None = None,
    min_steps: int | None = None,
    min_seconds: float | None = None,
    amp: bool = True,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark ``models`` and return the record written by :func:`write_results`.

    Args:
        models: subset of :data:`MODELS` (None: all).
        quick: tiny synthetic data and the pipelines' ``smoke`` sizes (seconds; for tests).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        warmup: untimed repetitions first (default 1).
        reps: timed repetitions, medians reported (default 7; 2 with ``quick``).
        min_steps: optimisation steps per repetition at least (whole epochs; default 12, 2 quick).
        min_seconds: seconds per repetition at least, sized from the warm-up (default 5, 0 quick).
        amp: mixed precision on CUDA where safe (autoencoders; not the WGAN-GP).
        threads: torch threads (default: the cores this process may use).
        progress: print a line per model.

    Raises:
        BenchError: unknown model names.
        adlib.train.DeviceError: ``device="cuda"`` without a GPU.
    """
    from adlib.data.torchdata import available_cores
    from adlib.train import select_device

    names = resolve_models(models)
    dev = select_device(device)
    warmup = 1 if warmup is None else warmup
    reps = (2 if quick else 7) if reps is None else reps
    min_steps = (2 if quick else 12) if min_steps is None else min_steps
    min_seconds = (0.0 if quick else 5.0) if min_seconds is None else float(min_seconds)
    threads = available_cores() if threads is None else threads
    if reps < 1 or warmup < 0 or min_steps < 1 or threads < 1:
        raise BenchError(f"reps={reps} and threads={threads} must be >= 1, warmup={warmup} >= 0, "
                         f"min_steps={min_steps} >= 1.")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    record: dict[str, Any] = {
        "command": "python -m adlib.bench" + (" --quick" if quick else ""),
        "quick": quick, "device": str(dev), "warmup": warmup, "reps": reps,
        "min_steps": min_steps, "min_seconds": min_seconds, "target_overhead": TARGET_OVERHEAD,
        "machine": machine_info(),
        "results": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="adlib-bench-") as tmp:
            for name in names:
                load_start = _load()
                t0 = time.perf_counter()
                with PeakMemory(dev) as mem:
                    w = BUILDERS[name](quick, dev, Path(tmp))
                    res = measure(w, dev, warmup=warmup, reps=reps, min_steps=min_steps, amp=amp,
                                  min_seconds=min_seconds)
                res.update({"notebook": NOTEBOOKS[name], "description": w.description,
                            "settings": w.settings, "source": w.source,
                            "setup_seconds": w.setup_seconds, "peak_rss_mb": mem.rss_mb,
                            "peak_rss_method": mem.method, "peak_gpu_mb": mem.gpu_mb,
                            "rss_before_mb": mem.start_mb,
                            "meets_target": res["overhead_ratio"] <= TARGET_OVERHEAD,
                            "wall_seconds": time.perf_counter() - t0,
                            "load_average_1min": [load_start, _load()]})
                record["results"][name] = res
                if progress:
                    print(f"{name:9s} e2e {res['train_ips_end_to_end']:8.1f} img/s  compute "
                          f"{res['train_ips_compute_only']:8.1f} img/s  overhead "
                          f"{res['overhead_ratio']:.3f}  infer {res['infer_ips']:8.1f} img/s  "
                          f"peak RSS {res['peak_rss_mb']:.0f} MB  ({res['wall_seconds']:.0f} s)",
                          flush=True)
    finally:
        torch.set_num_threads(threads_before)
    with contextlib.suppress(OSError, AttributeError):
        record["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return record


# --------------------------------------------------------------------------- report

COLUMNS: tuple[str, ...] = (
    "device", "train img/s end-to-end", "train img/s compute-only", "overhead (compute / e2e)",
    "inference img/s (full maps)", "peak RSS MB",
)


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table_rows(record: dict[str, Any]) -> dict[str, list[str]]:
    """One markdown table row (cells of :data:`COLUMNS`) per model."""
    rows = {}
    for name, r in record["results"].items():
        dev = record["device"] + (" (AMP)" if r.get("amp") else "")
        rows[name] = [dev, _fmt(r["train_ips_end_to_end"]), _fmt(r["train_ips_compute_only"]),
                      _fmt(r["overhead_ratio"], 3), _fmt(r["infer_ips"]), _fmt(r["peak_rss_mb"], 0)]
    return rows


def render_markdown(record: dict[str, Any]) -> str:
    """The generated part of ``docs/benchmarks.md``: machine, command, one table per model."""
    m = record["machine"]
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
    load = m.get("load_average")
    lines = [
        BEGIN,
        f"Command: `{record['command']}`  ",
        f"Date: {m['date']}  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} "
        f"threads), Python {m['python']}, GPU: {m['gpu'] or 'none'}  ",
        f"Load average (1, 5, 15 min) at start: {load}; at end: {m.get('load_average_end')}  ",
        f"Timing: {record['warmup']} warm-up + {record['reps']} timed repetitions (median), "
        f"each >= {record['min_steps']} optimisation steps and >= "
        f"{record.get('min_seconds', 0):g} s (whole epochs, sized from the warm-up); target overhead "
        f"<= {record['target_overhead']:.2f}.",
        "",
    ]
    rows = table_rows(record)
    for name, r in record["results"].items():
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        verdict = "meets" if r["meets_target"] else "**misses**"
        lines += [
            f"### {name} (notebook {r['notebook']})",
            "",
            f"{r['description']}. Sizes: {settings} (from {r['source']}). Data setup (read, "
            f"validate, decode once): {r['setup_seconds']:.1f} s; {r['steps_per_epoch']} steps "
            f"per epoch, {r['epochs_per_rep']} epoch(s) per repetition; "
            f"overhead {verdict} the target."
            + (f" 1-min load average before/after this model: {r['load_average_1min']}."
               if r.get("load_average_1min") else "")
            + (f" Resident memory before this model: {r['rss_before_mb']:.0f} MB (the peak "
               "includes it)." if r.get("rss_before_mb") else "")
            + (f" Peak GPU memory {r['peak_gpu_mb']:.0f} MB." if r.get("peak_gpu_mb") else ""),
            "",
            head,
            "| " + " | ".join(rows[name]) + " |",
            "",
            "Repetitions in time order, end-to-end / compute-only img/s: " + ", ".join(
                f"{e:.0f} / {c:.0f}" for e, c in zip(r["reps"]["end_to_end"],
                                                     r["reps"]["compute_only"], strict=True)) + ".",
            "",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


_DOC_TEMPLATE = """# Benchmarks

Throughput of every course model through its real data pipeline, written by
`python -m adlib.bench` (see the module docstring of `adlib.bench` for what is timed).

{generated}"""


def write_results(record: dict[str, Any], md_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the markdown (replacing only the part between the bench markers of an existing
    file) and ``<md stem>.json`` beside it. Returns both paths."""
    md = Path(md_path)
    md.parent.mkdir(parents=True, exist_ok=True)
    generated = render_markdown(record)
    old = md.read_text(encoding="utf-8") if md.exists() else ""
    if BEGIN in old and END in old:
        pre, rest = old.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + generated.rstrip("\n") + post
    else:
        text = _DOC_TEMPLATE.format(generated=generated)
    md.write_text(text, encoding="utf-8")
    js = md.with_suffix(".json")
    js.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return md, js


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m adlib.bench [--quick] [--models ...] [--device ...] [--out ...]``."""
    p = argparse.ArgumentParser(prog="python -m adlib.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny data, smoke sizes (seconds)")
    p.add_argument("--models", nargs="+", choices=MODELS, help="subset of models (default: all)")
    p.add_argument("--device", default="auto", help='"auto" (default), "cpu" or "cuda"')
    p.add_argument("--warmup", type=int, default=None, help="warm-up repetitions (default 1)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 7, quick 2)")
    p.add_argument("--min-steps", type=int, default=None, help="steps per repetition at least")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="seconds per repetition at least (default 5; 0 with --quick)")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    p.add_argument("--out", default=None,
                   help="markdown file (default docs/benchmarks.md at the repository top; "
                        "the JSON goes beside it)")
    args = p.parse_args(argv)
    record = run_benchmark(args.models, quick=args.quick, device=args.device, warmup=args.warmup,
                           reps=args.reps, min_steps=args.min_steps, min_seconds=args.min_seconds,
                           amp=not args.no_amp,
                           threads=args.threads)
    record["command"] = " ".join(["python -m adlib.bench", *(sys.argv[1:] if argv is None else argv)])
    out = args.out
    if out is None:
        from adlib.config import repo_root

        top = repo_root()
        out = (top / "docs" / "benchmarks.md") if top is not None else Path("benchmarks.md")
    md, js = write_results(record, out)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
