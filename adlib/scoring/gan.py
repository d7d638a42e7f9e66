"""Scorer of notebook 04's f-AnoGAN: ``A(x) = image residual + kappa * critic-feature residual``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from adlib import maps
from adlib.bundle import Bundle
from adlib.scoring.base import Scored, Scorer, bundle_from, net_entry

__all__ = ["FAnoGANScorer", "fanogan_bundle", "notebook04_bundle"]


class _FAnoGAN(nn.Module):
    """``x01 -> (G(E(x)) in [0, 1], A(x))`` on [-1, 1] inputs as in the paper (eval mode)."""

    def __init__(self, encoder: nn.Module, generator: nn.Module, critic: nn.Module, kappa: float) -> None:
        super().__init__()
        self.encoder, self.generator, self.critic, self.kappa = encoder, generator, critic, float(kappa)

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from adlib.models.fanogan import _residuals

        x = x01 * 2.0 - 1.0
        img_res, feat_res, recon = _residuals(self.encoder, self.generator, self.critic, x)
        return ((recon + 1.0) / 2.0).clamp(0, 1), img_res + self.kappa * feat_res


def fanogan_bundle(ev: Any, trained: Any, data: Any, cfg: Mapping[str, Any], run: str) -> Bundle:
    """Bundle of notebook 04's f-AnoGAN (encoder, generator, critic and ``kappa``)."""
    from adlib.pipelines import fanogan_vs_ae as fv

    size, channels = int(cfg["gan_image_size"]), int(data.split.channels)
    zdim, width = int(cfg["latent_dim"]), int(cfg["gan_width"])
    nets = {"encoder": net_entry("fanogan_encoder", trained.encoder, latent_dim=zdim, channels=channels,
                                 image_size=size, width=width),
            "generator": net_entry("fanogan_generator", trained.generator, latent_dim=zdim, channels=channels,
                                   image_size=size, width=width),
            "critic": net_entry("fanogan_critic", trained.critic, channels=channels, image_size=size, width=width)}
    return bundle_from("f-anogan", ev.method, nets=nets, preprocess={"size": [size, size], "channels": channels},
                       post={"kappa": float(cfg["kappa"]), "map": "|x - G(E(x))|, channel mean",
                             "score": "A(x) = image residual + kappa * feature residual"},
                       image_threshold=ev.image_threshold, pixel_threshold=ev.pixel_threshold,
                       notebook=fv.NOTEBOOK, split=data.split, run=run)


def notebook04_bundle(ev: Any, trained: Any, data: Any, cfg: Mapping[str, Any], run: str) -> Bundle:
    """The bundle of either notebook-04 model (``ae-256`` or ``f-anogan``)."""
    from adlib.pipelines.fanogan_vs_ae import AE_METHOD, _variant
    from adlib.scoring.recon import ae256_bundle

    make = ae256_bundle if _variant(trained.variant) == AE_METHOD else fanogan_bundle
    return make(ev, trained, data, cfg, run)


class FAnoGANScorer(Scorer):
    """Map ``|x - G(E(x))|`` (channel mean, [0, 1] units), score ``A(x)``."""

    def build_net(self) -> nn.Module:
        return _FAnoGAN(self.net_entry("encoder"), self.net_entry("generator"), self.net_entry("critic"),
                        self.bundle.post["kappa"])

    def post(self, x: torch.Tensor, raw: tuple[torch.Tensor, ...]) -> Scored:
        recon, score = raw
        return Scored(maps.residual_map(x, recon, kind="l1"), score.double().numpy())
