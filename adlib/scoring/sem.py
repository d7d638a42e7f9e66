"""Scorer of notebook 03 (SEM patches): a patch autoencoder (+ its denoiser) and one of its scores.

The bundle's model scores the overlapping grid patches the notebook cut from each image
(``preprocess``: patch size, stride, ``cover``); rows are named ``<image>#y=<row>,x=<col>`` as in
the notebook's scores CSV, and the image's map is each patch's score spread over the patch,
overlaps averaged (:func:`adlib.pipelines.sem_scores.stitch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from adlib.bundle import Bundle
from adlib.scoring.base import Scored, Scorer, bundle_from, net_entry

__all__ = ["SemPatchScorer", "sem_bundle"]


class _Stages(nn.Module):
    """Patches in [0, 1] -> ``(AE(x), Den(AE(x)), feature mask)`` (no noise at test time)."""

    def __init__(self, ae: nn.Module, den: nn.Module) -> None:
        super().__init__()
        self.ae, self.den = ae, den

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.ae(x)
        out = self.den(r)
        return r, out.denoised, out.mask


def sem_bundle(ev: Any, trained: Any, data: Any, cfg: Mapping[str, Any], run: str) -> Bundle:
    """Bundle of one notebook-03 method (``<kind>-<score>``): its autoencoder, its denoiser unless
    the score is ``rec``, the patch grid and the score."""
    from adlib.models.patch_ae import SSIM_KIND
    from adlib.pipelines import sem_patches as sp

    p = int(data.patch_size)
    nets = {"ae": net_entry("patch_ae", trained.ae.model, kind=trained.variant, channels=1, patch_size=p,
                            base=int(cfg["base"]), latent_dim=int(cfg["latent_dim"]))}
    if ev.score != "rec":
        den = trained.denoiser.model
        nets["den"] = net_entry("denoiser", den, channels=1, depth=int(trained.depth), width=int(cfg["den_width"]))
    ssim = trained.variant == SSIM_KIND
    stride = int(cfg["stride"])
    return bundle_from(
        "sem-patch", ev.method, nets=nets,
        preprocess={"size": None, "channels": 1, "unit": "patch", "patch": [p, p], "example_size": [p, p],
                    "stride": [stride, stride], "cover": True, "name": "{path}#y={y},x={x}"},
        post={"kind": trained.variant, "score": ev.score, "ssim": ssim,
              "ssim_window": int(cfg["ssim_window"]) if ssim else None,
              "definition": "mean 1 - SSIM per patch" if ssim else "mean squared difference per patch"},
        image_threshold=ev.image_threshold, pixel_threshold=ev.pixel_threshold,
        notebook=sp.NOTEBOOK, split=data.split, run=run)


class SemPatchScorer(Scorer):
    """``rec`` / ``smooth`` / ``feature`` (mean squared difference) or the SSIM AE's mean 1 - SSIM."""

    batch_size = 256

    def build_net(self) -> nn.Module:
        ae = self.net_entry("ae")
        return _Stages(ae, self.net_entry("den")) if "den" in self.bundle.nets else ae

    def post(self, x: torch.Tensor, raw: tuple[torch.Tensor, ...]) -> Scored:
        from adlib import maps

        p = self.bundle.post
        if p["ssim"]:
            scores = (1.0 - maps.ssim_map(x, raw[0], int(p["ssim_window"]))).flatten(1).mean(1).double().numpy()
        else:
            target = {"rec": 0, "smooth": 1, "feature": 2}[p["score"]]
            a, b = x.numpy().astype(np.float32), raw[target].numpy().astype(np.float32)
            scores = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1).astype(np.float64)
        spread = np.broadcast_to(scores[:, None, None], (len(scores), *x.shape[-2:])).astype(np.float32)
        return Scored(spread, scores)
