"""PatchCore's cost against the size of its memory bank: ``python -m adlib.bench_patchcore``.

PatchCore (:mod:`adlib.models.patchcore`) keeps a coreset of the patch embeddings of the
defect-free training images; the coreset ratio trades memory and scoring time against accuracy.
For each ratio this benchmark reports, on the synthetic MVTec-like ``bottle`` stand-in:

* **fit** time: a new :class:`~adlib.models.patchcore.PatchCore` fitted on the training
  embeddings, i.e. greedy k-center selection of the coreset. Every ratio is fitted anew (the
  greedy order is incremental, so a prefix of the largest coreset would give the smaller ones
  for free, but then the smaller ratios' fit times would not be measured);
* **memory bank** size: patches kept and their MB (``PatchCore.memory_bytes``);
* **score** time per test image: the nearest-neighbour search alone (on embeddings computed
  beforehand) and end to end (backbone features + nearest neighbours, batch by batch, as a
  notebook scores), medians of ``reps`` repetitions after one untimed warm-up batch;
* **image AUROC** on the stand-in's test split (:func:`adlib.metrics.image_auroc`);
* **peak memory** during the fit and during the scoring (:class:`adlib.bench.PeakMemory`:
  the process's resident high-water mark, reset before each phase; it includes the backbone,
  the libraries and the embeddings held, shown as "RSS before").

The embeddings of the training and test images are computed ONCE, with their own time
("feature extraction"). Only the backbone runs on ``device``: the coreset selection and the
nearest-neighbour search of :class:`PatchCore` run on the CPU. Results go between the
``bench-patchcore`` markers of ``docs/benchmarks.md`` (the prose around them is kept) and into
``docs/benchmarks_patchcore.json``; ``python -m adlib.bench --patchcore`` runs the same.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adlib.bench import BenchError, PeakMemory, _sync, benchmarks_path, machine_info

__all__ = ["RATIOS", "BEGIN", "END", "COLUMNS", "run_patchcore_bench", "table_rows",
           "render_markdown", "write_results", "main"]

RATIOS: tuple[float, ...] = (0.001, 0.01, 0.05, 0.1, 0.25)
"""Default coreset ratios (share of the training patches kept in the memory bank)."""
BACKBONE = "efficientnet_lite0"
CATEGORY = "bottle"
BEGIN, END = "<!-- bench-patchcore:start -->", "<!-- bench-patchcore:end -->"
COLUMNS: tuple[str, ...] = (
    "coreset ratio", "bank patches", "bank MB", "fit s", "NN ms/img", "NN + features ms/img",
    "image AUROC", "peak RSS fit MB", "peak RSS score MB",
)


# --------------------------------------------------------------------------- data and embeddings


def _images(samples: Sequence[Any], size: int, channels: int, report: Any) -> torch.Tensor:
    """``(N, C, S, S)`` floats in [0, 1] of ``samples`` (decoded once, resized to ``size``)."""
    from adlib.data.torchdata import ImageDataset

    ds = ImageDataset(list(samples), image_size=size, channels=channels, decoded=report, progress=False)
    return ds.images_uint8().float().div_(255.0)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall seconds (CUDA work included)."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _embed(extractor: torch.nn.Module, images: torch.Tensor, batch_size: int, neighbourhood: int,
           device: torch.device) -> torch.Tensor:
    from adlib.features.embed import embed_images

    return embed_images(extractor, torch.split(images, batch_size), neighbourhood=neighbourhood,
                        device=device)


def _load(quick: bool, image_size: int, val_fraction: float, seed: int) -> dict[str, Any]:
    """Training (validation held out) and test images of the bottle stand-in, and the test labels."""
    from adlib import experiment

    loaded = experiment.load_split("mvtec", None, CATEGORY, synthetic_size="tiny" if quick else "default",
                                   progress=False)
    split = loaded.split
    train, _ = experiment.hold_out(split.train, val_fraction, seed, where=f"{split.root} ({CATEGORY})")
    return {"train": _images(train, image_size, 3, loaded.report),
            "test": _images(split.test, image_size, 3, loaded.report),
            "labels": np.array([s.label for s in split.test], dtype=int)}


# --------------------------------------------------------------------------- one ratio


def _score_time(run_batch: Callable[[int], torch.Tensor], n_batches: int, n_images: int, reps: int,
                device: torch.device) -> tuple[float, list[float], np.ndarray]:
    """Median ms per image of scoring every batch, the repetitions, and the image scores."""
    run_batch(0)  # untimed warm-up (first-call allocations, lazy initialisation)
    times, scores = [], None
    for _ in range(reps):
        out, sec = _timed(lambda: [run_batch(i) for i in range(n_batches)], device)
        times.append(1000.0 * sec / n_images)
        scores = torch.cat(out).numpy()
    return statistics.median(times), times, scores


def _measure_ratio(ratio: float, emb: dict[str, Any], extractor: torch.nn.Module, opts: dict[str, Any],
                   device: torch.device) -> dict[str, Any]:
    """Fit one PatchCore anew and time its scoring (see the module docstring)."""
    from adlib.features.embed import embed_images
    from adlib.metrics import image_auroc
    from adlib.models.patchcore import PatchCore

    bs = opts["batch_size"]
    model = PatchCore(ratio, opts["bank_limit"], opts["proj_dim"], seed=opts["seed"])
    with PeakMemory(device) as fit_mem:
        _, fit_s = _timed(lambda: model.fit(emb["train"]), device)
    test_emb, test_images = torch.split(emb["test"], bs), torch.split(emb["test_images"], bs)
    n = len(emb["labels"])
    with PeakMemory(device) as score_mem:
        nn_ms, nn_reps, scores = _score_time(lambda i: model.patch_scores(test_emb[i])[1], len(test_emb),
                                             n, opts["reps"], device)
        e2e_ms, e2e_reps, e2e_scores = _score_time(
            lambda i: model.patch_scores(embed_images(extractor, [test_images[i]], device=device,
                                                      neighbourhood=opts["neighbourhood"]))[1],
            len(test_images), n, opts["reps"], device)
    out = {
        "coreset_ratio": ratio, "bank_patches": len(model.bank), "bank_mb": model.memory_bytes / 2**20,
        "selected_from": emb["patches"] if opts["bank_limit"] is None else min(opts["bank_limit"], emb["patches"]),
        "fit_seconds": fit_s, "nn_ms_per_image": nn_ms, "score_ms_per_image": e2e_ms,
        "reps_ms_per_image": {"nn": nn_reps, "nn_and_features": e2e_reps},
        "image_auroc": image_auroc(scores, emb["labels"]),
        "max_score_difference": float(np.abs(scores - e2e_scores).max()),
        "peak_rss_fit_mb": fit_mem.rss_mb, "rss_before_fit_mb": fit_mem.start_mb,
        "peak_rss_score_mb": score_mem.rss_mb, "rss_before_score_mb": score_mem.start_mb,
        "peak_gpu_score_mb": score_mem.gpu_mb, "peak_rss_method": fit_mem.method,
    }
    return out


# --------------------------------------------------------------------------- the run


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    values = [float(r) for r in ratios]
    if not values or any(not 0.0 < r <= 1.0 for r in values):
        raise BenchError(f"ratios={list(ratios)!r}: give at least one coreset ratio, each in (0, 1].")
    return values


def run_patchcore_bench(
    ratios: Sequence[float] = RATIOS,
    *,
    quick: bool = False,
    device: str = "cpu",
    image_size: int | None = None,
    layers: Sequence[int] | None = None,
    neighbourhood: int = 3,
    proj_dim: int | None = 128,
    bank_limit: int | None = None,
    batch_size: int = 8,
    reps: int | None = None,
    threads: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark PatchCore for each coreset ratio; returns the record :func:`write_results` writes.

    Args:
        ratios: coreset ratios, each in (0, 1].
        quick: the tiny stand-in at 64 px, one repetition (seconds; for tests).
        device: where the backbone runs (``"cpu"``, ``"cuda"``, ``"auto"``).
        image_size: working size (default 224, quick 64).
        layers: backbone stages (default :data:`adlib.features.backbones.LAYERS` for PatchCore).
        neighbourhood, proj_dim, bank_limit, seed: as in :class:`~adlib.models.patchcore.PatchCore`
            and :func:`~adlib.features.embed.patch_embeddings`.
        batch_size: test images per scoring batch.
        reps: timed scoring repetitions (default 3, quick 1).
        threads: torch threads (default: the cores this process may use).
        progress: print a line per ratio.

    Raises:
        BenchError: bad ratios or counts, before anything is loaded.
        adlib.runtime.DeviceError: ``device="cuda"`` without a GPU.
    """
    from adlib.data.torchdata import available_cores
    from adlib.features.backbones import LAYERS, FeatureExtractor
    from adlib.runtime import select_device

    values = _check_ratios(ratios)
    reps = (1 if quick else 3) if reps is None else int(reps)
    threads = available_cores() if threads is None else int(threads)
    if reps < 1 or threads < 1 or batch_size < 1:
        raise BenchError(f"reps={reps}, threads={threads} and batch_size={batch_size} must be >= 1.")
    dev = select_device(device)
    size = int(image_size or (64 if quick else 224))
    layers = tuple(layers or LAYERS[BACKBONE]["patchcore"])
    opts = {"batch_size": int(batch_size), "bank_limit": bank_limit, "proj_dim": proj_dim,
            "neighbourhood": int(neighbourhood), "seed": int(seed), "reps": reps}
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data, load_s = _timed(lambda: _load(quick, size, 0.25 if quick else 0.1, seed), dev)
        extractor, setup_s = _timed(lambda: FeatureExtractor(BACKBONE, layers).to(dev), dev)
        _embed(extractor, data["train"][:batch_size], batch_size, neighbourhood, dev)  # untimed warm-up
        emb = {"labels": data["labels"], "test_images": data["test"]}
        emb["train"], train_s = _timed(lambda: _embed(extractor, data["train"], batch_size, neighbourhood, dev), dev)
        emb["test"], test_s = _timed(lambda: _embed(extractor, data["test"], batch_size, neighbourhood, dev), dev)
        emb["grid"] = tuple(emb["train"].shape[-2:])
        emb["patches"] = len(emb["train"]) * emb["grid"][0] * emb["grid"][1]
        n_train, n_test = len(data["train"]), len(data["test"])
        record: dict[str, Any] = {
            "command": "python -m adlib.bench_patchcore" + (" --quick" if quick else ""),
            "quick": quick, "device": str(dev), "reps": reps, "machine": machine_info(),
            "settings": {"dataset": f"synthetic mvtec {CATEGORY} ({'tiny' if quick else 'default'})",
                         "image_size": size, "backbone": BACKBONE, "layers": list(layers),
                         "neighbourhood": int(neighbourhood), "embedding_dim": int(emb["train"].shape[1]),
                         "grid": list(emb["grid"]), "proj_dim": proj_dim, "bank_limit": bank_limit,
                         "batch_size": int(batch_size), "seed": int(seed), "train_images": n_train,
                         "test_images": n_test, "test_defective": int(data["labels"].sum())},
            "feature_extraction": {
                "load_seconds": load_s, "backbone_setup_seconds": setup_s, "train_seconds": train_s,
                "train_ms_per_image": 1000.0 * train_s / n_train, "test_seconds": test_s,
                "test_ms_per_image": 1000.0 * test_s / n_test, "train_patches": emb["patches"],
                "train_embeddings_mb": emb["train"].numel() * emb["train"].element_size() / 2**20},
            "results": [],
        }
        for ratio in values:
            res = _measure_ratio(ratio, emb, extractor, opts, dev)
            gc.collect()  # the ratio's bank and distance buffers go before the next one
            record["results"].append(res)
            if progress:
                print(f"ratio {ratio:<6g} bank {res['bank_patches']:7d} patches ({res['bank_mb']:7.2f} MB)  "
                      f"fit {res['fit_seconds']:7.2f} s  NN {res['nn_ms_per_image']:7.2f} ms/img  "
                      f"+features {res['score_ms_per_image']:7.2f} ms/img  AUROC {res['image_auroc']}",
                      flush=True)
    finally:
        torch.set_num_threads(threads_before)
    with contextlib.suppress(OSError, AttributeError):
        record["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return record


# --------------------------------------------------------------------------- report


def _fmt(v: Any, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def table_rows(record: dict[str, Any]) -> list[list[str]]:
    """One row of :data:`COLUMNS` cells per coreset ratio, in run order."""
    return [[f"{r['coreset_ratio']:g}", str(r["bank_patches"]), _fmt(r["bank_mb"], 2),
             _fmt(r["fit_seconds"], 2), _fmt(r["nn_ms_per_image"], 2), _fmt(r["score_ms_per_image"], 1),
             _fmt(r["image_auroc"], 3), _fmt(r["peak_rss_fit_mb"], 0), _fmt(r["peak_rss_score_mb"], 0)]
            for r in record["results"]]


def render_markdown(record: dict[str, Any]) -> str:
    """The generated block of ``docs/benchmarks.md`` (between :data:`BEGIN` and :data:`END`)."""
    m, s, fx = record["machine"], record["settings"], record["feature_extraction"]
    gpu_peaks = [r["peak_gpu_score_mb"] for r in record["results"] if r.get("peak_gpu_score_mb")]
    lines = [
        BEGIN,
        "## PatchCore: cost against memory-bank size",
        "",
        f"Command: `{record['command']}`  ",
        f"Date: {m['date']}  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Python {m['python']}, GPU: {m['gpu'] or 'none'}; backbone on {record['device']}, coreset "
        "and nearest neighbours on the CPU  ",
        f"Load average (1, 5, 15 min) at start: {m.get('load_average')}; at end: {m.get('load_average_end')}  ",
        f"Data: {s['dataset']}, {s['train_images']} defect-free training images, {s['test_images']} test "
        f"images ({s['test_defective']} defective), {s['image_size']} px. Features: {s['backbone']} stages "
        f"{s['layers']}, {s['neighbourhood']}x{s['neighbourhood']} local averaging, {s['embedding_dim']} "
        f"dimensions on a {s['grid'][0]}x{s['grid'][1]} grid: {fx['train_patches']} training patches "
        f"({fx['train_embeddings_mb']:.1f} MB). Coreset projection {s['proj_dim']}, bank limit "
        f"{s['bank_limit']}, seed {s['seed']}; each ratio fitted anew.",
        "",
        f"Feature extraction (once, not in the fit times): training images {fx['train_seconds']:.2f} s "
        f"({fx['train_ms_per_image']:.1f} ms/img), test images {fx['test_ms_per_image']:.1f} ms/img; "
        f"backbone setup {fx['backbone_setup_seconds']:.2f} s, data {fx['load_seconds']:.2f} s. Scoring: "
        f"batches of {s['batch_size']}, median of {record['reps']} repetition(s) after a warm-up batch; "
        "'NN' = nearest-neighbour search on embeddings computed beforehand, 'NN + features' = backbone "
        "and search batch by batch. Peak RSS: the process's high-water mark during each phase (it "
        "includes the libraries, the backbone and the embeddings held: "
        f"{record['results'][0]['rss_before_fit_mb'] or 0:.0f} MB before the first fit)."
        + (f" Peak GPU memory while scoring: {max(gpu_peaks):.0f} MB." if gpu_peaks else ""),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in table_rows(record)),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_results(record: dict[str, Any], md_path: str | os.PathLike,
                  json_path: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write the block between the markers of ``md_path`` (appended when the file has none; the
    rest of the file is kept) and the JSON (default ``<md stem>_patchcore.json`` beside it)."""
    md = Path(md_path)
    md.parent.mkdir(parents=True, exist_ok=True)
    generated = render_markdown(record).rstrip("\n")
    old = md.read_text(encoding="utf-8") if md.exists() else "# Benchmarks\n"
    if BEGIN in old and END in old:
        pre, rest = old.split(BEGIN, 1)
        text = pre + generated + rest.split(END, 1)[1]
    else:
        text = old.rstrip("\n") + "\n\n" + generated + "\n"
    md.write_text(text, encoding="utf-8")
    js = Path(json_path) if json_path is not None else md.with_name(f"{md.stem}_patchcore.json")
    js.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return md, js


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m adlib.bench_patchcore [--quick] [--ratios R ...] [--device D] [--out FILE] ...``."""
    p = argparse.ArgumentParser(prog="python -m adlib.bench_patchcore", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny stand-in at 64 px, one repetition (seconds)")
    p.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS),
                   help=f"coreset ratios (default {' '.join(map(str, RATIOS))})")
    p.add_argument("--device", default="cpu", help='where the backbone runs: "cpu" (default), "cuda", "auto"')
    p.add_argument("--image-size", type=int, default=None, help="working size (default 224, quick 64)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="backbone stages (default: LAYERS)")
    p.add_argument("--bank-limit", type=int, default=None, help="random subset before the coreset (default: none)")
    p.add_argument("--reps", type=int, default=None, help="timed scoring repetitions (default 3, quick 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    p.add_argument("--out", default=None, help="markdown file (default docs/benchmarks.md; JSON beside it)")
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(args_list)
    record = run_patchcore_bench(args.ratios, quick=args.quick, device=args.device, image_size=args.image_size,
                                 layers=args.layers, bank_limit=args.bank_limit, reps=args.reps,
                                 threads=args.threads)
    record["command"] = " ".join(["python -m adlib.bench_patchcore", *args_list])
    md, js = write_results(record, benchmarks_path(args.out))
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
