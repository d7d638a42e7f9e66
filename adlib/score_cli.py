"""``adlib score``: a trained model bundle applied to a folder of images.

::

    adlib score --model BUNDLE.model.pt --images DIR --out OUT [--backend torch|onnx] [--skip-bad]

Writes ``OUT/scores.csv`` (``path,score,anomalous``; one row per image, ``anomalous`` at the
bundle's honest image threshold), ``OUT/heatmaps/<image stem>.png`` (the anomaly map over the
image, the predicted region at the honest pixel threshold outlined) and ``OUT/index.html`` (a
gallery sorted by score). Patch models (SEM, RSDDs patches) also write ``OUT/patches.csv`` with
one row per patch (``<image>#y=<row>,x=<col>``), the rows their notebook's scores CSV holds.
"""

from __future__ import annotations

import argparse
import csv
import html
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "run_from_args", "score_folder", "find_images", "reproduce", "row_key", "images_folder", "notebook_demo", "ImageResult", "ScoreRun"]


@dataclass
class ImageResult:
    """One scored image: its path relative to the images folder, score, map, patch rows."""

    path: str
    score: float
    anomalous: bool
    heatmap: str | None = None
    patches: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ScoreRun:
    """What one ``adlib score`` run did (also returned to Python callers)."""

    results: list[ImageResult]
    skipped: list[tuple[str, str]]
    seconds: float
    backend: str
    out: Path

    @property
    def seconds_per_image(self) -> float:
        """Wall time per scored image (loading, scoring, writing the heatmap)."""
        return self.seconds / max(1, len(self.results))


MASK_FOLDERS = ("ground_truth", "Label", "gt", "GroundTruth")
"""Folders of ground-truth masks in the course's layouts (MVTec AD, DAGM, SEM, RSDDs): never scored."""


def _is_mask(rel: Path) -> bool:
    return any(part in MASK_FOLDERS for part in rel.parts[:-1]) or rel.stem.endswith(("_mask", "_label"))


def find_images(folder: str | os.PathLike, include_masks: bool = False) -> list[Path]:
    """Every image file under ``folder``, recursively and sorted; hidden files and folders are
    skipped, and so are ground-truth masks (:data:`MASK_FOLDERS`, ``*_mask``, ``*_label``)
    unless ``include_masks``."""
    from adlib.data.io import is_image_file

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"adlib score: --images {root} is not a folder. Fix: pass the folder that "
                                "holds the images (searched recursively).")
    found = [p for p in sorted(root.rglob("*")) if p.is_file() and is_image_file(p)
             and not any(part.startswith(".") for part in p.relative_to(root).parts)
             and (include_masks or not _is_mask(p.relative_to(root)))]
    if not found:
        raise FileNotFoundError(f"adlib score: no image files under {root} (png, jpg, bmp, tif...).")
    return found


def _display(m: np.ndarray, pixel_t: float | None) -> np.ndarray:
    """Map -> [0, 1] for display: the pixel threshold sits at 0.5 (else the map's own range)."""
    top = 2.0 * pixel_t if pixel_t and pixel_t > 0 else float(m.max()) or 1.0
    return np.clip(m / top, 0.0, 1.0)


def write_heatmap(path: Path, image: np.ndarray, amap: np.ndarray, pixel_t: float | None) -> None:
    """PNG of the map (jet, 45 % opacity) over the image, predicted region outlined in white."""
    from matplotlib import colormaps
    from PIL import Image
    from scipy.ndimage import binary_erosion

    img = image.astype(np.float32) / 255.0
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]
    heat = colormaps["jet"](_display(amap, pixel_t))[..., :3]
    out = 0.55 * img + 0.45 * heat
    if pixel_t is not None:
        region = amap > pixel_t
        out[region & ~binary_erosion(region, iterations=1)] = 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray((out * 255).round().astype(np.uint8)).save(tmp, format="PNG")
    os.replace(tmp, path)


