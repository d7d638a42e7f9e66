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

The models, optimizers, loaders and steps come from each pipeline's training spec
(``spec(data, cfg, variant)``, an :class:`adlib.experiment.TrainSpec`; see
:mod:`adlib.bench_workloads`), so the benchmark times exactly what the notebooks run (minus
per-epoch validation and monitoring callbacks). Sizes come from each pipeline's ``PROFILES["cpu"]`` (``PROFILES["smoke"]`` with
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
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adlib.bench_workloads import BUILDERS, Workload, step_of  # noqa: F401 - re-exported

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


def benchmarks_path(out: str | os.PathLike | None) -> Path:
    """``out``, else ``docs/benchmarks.md`` at the repository top (``benchmarks.md`` outside one)."""
    if out is not None:
        return Path(out)
    from adlib.config import repo_root

    top = repo_root()
    return (top / "docs" / "benchmarks.md") if top is not None else Path("benchmarks.md")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m adlib.bench [--quick] [--models ...] [--device ...] [--out ...]``;
    ``--patchcore [...]`` runs :mod:`adlib.bench_patchcore` with the other arguments instead."""
    given = list(sys.argv[1:] if argv is None else argv)
    if "--patchcore" in given:
        from adlib import bench_patchcore

        return bench_patchcore.main([a for a in given if a != "--patchcore"])
    p = argparse.ArgumentParser(prog="python -m adlib.bench", description=__doc__.split("\n")[0])
    p.add_argument("--patchcore", action="store_true",
                   help="PatchCore against memory-bank size instead (python -m adlib.bench_patchcore)")
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
    md, js = write_results(record, benchmarks_path(args.out))
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
