"""Scorers of notebook 06: PatchCore (memory bank) and PaDiM (one Gaussian per position).

The bundle holds the bank (or the Gaussians), the channel subset and the backbone's name and
layers; the backbone's ImageNet weights are not copied into it: they come from the hash-checked
weights file (:mod:`adlib.features.weights`), as in the notebook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from adlib.bundle import Bundle
from adlib.scoring.base import Scored, Scorer, bundle_from

__all__ = ["PatchCoreScorer", "PadimScorer", "feature_bundle"]


class _FeatureNet(nn.Module):
    """Images in [0, 1] -> per-position scores ``(N, h, w)`` and image scores ``(N,)``."""

    def __init__(self, extractor: nn.Module, model: Any, neighbourhood: int, channels: list[int] | None) -> None:
        super().__init__()
        self.extractor, self.model = extractor, model
        self.neighbourhood, self.channels = int(neighbourhood), channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from adlib.features.embed import patch_embeddings

        emb = patch_embeddings(self.extractor(x), neighbourhood=self.neighbourhood)
        if self.channels is not None:
            emb = emb[:, self.channels]
        return self.model.patch_scores(emb.float())


def feature_bundle(ev: Any, fitted: Any, data: Any, cfg: Mapping[str, Any], run: str) -> Bundle:
    """Bundle of a fitted PatchCore or PaDiM (``fitted``: :class:`~adlib.pipelines.feature_embed.Fitted`)."""
    from adlib.pipelines import feature_embed as fe

    sp, model = fitted.spec, fitted.model
    state = fe._state(model)
    model_kw = ({"coreset_ratio": cfg["coreset_ratio"], "bank_limit": cfg["bank_limit"], "proj_dim": cfg["proj_dim"],
                 "reweight": cfg["reweight"], "neighbours": cfg["neighbours"]}
                if fitted.variant == "patchcore" else {"eps": cfg["padim_eps"]})
    extractor = sp.extractor
    score = "maximum of the map"
    if fitted.variant == "patchcore":
        score = "largest patch distance" + (" (reweighted)" if cfg.get("reweight") else "")
    return bundle_from(
        fitted.variant, ev.method, nets={"model": {"state": state, "kwargs": model_kw}},
        preprocess=({"size": None, "channels": 1, "unit": "patch", "patch": [data.size, data.size],
                     "example_size": [data.size, data.size], "stride": None, "cover": False,
                     "name": "{path}#y{y}x{x}"} if data.split.dataset == "rsdd" else  # RSDDs: grid patches
                    {"size": [data.size, data.size], "channels": int(data.test.shape[1]), "unit": "image"}),
        post={"backbone": extractor.backbone, "layers": list(extractor.layers), "pad": int(extractor.pad),
              "neighbourhood": int(sp.neighbourhood), "channels": sp.channels, "map_sigma": float(cfg["map_sigma"]),
              "batch_size": int(cfg["batch_size"]),
              "score": score},
        image_threshold=ev.image_threshold, pixel_threshold=ev.pixel_threshold,
        notebook=fe.NOTEBOOK, split=data.split, run=run)


class _FeatureScorer(Scorer):
    variant = ""

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        return int(self.bundle.post.get("batch_size", 8))

    def _model(self) -> Any:
        from adlib.pipelines import feature_embed as fe

        state, kw = self.bundle.nets["model"]["state"], self.bundle.nets["model"]["kwargs"]
        if self.variant == "patchcore":
            from adlib.models.patchcore import PatchCore

            model: Any = PatchCore(kw["coreset_ratio"], kw["bank_limit"], kw["proj_dim"], kw["reweight"],
                                   kw["neighbours"], 0)
        else:
            from adlib.models.padim import Padim

            model = Padim(kw["eps"])
        fe._restore(model, state)
        return model

    def build_net(self) -> nn.Module:
        from adlib.pipelines import feature_embed as fe

        p = self.bundle.post
        return _FeatureNet(fe.extractor(p["backbone"], p["layers"], p["pad"]), self._model(),
                           p["neighbourhood"], p["channels"])

    def post(self, x: torch.Tensor, raw: tuple[torch.Tensor, ...]) -> Scored:
        from adlib.features.embed import to_image_maps

        patch, image = raw
        m = to_image_maps(patch, tuple(x.shape[-2:]), float(self.bundle.post["map_sigma"]))
        scores = image.double().numpy() if self.variant == "patchcore" else m.reshape(len(m), -1).max(1)
        return Scored(m, scores)


class PatchCoreScorer(_FeatureScorer):
    """PatchCore: nearest-bank-patch distances; image score = the largest (optionally reweighted)."""

    variant = "patchcore"


class PadimScorer(_FeatureScorer):
    """PaDiM: Mahalanobis distance per position; image score = maximum of the smoothed map."""

    variant = "padim"