def _unique_names(paths: Sequence[str]) -> list[str]:
    """Heatmap file names: the image stem, made unique with its folder where stems repeat."""
    stems = [Path(p).stem for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    return [(Path(p).with_suffix("").as_posix().replace("/", "__") if s in dup else s) + ".png"
            for p, s in zip(paths, stems, strict=True)]


def write_index(out: Path, run: ScoreRun, bundle_info: dict) -> Path:
    """``OUT/index.html``: thresholds, then one card per image, highest score first."""
    rows = sorted(run.results, key=lambda r: -r.score)
    cards = "\n".join(
        f'<figure class="{"bad" if r.anomalous else "ok"}"><a href="{html.escape(r.heatmap or "")}">'
        f'<img src="{html.escape(r.heatmap or "")}" loading="lazy"></a><figcaption>{html.escape(r.path)}<br>'
        f'score {r.score:.5g} {"anomalous" if r.anomalous else "normal"}</figcaption></figure>' for r in rows)
    skipped = "".join(f"<li>{html.escape(p)}: {html.escape(why)}</li>" for p, why in run.skipped)
    info = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in bundle_info.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>adlib score</title><style>
body{{font-family:sans-serif;margin:1.5em}} figure{{display:inline-block;margin:6px;width:230px;vertical-align:top}}
figure img{{width:230px}} figure.bad figcaption{{color:#b00;font-weight:bold}} figcaption{{font-size:12px;word-break:break-all}}
th{{text-align:left;padding-right:1em}}</style></head><body>
<h1>adlib score: {len(rows)} images, {sum(r.anomalous for r in rows)} anomalous</h1>
<table>{info}<tr><th>time per image</th><td>{run.seconds_per_image * 1000:.0f} ms ({run.backend})</td></tr></table>
{f"<h2>Skipped (unreadable)</h2><ul>{skipped}</ul>" if skipped else ""}
<p>Sorted by score, highest first. Heatmap: the anomaly map over the image (the pixel threshold is the middle
of the colour scale); white outline: the predicted region at the honest pixel threshold.</p>
{cards}</body></html>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def score_folder(model: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
                 backend: str = "torch", skip_bad: bool = False, device: str = "cpu",
                 progress: bool = True, heatmaps: bool = True, include_masks: bool = False) -> ScoreRun:
    """Score every image under ``images`` with the bundle ``model``; write the outputs to ``out``.

    Raises:
        BundleError: unusable bundle. DataError: an unreadable image (unless ``skip_bad``).
        FileNotFoundError: no images folder / no images.
    """
    from tqdm.auto import tqdm

    from adlib.data.types import DataError
    from adlib.scoring import load_scorer
    from adlib.scoring.base import load_image, relative

    files = find_images(images, include_masks)
    scorer = load_scorer(model, device=device)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if backend == "onnx":
        from adlib.export import use_onnx

        use_onnx(scorer, out_dir / "model.onnx")
    elif backend != "torch":
        raise ValueError(f"adlib score: --backend {backend!r}; use 'torch' or 'onnx'.")
    rel = [relative(f, images) for f in files]
    names = _unique_names(rel)
    results: list[ImageResult] = []
    skipped: list[tuple[str, str]] = []
    image_t, pixel_t = scorer.image_threshold, scorer.pixel_threshold
    start = time.perf_counter()
    for f, r, name in tqdm(list(zip(files, rel, names, strict=True)), desc="scoring", unit="img",
                           disable=not progress):
        try:
            image = load_image(f, scorer.bundle.preprocess)
        except DataError as exc:
            if not skip_bad:
                raise DataError(f"{exc} Fix: remove or replace the file, or pass --skip-bad to list and skip "
                                "unreadable images.") from exc
            skipped.append((r, str(exc)))
            continue
        one = scorer.score_one(image, r)
        res = ImageResult(r, float(one.score), bool(one.score > image_t), patches=one.patches)
        if heatmaps:
            res.heatmap = f"heatmaps/{name}"
            write_heatmap(out_dir / res.heatmap, image.permute(1, 2, 0).numpy(), one.map, pixel_t)
        results.append(res)
    run = ScoreRun(results, skipped, time.perf_counter() - start, scorer.backend, out_dir)
    _write_csv(out_dir / "scores.csv", ["path", "score", "anomalous"],
               [(x.path, repr(x.score), int(x.anomalous)) for x in results])
    if scorer.unit == "patch":
        _write_csv(out_dir / "patches.csv", ["path", "score"],
                   [(p, repr(s)) for x in results for p, s in x.patches])
    b = scorer.bundle
    write_index(out_dir, run, {
        "model": f"{b.method} ({b.family}) from {b.meta.get('notebook', '?')}, {b.meta.get('dataset', '?')}/"
                 f"{b.meta.get('category', '?')}, run {b.meta.get('run_id', '?')}",
        "image threshold": f"{image_t:.5g} ({b.thresholds['image']['source']})",
        "pixel threshold": "none" if pixel_t is None else f"{pixel_t:.5g} ({b.thresholds['pixel']['source']})",
        "adlib": b.meta.get("adlib_version", "?")})
    return run


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``adlib score`` options."""
    p.add_argument("--model", required=True, help="a model bundle (<results name>.model.pt) from a notebook")
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (scores.csv, heatmaps/, index.html)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="run the network eagerly or "
                   "as its ONNX export (onnxruntime)")
    p.add_argument("--skip-bad", action="store_true", help="list and skip unreadable images instead of stopping")
    p.add_argument("--device", default="cpu", help="cpu or cuda (torch backend)")
    p.add_argument("--include-masks", action="store_true", help="also score files that look like ground-truth "
                   "masks (in ground_truth/, Label/, gt/, GroundTruth/; *_mask, *_label), skipped by default")
    p.add_argument("--no-heatmaps", action="store_true", help="scores only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> int:
    """Entry of ``adlib score``; exit status 0, or 1 with the error on stderr."""
    from adlib.bundle import BundleError
    from adlib.data.types import DataError

    try:
        run = score_folder(args.model, args.images, args.out, backend=args.backend, skip_bad=args.skip_bad,
                           device=args.device, progress=not args.no_progress, heatmaps=not args.no_heatmaps,
                           include_masks=args.include_masks)
    except (BundleError, DataError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"adlib score: {exc}", file=sys.stderr)
        return 1
    n_bad = sum(r.anomalous for r in run.results)
    print(f"{len(run.results)} images scored ({n_bad} anomalous), {run.seconds_per_image * 1000:.0f} ms per image "
          f"({run.backend}); {len(run.skipped)} skipped -> {run.out / 'index.html'}")
    for path, why in run.skipped:
        print(f"  skipped {path}: {why}", file=sys.stderr)
    return 0


def row_key(path: str | os.PathLike) -> str:
    """A comparable key of a scores row: the resolved file path, a patch suffix (``#y..``) kept."""
    file, _, patch = str(path).partition("#")
    return str(Path(file).resolve()) + (f"#{patch}" if patch else "")


def reproduce(results_json: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike, *,
              backend: str = "torch", progress: bool = False) -> tuple[ScoreRun, Any]:
    """Score ``images`` with the bundle a results JSON names, and line the CLI's scores up with the
    notebook's scores CSV (a notebook's closing check that the bundle reproduces it).

    Returns:
        The run and a DataFrame ``path, notebook, cli, difference`` (one row per notebook row found).
    """
    import json

    import pandas as pd

    results_json = Path(results_json)
    rec = json.loads(results_json.read_text(encoding="utf-8"))
    if not rec.get("model_bundle"):
        raise FileNotFoundError(f"{results_json}: records no model_bundle (written before bundles existed); "
                                "re-run the notebook.")
    run = score_folder(results_json.parent / rec["model_bundle"], images, out, backend=backend,
                       progress=progress)
    nb = pd.read_csv(results_json.with_name(results_json.name[: -len(".json")] + ".scores.csv"))
    rows = ([(p, s) for r in run.results for p, s in r.patches] if any(r.patches for r in run.results)
            else [(r.path, r.score) for r in run.results])
    cli = {row_key(Path(images) / p): s for p, s in rows}
    table = pd.DataFrame({"path": nb.path, "notebook": nb.score,
                          "cli": [cli.get(row_key(p), float("nan")) for p in nb.path]})
    table["difference"] = (table.notebook - table.cli).abs()
    return run, table


def images_folder(split: Any) -> Path:
    """The folder that holds a split's test images (what to point ``adlib score`` at)."""
    first = Path(split.test[0].path)
    if split.dataset == "mvtec":
        return Path(split.root) / split.category / "test"
    return first.parent if split.dataset == "dagm" else Path(split.root)


def notebook_demo(results_json: str | os.PathLike, split: Any, out: str | os.PathLike) -> Any:
    """A model notebook's last step: the command that scores new images with this run's bundle,
    run on the notebook's own test images; prints the time per image and the largest difference
    to the notebook's scores, returns the five highest-scoring rows of ``scores.csv``."""
    import json

    import pandas as pd

    folder = images_folder(split)
    bundle = Path(results_json).parent / json.loads(Path(results_json).read_text())["model_bundle"]
    print(f"adlib score --model {bundle} \\\n    --images {folder} --out {out}")
    run, table = reproduce(results_json, folder, out)
    print(f"{len(run.results)} images scored in {run.seconds:.1f} s ({run.seconds_per_image * 1000:.0f} ms per image, "
          f"heatmap included); {int(table.cli.notna().sum())} of this notebook's {len(table)} scores found again, "
          f"largest difference {table.difference.max():.2g}; gallery: {Path(out) / 'index.html'}")
    return pd.read_csv(Path(out) / "scores.csv").sort_values("score", ascending=False).head()
