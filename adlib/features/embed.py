"""From backbone feature maps to one embedding per image position ("patch"), and back to a map.

PatchCore (Roth et al. 2022) describes each position by its features from two intermediate
layers, each first averaged over its 3x3 neighbourhood ("locally aware" features: a patch sees a
little context), the deeper layer upsampled to the shallower layer's grid, both concatenated.
PaDiM (Defard et al. 2021) concatenates three layers the same way, without the averaging.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adlib.maps import gaussian_smooth

__all__ = ["patch_embeddings", "embed_images", "to_image_maps"]


def patch_embeddings(feats: Sequence[torch.Tensor], *, neighbourhood: int = 3,
                     dim: int | None = None) -> torch.Tensor:
    """Concatenate feature maps (shallowest first) on the first map's grid: ``(N, D, h, w)``.

    Args:
        feats: per-layer maps ``(N, C_l, h_l, w_l)``.
        neighbourhood: side of the average-pooling window applied to each layer first (1: none).
        dim: reduce the concatenated channels to this many by averaging neighbouring channels
            (PatchCore's reduction for wide backbones); None keeps them all.
    """
    h, w = feats[0].shape[-2:]
    out = []
    for f in feats:
        if neighbourhood > 1:
            f = F.avg_pool2d(f, neighbourhood, stride=1, padding=neighbourhood // 2,
                             count_include_pad=False)
        if f.shape[-2:] != (h, w):
            f = F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)
        out.append(f)
    emb = torch.cat(out, dim=1)
    if dim is not None and dim < emb.shape[1]:
        n, d = emb.shape[:2]
        emb = F.adaptive_avg_pool1d(emb.permute(0, 2, 3, 1).reshape(-1, 1, d), dim)
        emb = emb.reshape(n, h, w, dim).permute(0, 3, 1, 2)
    return emb.contiguous()


def embed_images(extractor: torch.nn.Module, batches: Iterable[torch.Tensor], *,
                 neighbourhood: int = 3, dim: int | None = None, channels: Sequence[int] | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Embeddings ``(N, D, h, w)`` (float32, on the CPU) of every image in ``batches``.

    ``channels`` keeps only those embedding channels (PaDiM's random subset).
    """
    out = []
    for x in batches:
        emb = patch_embeddings(extractor(x.to(device)), neighbourhood=neighbourhood, dim=dim)
        if channels is not None:
            emb = emb[:, list(channels)]
        out.append(emb.float().cpu())
    if not out:
        raise ValueError("embed_images: no images.")
    return torch.cat(out)


def to_image_maps(patch_maps: torch.Tensor | np.ndarray, size: tuple[int, int],
                  sigma: float) -> np.ndarray:
    """Patch-grid scores ``(N, h, w)`` -> image-size maps ``(N, H, W)``: bilinear, then Gaussian.

    Both papers upsample the patch scores to the input size and smooth them with a Gaussian
    (sigma = 4 px at 224 px); ``sigma`` is in output pixels (0: no smoothing).
    """
    t = torch.as_tensor(np.asarray(patch_maps, dtype=np.float32))[:, None]
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
    return gaussian_smooth(up, sigma) if sigma > 0 else up
