"""Scoring of notebook 03 (SEM patches): the pipeline stages, the per-patch scores, the stitched
full-image maps and the evaluation of one (model, score) method. Used by
:mod:`adlib.pipelines.sem_patches`, which re-exports these names.

Scores (kept the same everywhere in the notebook):

* the seed's three, a per-pixel MEAN of squared differences over the patch (the seed's
  ``||.||^2`` divided by the number of pixels: the same ranking, a readable scale):
  ``rec = mean (x - AE(x))^2``, ``smooth = mean (x - x_den)^2``, ``feature = mean (x - f_mask)^2``,
  where ``(x_den, f_mask) = Den(AE(x))`` (no noise at test time);
* the SSIM autoencoder's ``rec`` (beyond the seed): the patch mean of ``1 - SSIM(x, AE(x))``
  (:func:`adlib.maps.ssim_map`, Gaussian window of ``ssim_window`` pixels), as in Bergmann et al. 2019.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adlib import experiment, maps, metrics
from adlib.data.types import GOOD
from adlib.models.denoiser import FeatureDenoiser

if TYPE_CHECKING:
    from adlib.pipelines.sem_patches import Data, Trained

SCORES: tuple[str, ...] = ("rec", "smooth", "feature")
"""The seed's three scores of an autoencoder + denoiser."""


def to_tensor(patches: np.ndarray) -> torch.Tensor:
    """uint8 (N, P, P[, C]) patches -> float (N, C, P, P) tensor in [0, 1]."""
    arr = patches[..., None] if patches.ndim == 3 else patches
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)

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
    return [maps.stitch_patches(patch_scores[src == i], coords[src == i], shape, data.patch_size)
            for i, shape in enumerate(data.image_shapes)]


@dataclass
class PatchEvaluation(experiment.Evaluation):
    """:class:`adlib.experiment.Evaluation` of one (model, score) method: ``scores``, ``labels``
    and the image thresholds are per test PATCH; ``maps``/``masks`` the stitched full-image maps
    (one row of all pixels when image sizes differ: ``aupro`` is then None), one per image in
    ``image_maps``."""

    kind: str = ""
    score: str = ""
    image_maps: list[np.ndarray] = field(default_factory=list)

    def patch_prf(self, oracle: bool = False) -> dict[str, float | None]:
        """The seed's patch precision / recall / F1 at the validation (or ORACLE) threshold."""
        t = self.oracle_image if oracle else self.image_threshold
        if t is None:
            return dict.fromkeys(("precision", "recall", "f1"))
        prf = metrics.image_prf(self.scores, self.labels, t.value)
        return {"precision": prf.precision, "recall": prf.recall, "f1": prf.f1}

    def predicted_patches(self) -> np.ndarray:
        """0/1 patch prediction at the validation threshold (``score > threshold``)."""
        return self.image_threshold.predict(self.scores).astype(int)


def evaluate_method(data: Data, kind: str, score: str, test_scores: np.ndarray,
                     val_scores: np.ndarray, q: float, masks: list[np.ndarray]) -> PatchEvaluation:
    """Patch metrics (validation threshold + labelled oracle) and pixel metrics of stitched maps;
    95 % intervals over test patches (image keys) and test images (pixel keys; equal sizes only)."""
    method = f"{kind}-{score}"  # the results' method name, e.g. "dae-feature"
    patch = experiment.evaluate(method, scores=test_scores, labels=data.labels,
                                defects=data.patch_defects(), paths=data.patch_paths(),
                                val_scores=val_scores, image_q=q)
    image_maps = stitch(data, test_scores)
    same_size = len({m.shape for m in image_maps}) == 1
    if same_size:
        stacked, gt = np.stack(image_maps), np.stack(masks)
        defects = [s.defect if g.any() else GOOD for s, g in zip(data.split.test, masks, strict=True)]
        paths = [data._relative(s.path) for s in data.split.test]
    else:  # images of different sizes: pixel metrics over the concatenated pixels
        stacked = np.concatenate([m.ravel() for m in image_maps])[None, None]
        gt = np.concatenate([g.ravel() for g in masks])[None, None]
        defects, paths = [data.split.test[0].defect], ["all test images"]
    pixel = experiment.evaluate(  # its image-level values and intervals are replaced by the patches'
        method, scores=stacked.reshape(len(stacked), -1).max(axis=1),
        labels=gt.reshape(len(gt), -1).any(axis=1).astype(int), defects=defects, paths=paths,
        val_scores=val_scores, image_q=q, maps=stacked, masks=gt,
        pixel_thresholds={"patch_quantile": patch.image_threshold},
        n_boot=patch.bootstrap["n"] if same_size else 0)  # one row of all pixels: no interval
    merged = {**pixel.metrics, **{k: patch.metrics[k] for k in ("image_auroc", "image_aupr")}}
    merged["aupro"] = merged["aupro"] if same_size else None  # no regions on concatenated pixels
    pixel_ci = {k: v for k, v in pixel.ci95.items() if not k.startswith("image_")}
    base = {f.name: getattr(patch, f.name) for f in dataclasses.fields(experiment.Evaluation)}
    base.update(metrics=merged, maps=pixel.maps, masks=pixel.masks, ci95={**patch.ci95, **pixel_ci},
                bootstrap={**pixel.bootstrap, **patch.bootstrap, "unit": "test patch"}
                | ({"pixel_unit": "test image"} if pixel_ci else {}),
                pixel_threshold=pixel.pixel_threshold, pixel_thresholds=pixel.pixel_thresholds,
                oracle_pixel=pixel.oracle_pixel, oracle_per_defect=pixel.oracle_per_defect)
    return PatchEvaluation(**base, kind=kind, score=score, image_maps=image_maps)


@torch.no_grad()
def ssim_scores(ae: torch.nn.Module, patches: np.ndarray, window: int,
                device: torch.device | str = "cpu", batch_size: int = 512) -> np.ndarray:
    """Per-patch mean of ``1 - SSIM(x, AE(x))`` of uint8 patches (the SSIM autoencoder's score)."""
    ae.eval()
    x_all = to_tensor(patches)
    out = []
    for i in range(0, len(x_all), batch_size):
        x = x_all[i:i + batch_size].to(device)
        out.append((1.0 - maps.ssim_map(x, ae(x), window)).flatten(1).mean(1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate(trained: Trained, data: Data, cfg: dict[str, Any], *,
             device: torch.device | str = "cpu", progress: bool = False) -> list[PatchEvaluation]:
    """The methods of one trained model: ``rec``, ``smooth`` and ``feature`` of a seed autoencoder
    + denoiser, or the single ``rec`` (mean 1 - SSIM) of the SSIM autoencoder. Each threshold is
    the ``threshold_q`` quantile of that score on the defect-free validation patches."""
    q, masks = float(cfg["threshold_q"]), data.test_masks()
    ae = trained.ae.model.to(device)
    if not trained.denoisers:  # the SSIM autoencoder: one score
        window = int(cfg["ssim_window"])
        test = ssim_scores(ae, data.patches.test, window, device)
        val = ssim_scores(ae, data.val, window, device)
        return [evaluate_method(data, trained.variant, "rec", test, val, q, masks)]
    den = trained.denoiser.model.to(device)
    test_all = run_stages(ae, den, data.patches.test, device, progress=progress).scores()
    val_all = run_stages(ae, den, data.val, device).scores()
    return [evaluate_method(data, trained.variant, score, test_all[score], val_all[score], q, masks)
            for score in SCORES]
