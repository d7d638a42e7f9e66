"""Scorers of the reconstruction autoencoders: notebook 01 (conv. AE), 02 (UNet AE), 04 (AE-256).

Each ``*_bundle`` function is called by its pipeline's ``save()``; each scorer's :meth:`post` calls
the same map and score functions as the pipeline's ``evaluate()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from adlib import maps
from adlib.bundle import Bundle
from adlib.scoring.base import Scored, Scorer, bundle_from, net_entry

__all__ = ["ConvAEScorer", "AE256Scorer", "UNetScorer", "conv_ae_bundle", "ae256_bundle", "unet_bundle"]


# --------------------------------------------------------------------------- notebook 01


def conv_ae_bundle(ev: Any, trained: Any, data: Any, cfg: Mapping[str, Any], run: str) -> Bundle:
    """Bundle of a notebook-01 autoencoder (``l2`` or ``ssim`` variant) and its evaluation."""
    from adlib.pipelines import hazelnut_ae

    vdata = data.for_variant(trained.variant)
    net = net_entry("conv_ae", trained.model, latent_dim=int(trained.latent_dim),
                    image_size=int(vdata.image_size), channels=int(vdata.channels))
    return bundle_from(
        "conv-ae", ev.method, nets={"model": net},
        preprocess={"size": [vdata.image_size, vdata.image_size], "channels": vdata.channels},
        post={"variant": trained.variant, "score": cfg["score"],
              "map": "squared colour difference" if trained.variant == "l2" else "1 - SSIM",
              "smooth_sigma": hazelnut_ae.smooth_sigma(vdata.image_size)},
        image_threshold=ev.image_threshold, pixel_threshold=ev.threshold,
        notebook=hazelnut_ae.NOTEBOOK, split=data.split, run=run)


class ConvAEScorer(Scorer):
    """Notebook 01: residual (``l2``) or ``1 - SSIM`` map, smoothed; image score by ``post["score"]``."""

    def build_net(self) -> nn.Module:
        return self.net_entry("model")

    def post(self, x: torch.Tensor, raw: tuple[torch.Tensor, ...]) -> Scored:
        from adlib.pipelines.hazelnut_ae import anomaly_maps

        recon = raw[0].clamp(0, 1)  # as hazelnut_ae.reconstruct: the decoder's output is linear
        m = anomaly_maps(x.numpy(), recon.numpy(), self.bundle.post["variant"])
        return Scored(m, maps.image_scores(m, self.bundle.post["score"]))


# --------------------------------------------------------------------------- notebook 04 (AE-256)


class _Normalised(nn.Module):
    """An autoencoder trained on [-1, 1] images, seen from [0, 1] images (clamped output)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return ((self.model(x01 * 2.0 - 1.0) + 1.0) / 2.0).clamp(0, 1)


def ae256_bundle(ev: Any, trained: Any, data: Any, cfg: Mapping[str, Any], run: str) -> Bundle:
    """Bundle of notebook 04's plain autoencoder (``ae-256``)."""
    from adlib.pipelines import fanogan_vs_ae as fv

    size, channels = int(cfg["image_size"]), int(data.split.channels)
    net = net_entry("ae256", trained.model, image_size=size, channels=channels,
                    latent_dim=int(cfg["ae_latent"]), width=int(cfg["ae_width"]))
    return bundle_from("ae-256", ev.method, nets={"model": net},
                       preprocess={"size": [size, size], "channels": channels},
                       post={"map": "squared error, channel mean", "score": "mean"},
                       image_threshold=ev.image_threshold, pixel_threshold=ev.pixel_threshold,
                       notebook=fv.NOTEBOOK, split=data.split, run=run)


class AE256Scorer(Scorer):
    """Notebook 04's AE: squared-error map, image score = its mean (the MSE)."""

    def build_net(self) -> nn.Module:
        return _Normalised(self.net_entry("model"))

    def post(self, x: torch.Tensor, raw: tuple[torch.Tensor, ...]) -> Scored:
        m = maps.residual_map(x, raw[0], kind="l2")
        return Scored(m, maps.image_scores(m, "mean"))


# --------------------------------------------------------------------------- notebook 02


def unet_bundle(ev: Any, trained: Any, data: Any, cfg: Mapping[str, Any], run: str) -> Bundle:
    """Bundle of a notebook-02 UNet AE with its decision rule (DAGM images or RSDDs patches)."""
    from adlib.models.unet_ae import VARIANTS as MODEL_VARIANTS
    from adlib.pipelines import unet_dagm_rsdd as ud

    model = trained.model
    spec = MODEL_VARIANTS[trained.variant]
    net = net_entry("unet_ae", model, in_channels=int(data.channels), base_channels=int(cfg["base_channels"]),
                    skips=[int(s) for s in spec["skips"]], skip_dropout=float(spec.get("skip_dropout", 0.0)))
    size = list(data.test.shape[-2:])
    if data.unit == "patch":  # RSDDs: the grid patches of each strip (unet_dagm_rsdd.load_rsdd_patches)
        stride = cfg["rsdd_stride"]
        pre = {"size": None, "channels": 1, "unit": "patch", "patch": size, "example_size": size,
               "stride": list(stride) if stride else None, "cover": False, "name": "{path}#y{y}x{x}"}
    else:
        pre = {"size": None if cfg["image_size"] is None else size, "channels": int(data.channels),
               "unit": "image", "example_size": size}
    return bundle_from(
        "unet-ae", ev.method, nets={"model": net}, preprocess=pre,
        post={"rule": {k: v for k, v in vars(ev.rule).items()}, "rule_name": ev.rule.name(),
              "map": "squared residual, channel mean"},
        image_threshold=ev.image_threshold, pixel_threshold=ev.pixel_threshold,
        notebook=ud.NOTEBOOK, split=data.split, run=run)


class UNetScorer(Scorer):
    """Notebook 02: squared residual, then the bundle's rule (segmentation filter, score sigma,
    two-stage gate at the bundle's thresholds)."""

    batch_size = 4

    def build_net(self) -> nn.Module:
        return self.net_entry("model")

    def post(self, x: torch.Tensor, raw: tuple[torch.Tensor, ...]) -> Scored:
        from adlib.pipelines import unet_rules as rules

        r = self.bundle.post["rule"]
        residual = maps.residual_map(x, raw[0], kind="l2")
        seg = rules.seg_map(residual, int(r["seg_window"]), r.get("seg_filter", "max"))
        scores = rules.score_of(residual, float(r["score_sigma"]))
        if r.get("two_stage"):
            seg = rules.gate_maps(seg, self.pixel_threshold, scores, self.image_threshold)
        return Scored(seg, scores)
