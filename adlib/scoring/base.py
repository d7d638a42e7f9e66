"""The scorer base class, image loading as the notebooks do it, and network builders."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adlib.bundle import Bundle, BundleError

__all__ = ["Scored", "One", "Scorer", "load_image", "build_net", "net_entry", "BUILDERS"]


def _conv_ae(**kw: Any) -> nn.Module:
    from adlib.models.conv_ae import ConvAutoencoder

    return ConvAutoencoder(**kw)


def _ae256(**kw: Any) -> nn.Module:
    from adlib.models.ae256 import ConvAutoencoder

    return ConvAutoencoder(**kw)


def _unet(**kw: Any) -> nn.Module:
    from adlib.models.unet_ae import UNetAE

    return UNetAE(**kw)


def _fanogan(part: str) -> Callable[..., nn.Module]:
    def build(**kw: Any) -> nn.Module:
        from adlib.models import fanogan

        return {"generator": fanogan.Generator, "critic": fanogan.Critic, "encoder": fanogan.Encoder}[part](**kw)
    return build


def _patch_ae(kind: str, **kw: Any) -> nn.Module:
    from adlib.models.patch_ae import build_patch_model

    return build_patch_model(kind, **kw)


def _denoiser(**kw: Any) -> nn.Module:
    from adlib.models.denoiser import FeatureDenoiser

    return FeatureDenoiser(**kw)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "conv_ae": _conv_ae, "ae256": _ae256, "unet_ae": _unet, "fanogan_generator": _fanogan("generator"),
    "fanogan_critic": _fanogan("critic"), "fanogan_encoder": _fanogan("encoder"), "patch_ae": _patch_ae,
    "denoiser": _denoiser,
}
"""Builder name (stored in a bundle) -> the function that builds the empty network."""


def net_entry(builder: str, model: nn.Module, **kwargs: Any) -> dict[str, Any]:
    """A bundle's ``nets`` entry: builder name, constructor arguments and the weights."""
    if builder not in BUILDERS:
        raise BundleError(f"unknown network builder {builder!r}; known: {', '.join(BUILDERS)}")
    return {"builder": builder, "kwargs": dict(kwargs),
            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def build_net(entry: Mapping[str, Any], where: str = "bundle") -> nn.Module:
    """Rebuild a network from its bundle entry (weights loaded strictly, eval mode)."""
    builder = BUILDERS.get(entry.get("builder", ""))
    if builder is None:
        raise BundleError(f"{where}: unknown network builder {entry.get('builder')!r}.")
    net = builder(**entry["kwargs"])
    try:
        net.load_state_dict(entry["state"], strict=True)
    except RuntimeError as exc:
        raise BundleError(f"{where}: the stored weights do not fit the network ({exc}).") from exc
    return net.eval()


def load_image(path: str | os.PathLike, preprocess: Mapping[str, Any]) -> torch.Tensor:
    """An image file as the notebook saw it: ``(C, H, W)`` uint8 at the working size.

    Decoding, channel conversion and resizing are the ones of
    :class:`adlib.data.torchdata.ImageDataset` (``preprocess``: ``channels``, ``size`` as
    ``[H, W]`` or None for the stored size).

    Raises:
        DataError: unreadable or corrupt image (names the file).
    """
    from adlib.data.augment import resize_image
    from adlib.data.io import convert_channels, read_image

    arr = convert_channels(read_image(path), preprocess.get("channels"), path)
    size = preprocess.get("size")
    image = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    return resize_image(image, tuple(int(v) for v in size) if size else None).contiguous()


@dataclass
class Scored:
    """Maps ``(N, H, W)`` float32 and image scores ``(N,)`` float64 of a batch."""

    maps: np.ndarray
    scores: np.ndarray


@dataclass
class One:
    """One image's map, score and (patch scorers) ``[(<name>#y=<row>,x=<col>, score), ...]``."""

    map: np.ndarray
    score: float
    patches: list[tuple[str, float]]


Runner = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


class Scorer:
    """Base class: ``net`` (exportable) + ``post`` (numpy), see :mod:`adlib.scoring`.

    Subclasses implement :meth:`build_net` and :meth:`post`; :meth:`inputs` converts uint8
    images to the network's input (default: float in [0, 1]).
    """

    batch_size = 8

    def __init__(self, bundle: Bundle, *, device: str = "cpu") -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.net = self.build_net().eval().to(self.device)
        self.run: Runner = self._eager
        self.backend = "torch"

    # -- to implement
    def build_net(self) -> nn.Module:
        """The network from image tensors to raw outputs."""
        raise NotImplementedError

    def post(self, x: torch.Tensor, raw: tuple[torch.Tensor, ...]) -> Scored:
        """Raw network outputs -> maps and scores (numpy, shared by every backend)."""
        raise NotImplementedError

    # -- shared
    def net_entry(self, name: str) -> nn.Module:
        """Rebuild the bundle's network ``name``."""
        if name not in self.bundle.nets:
            raise BundleError(f"{self.bundle.path or 'bundle'}: no network {name!r} (has {list(self.bundle.nets)}).")
        return build_net(self.bundle.nets[name], f"{self.bundle.path or 'bundle'} network {name!r}")

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> the network's input (float in [0, 1])."""
        return images.float().div_(255.0)

    def example(self, n: int = 1) -> torch.Tensor:
        """A fixed input batch at the working size (for export and parity checks)."""
        size = self.bundle.preprocess.get("size") or self.bundle.preprocess.get("example_size")
        c = int(self.bundle.preprocess.get("channels") or 1)
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, c, *size), generator=g, dtype=torch.uint8)

    @torch.no_grad()
    def _eager(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x.to(self.device))
        return tuple(o.cpu() for o in (out if isinstance(out, (tuple, list)) else (out,)))

    def use_runner(self, run: Runner, backend: str) -> None:
        """Run the network with ``run`` instead (e.g. an ONNX Runtime session)."""
        self.run, self.backend = run, backend

    def score(self, images: torch.Tensor) -> Scored:
        """Maps and scores of uint8 images ``(N, C, H, W)`` (batched by :attr:`batch_size`)."""
        parts = []
        for batch in torch.split(images, self.batch_size):
            x = self.inputs(batch)
            parts.append(self.post(x, self.run(x)))
        if not parts:
            raise BundleError("no images to score")
        return Scored(np.concatenate([p.maps for p in parts]).astype(np.float32),
                      np.concatenate([p.scores for p in parts]).astype(np.float64))

    @property
    def unit(self) -> str:  # type: ignore[override]
        """``"image"``, or ``"patch"`` when the bundle's model scores grid patches (RSDDs, SEM)."""
        return str(self.bundle.preprocess.get("unit") or "image")

    def score_one(self, image: torch.Tensor, name: str = "") -> One:
        """Map ``(H, W)``, score and (patch models) per-patch rows of one uint8 image ``(C, H, W)``.

        A patch model scores the grid patches its notebook cut (``preprocess``: ``patch``,
        ``stride``, ``cover``); the image's map is the patches' maps put back (overlaps averaged)
        and its score the largest patch score.
        """
        if self.unit != "patch":
            s = self.score(image[None])
            return One(s.maps[0], float(s.scores[0]), [])
        from adlib.data.patches import grid_patches
        from adlib.maps import stitch_patches

        pre = self.bundle.preprocess
        stride = pre.get("stride")
        try:
            patches, coords = grid_patches(image.permute(1, 2, 0).numpy(), tuple(pre["patch"]),
                                           tuple(stride) if stride else None, cover=bool(pre.get("cover", False)))
        except ValueError as exc:
            from adlib.data.types import DataError

            raise DataError(f"{name}: {exc} (the model scores {tuple(pre['patch'])} px patches).") from exc
        arr = patches[..., None] if patches.ndim == 3 else patches
        s = self.score(torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2))
        full = stitch_patches(s.maps, coords, tuple(image.shape[-2:]), tuple(pre["patch"]))
        fmt = str(pre.get("name", "{path}#y{y}x{x}"))
        rows = [(fmt.format(path=name, y=int(y), x=int(x)), float(v)) for (y, x), v in zip(coords, s.scores, strict=True)]
        return One(full, float(s.scores.max()), rows)

    @property
    def image_threshold(self) -> float:
        """The bundle's honest image threshold."""
        return self.bundle.image_threshold

    @property
    def pixel_threshold(self) -> float | None:
        """The bundle's honest pixel threshold (None: none was computed)."""
        return self.bundle.pixel_threshold


def bundle_from(family: str, method: str, *, nets: Mapping[str, Any], preprocess: Mapping[str, Any],
                post: Mapping[str, Any], image_threshold: Any, pixel_threshold: Any, notebook: str,
                split: Any, run: str) -> Bundle:
    """A :class:`~adlib.bundle.Bundle` from a family's parts (thresholds as ``Threshold`` objects);
    its meta names the notebook, the split's dataset and category, and the run."""
    from adlib.bundle import threshold_dict

    return Bundle(family=family, method=method, nets=dict(nets), preprocess=dict(preprocess), post=dict(post),
                  thresholds={"image": threshold_dict(image_threshold), "pixel": threshold_dict(pixel_threshold)},
                  meta={"notebook": notebook, "dataset": split.dataset, "category": split.category, "run_id": run})


def relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` when inside it (posix), else as given."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)
