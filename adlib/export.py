"""ONNX export of a bundle's network, checked against the eager network before it is kept.

The exported graph is the scorer's ``net`` (:mod:`adlib.scoring`): image tensor in, raw outputs
out (a reconstruction; patch distances and image scores for PatchCore / PaDiM, the memory bank
or the Gaussians stored in the graph as constants). Maps and scores are then made by the same
numpy ``post`` step for both backends, so "eager and exported agree" is checked on the final maps
and scores, on fixed images, before the file is written (:data:`TOLERANCE`).

The graph takes one image at a time (batch 1, the working size): PatchCore's nearest-neighbour
search runs in chunks whose number is fixed when the graph is traced. :class:`OnnxRunner` feeds a
batch image by image.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adlib.bundle import Bundle
from adlib.scoring import load_scorer
from adlib.scoring.base import Scorer

__all__ = ["TOLERANCE", "OnnxRunner", "export_onnx", "use_onnx", "parity"]

TOLERANCE = 1e-4
"""Largest difference allowed between eager and exported maps and scores (relative to the value
where it exceeds 1: PaDiM's Mahalanobis scores are in the hundreds)."""
OPSET = 17


def _require_onnx() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise ImportError("ONNX export needs onnx and onnxruntime. Fix: pip install onnx onnxruntime "
                          "(both are dependencies of adlib: re-run `make install`).") from exc
    return ort


class OnnxRunner:
    """Runs an exported graph with ONNX Runtime (CPU): a batch in, the raw outputs as tensors."""

    def __init__(self, path: str | os.PathLike) -> None:
        ort = _require_onnx()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [self.session.run(None, {self.input: xi[None].contiguous().numpy()}) for xi in x]
        return tuple(torch.from_numpy(np.concatenate([o[k] for o in outs])) for k in range(len(outs[0])))


def _trace(scorer: Scorer, x: torch.Tensor, path: Path) -> None:
    """Write the ONNX graph of ``scorer.net`` for inputs shaped like ``x`` (legacy tracer, then
    the dynamo exporter if the tracer cannot express the network)."""
    net = scorer.net.cpu().eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["images"], opset_version=OPSET)
    except Exception:  # noqa: BLE001 - the second exporter reports its own error
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["images"], opset_version=18)


def parity(scorer: Scorer, runner: OnnxRunner, images: torch.Tensor) -> dict[str, float]:
    """Largest differences between eager and exported maps and scores on uint8 ``images``."""
    eager = scorer.score(images)
    old = (scorer.run, scorer.backend)
    scorer.use_runner(runner, "onnx")
    try:
        exported = scorer.score(images)
    finally:
        scorer.use_runner(*old)
    dm, ds = np.abs(eager.maps - exported.maps), np.abs(eager.scores - exported.scores)
    return {"max_abs_diff": float(max(dm.max(), ds.max())),
            "map_diff_relative": float((dm / np.maximum(np.abs(eager.maps), 1.0)).max()),
            "score_diff_relative": float((ds / np.maximum(np.abs(eager.scores), 1.0)).max())}


def export_onnx(bundle: Bundle | str | os.PathLike | Scorer, out: str | os.PathLike, *,
                check_images: torch.Tensor | None = None) -> tuple[Path, dict[str, float]]:
    """Export the bundle's network to ``out`` (ONNX) after checking parity on fixed images.

    Args:
        bundle: a bundle, its path, or a scorer built from one.
        out: the ``.onnx`` file (written atomically, only when the check passes).
        check_images: uint8 ``(N, C, H, W)`` images for the check (default: 3 fixed random images
            at the working size).

    Raises:
        RuntimeError: eager and exported maps or scores differ by more than :data:`TOLERANCE`.
    """
    scorer = bundle if isinstance(bundle, Scorer) else load_scorer(bundle)
    images = scorer.example(3) if check_images is None else check_images
    import tempfile

    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as work:  # an exporter may write weights beside
            _trace(scorer, scorer.inputs(images[:1]), Path(work) / "net.onnx")
            onnx.save_model(onnx.load(str(Path(work) / "net.onnx")), str(tmp))  # one self-contained file
        report = parity(scorer, OnnxRunner(tmp), images)
        if max(report["map_diff_relative"], report["score_diff_relative"]) > TOLERANCE:
            raise RuntimeError(f"{out}: the exported {scorer.bundle.family} network differs from the eager one "
                               f"(maps {report['map_diff_relative']:.2e}, scores {report['score_diff_relative']:.2e} > "
                               f"{TOLERANCE:g}); not written. Use --backend torch.")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, report


def use_onnx(scorer: Scorer, path: str | os.PathLike) -> dict[str, float]:
    """Export ``scorer``'s network to ``path`` (parity-checked) and score with ONNX Runtime from now on."""
    path, report = export_onnx(scorer, path)
    scorer.use_runner(OnnxRunner(path), "onnx")
    return report
