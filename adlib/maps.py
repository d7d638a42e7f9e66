"""Anomaly maps from reconstructions: residuals (L2, L1, 1-SSIM), smoothing, patch stitching.

Scale convention (used by every notebook and by :mod:`adlib.thresholds`):

* Images are float in ``[0, 1]`` (``data_range=1``). Images normalised to ``[-1, 1]``
  (mean 0.5, std 0.5) must be mapped back with ``(x + 1) / 2`` first, or pass ``data_range=2``.
* ``kind="l2"``: per-pixel squared difference ``(x - recon) ** 2 / data_range**2``, then the mean
  over channels: a map in ``[0, 1]``. This is the pixel-wise term of the MSE training loss.
* ``kind="l1"``: ``|x - recon| / data_range``, mean over channels: a map in ``[0, 1]``.
* ``kind="ssim"``: ``1 - SSIM`` computed in a sliding window (Bergmann et al. 2019). SSIM lies in
  ``[-1, 1]``, so the map lies in ``[0, 2]``; in practice values stay below 1.

So a fixed threshold such as seed 000's ``tau = 0.1 / 0.2 / 0.7`` means the same thing for every
``l2`` map: a squared colour difference of 10 %, 20 %, 70 % of the full range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MapError",
    "residual_map",
    "ssim_map",
    "ssim_loss",
    "gaussian_smooth",
    "stitch_patches",
    "image_scores",
]

ArrayLike = np.ndarray | torch.Tensor


class MapError(ValueError):
    """Raised for inputs that cannot be turned into anomaly maps (shape, dtype, parameters)."""


def _to_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    """Convert to a float32 (N, C, H, W) CPU/GPU tensor without gradient, with clear errors."""
    if isinstance(a, np.ndarray):
        if a.dtype == np.uint8:
            raise MapError(
                f"adlib.maps: {name} is uint8; convert images to float in [0, 1] first "
                "(e.g. x.astype('float32') / 255)."
            )
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    elif isinstance(a, torch.Tensor):
        if a.dtype == torch.uint8:
            raise MapError(f"adlib.maps: {name} is uint8; convert to float in [0, 1] (x.float() / 255).")
        t = a.detach().float()
    else:
        raise MapError(f"adlib.maps: {name} must be a numpy array or torch tensor, got {type(a).__name__}.")
    if t.ndim == 3:  # (N, H, W): single channel
        t = t[:, None]
    if t.ndim != 4:
        raise MapError(
            f"adlib.maps: {name} must have shape (N, C, H, W) or (N, H, W), got {tuple(t.shape)}. "
            "Channels-last images (N, H, W, C) need x.transpose(0, 3, 1, 2)."
        )
    return t


def _window_1d(window_size: int, window: str, sigma: float, device: torch.device) -> torch.Tensor:
    """A normalised 1-D window (k,); the 2-D window is its outer product with itself."""
    if window_size < 1 or window_size % 2 == 0:
        raise MapError(f"adlib.maps: window_size must be odd and >= 1, got {window_size}.")
    if window == "gaussian":
        coords = torch.arange(window_size, dtype=torch.float32, device=device) - window_size // 2
        g = torch.exp(-(coords**2) / (2 * sigma**2))
    elif window == "uniform":
        g = torch.ones(window_size, dtype=torch.float32, device=device)
    else:
        raise MapError(f"adlib.maps: window must be 'gaussian' or 'uniform', got {window!r}.")
    return g / g.sum()


def _filter_separable(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Depthwise 'same' filtering of (N, C, H, W) with the 2-D window ``outer(g, g)`` (reflect
    padding), as two 1-D passes: k + k taps per pixel instead of k * k."""
    c, k = x.shape[1], g.numel()
    pad = k // 2
    if pad:
        mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
        x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    window_size: int = 11,
    window: Literal["gaussian", "uniform"] = "gaussian",
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-pixel, per-channel SSIM of two (N, C, H, W) tensors; differentiable.

    Args:
        x, y: images with values in ``[0, data_range]``.
        window_size: odd side of the local window (11 in Wang et al. 2004 and Bergmann et al. 2019).
        window: ``"gaussian"`` (std ``sigma``) or ``"uniform"``.
        sigma: std of the Gaussian window in pixels.
        data_range: dynamic range of the images (1 for ``[0, 1]``).
        k1, k2: the usual SSIM stabilising constants.

    Returns:
        (N, C, H, W) SSIM values in ``[-1, 1]`` (same spatial size, reflect padding).
    """
    if x.shape != y.shape:
        raise MapError(f"adlib.maps: SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}.")
    g = _window_1d(window_size, window, sigma, x.device).to(x.dtype)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    c = x.shape[1]
    # the five local moments in one separable depthwise pass (about 10x faster than five 2-D ones)
    moments = _filter_separable(torch.cat([x, y, x * x, y * y, x * y], dim=1), g)
    mu_x, mu_y, xx, yy, xy = moments.split(c, dim=1)
    sxx = xx - mu_x**2
    syy = yy - mu_y**2
    sxy = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return num / den


def ssim_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    window: int = 11,
    *,
    kind: Literal["gaussian", "uniform"] = "gaussian",
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Differentiable ``1 - mean SSIM`` for training an SSIM autoencoder (Bergmann et al. 2019).

    Args:
        x, y: (N, C, H, W) tensors in ``[0, data_range]`` (e.g. reconstruction and input).
        window: odd window side (11 by default).
        kind: ``"gaussian"`` or ``"uniform"`` window.
        sigma: Gaussian window std.
        data_range: dynamic range of the images.

    Returns:
        A scalar tensor in ``[0, 2]``; 0 for identical images.
    """
    return 1.0 - ssim_map(x, y, window, kind, sigma, data_range).mean()


def residual_map(
    x: ArrayLike,
    recon: ArrayLike,
    kind: Literal["l2", "l1", "ssim"] = "l2",
    reduce_channels: Literal["mean", "max", "sum"] = "mean",
    smooth_sigma: float | None = None,
    *,
    window_size: int = 11,
    window: Literal["gaussian", "uniform"] = "gaussian",
    data_range: float = 1.0,
    batch_size: int = 32,
) -> np.ndarray:
    """Per-pixel anomaly map from an input and its reconstruction.

    Args:
        x, recon: (N, C, H, W) or (N, H, W) float arrays/tensors in ``[0, data_range]``.
        kind: ``"l2"`` (squared difference), ``"l1"`` (absolute difference) or ``"ssim"``
            (``1 - SSIM``); see the module docstring for the scale of each.
        reduce_channels: how channels are merged (``"mean"`` keeps maps in ``[0, 1]``).
        smooth_sigma: if set, Gaussian smoothing of the final map (pixels), see :func:`gaussian_smooth`.
        window_size, window: SSIM window (only for ``kind="ssim"``).
        data_range: image range (1 for ``[0, 1]``, 2 for ``[-1, 1]``).
        batch_size: images processed at once (bounds memory).

    Returns:
        (N, H, W) float32 numpy array.
    """
    xt, rt = _to_tensor(x, "x"), _to_tensor(recon, "recon")
    if xt.shape != rt.shape:
        raise MapError(f"adlib.maps: x {tuple(xt.shape)} and recon {tuple(rt.shape)} differ in shape.")
    if kind not in ("l2", "l1", "ssim"):
        raise MapError(f"adlib.maps: kind must be 'l2', 'l1' or 'ssim', got {kind!r}.")
    if reduce_channels not in ("mean", "max", "sum"):
        raise MapError(f"adlib.maps: reduce_channels must be 'mean', 'max' or 'sum', got {reduce_channels!r}.")
    rt = rt.to(xt.device)
    out = []
    with torch.no_grad():
        for i in range(0, xt.shape[0], batch_size):
            a, b = xt[i : i + batch_size], rt[i : i + batch_size]
            if kind == "l2":
                m = ((a - b) / data_range) ** 2
            elif kind == "l1":
                m = (a - b).abs() / data_range
            else:
                m = 1.0 - ssim_map(a, b, window_size, window, data_range=data_range)
            if reduce_channels == "mean":
                m = m.mean(dim=1)
            elif reduce_channels == "max":
                m = m.amax(dim=1)
            else:
                m = m.sum(dim=1)
            out.append(m.cpu().numpy().astype(np.float32, copy=False))
    maps = np.concatenate(out, axis=0) if out else np.zeros((0, *xt.shape[-2:]), np.float32)
    if smooth_sigma:
        maps = gaussian_smooth(maps, smooth_sigma)
    return maps


def gaussian_smooth(maps: ArrayLike, sigma: float) -> np.ndarray:
    """Gaussian smoothing of (N, H, W) maps along the spatial axes only.

    Args:
        maps: (N, H, W) or (H, W) array or tensor.
        sigma: standard deviation in pixels (> 0); the kernel spans ``+-4 sigma``.

    Returns:
        float32 numpy array of the input's shape.
    """
    if sigma <= 0:
        raise MapError(f"adlib.maps: sigma must be > 0, got {sigma}.")
    arr = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[None]
    if arr.ndim != 3:
        raise MapError(f"adlib.maps: maps must be (N, H, W) or (H, W), got {arr.shape}.")
    from scipy.ndimage import gaussian_filter

    out = np.empty(arr.shape, np.float32)
    for i in range(arr.shape[0]):
        out[i] = gaussian_filter(arr[i].astype(np.float32), sigma=sigma, mode="reflect", truncate=4.0)
    return out[0] if squeeze else out


def stitch_patches(
    patch_scores_or_maps: ArrayLike | Sequence[float],
    coords: ArrayLike | Sequence[Sequence[int]],
    image_shape: tuple[int, ...],
    patch_size: int | tuple[int, int],
    fill: float = 0.0,
) -> np.ndarray:
    """Average overlapping patch scores (or patch maps) back into full-image maps.

    Args:
        patch_scores_or_maps: (P,) one score per patch, spread over the whole patch, or
            (P, ph, pw) one map per patch.
        coords: (P, 2) top-left ``(row, col)`` of each patch in a single image, or (P, 3)
            ``(image_index, row, col)`` for several images.
        image_shape: ``(H, W)`` for one image or ``(N, H, W)`` for several.
        patch_size: ``ph`` (square) or ``(ph, pw)``.
        fill: value for pixels that no patch covers.

    Returns:
        (H, W) or (N, H, W) float32 map; each pixel is the mean of the patches covering it.
    """
    vals = np.asarray(
        patch_scores_or_maps.detach().cpu().numpy()
        if isinstance(patch_scores_or_maps, torch.Tensor)
        else patch_scores_or_maps,
        dtype=np.float64,
    )
    c = np.asarray(coords.cpu().numpy() if isinstance(coords, torch.Tensor) else coords, dtype=np.int64)
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    single = len(image_shape) == 2
    shape = (1, *image_shape) if single else tuple(image_shape)
    if len(shape) != 3:
        raise MapError(f"adlib.maps: image_shape must be (H, W) or (N, H, W), got {image_shape}.")
    if c.ndim != 2 or c.shape[1] not in (2, 3) or c.shape[0] != vals.shape[0]:
        raise MapError(
            f"adlib.maps: coords must be (P, 2) or (P, 3) with P = {vals.shape[0]} patches, got {c.shape}."
        )
    if c.shape[1] == 2:
        if not single and shape[0] != 1:
            raise MapError("adlib.maps: several images need coords (P, 3) = (image_index, row, col).")
        c = np.concatenate([np.zeros((len(c), 1), np.int64), c], axis=1)
    if vals.ndim == 3 and vals.shape[1:] != (ph, pw):
        raise MapError(f"adlib.maps: patch maps are {vals.shape[1:]}, patch_size says {(ph, pw)}.")
    if vals.ndim not in (1, 3):
        raise MapError(f"adlib.maps: expected (P,) scores or (P, ph, pw) maps, got {vals.shape}.")
    _, h, w = shape
    if len(c) and (
        c[:, 1].min() < 0 or c[:, 2].min() < 0 or (c[:, 1] + ph).max() > h or (c[:, 2] + pw).max() > w
        or c[:, 0].min() < 0 or c[:, 0].max() >= shape[0]
    ):
        raise MapError(f"adlib.maps: some patches of size {(ph, pw)} fall outside images of shape {shape}.")
    total = np.zeros(shape, np.float64)
    count = np.zeros(shape, np.int32)
    for p, (n, r, col) in enumerate(c):
        total[n, r : r + ph, col : col + pw] += vals[p]
        count[n, r : r + ph, col : col + pw] += 1
    out = np.full(shape, fill, np.float32)
    covered = count > 0
    out[covered] = (total[covered] / count[covered]).astype(np.float32)
    return out[0] if single else out


def image_scores(
    maps: ArrayLike,
    how: Literal["max", "mean", "topk_mean"] = "max",
    k: int | float = 0.01,
) -> np.ndarray:
    """One anomaly score per image from its map.

    Args:
        maps: (N, H, W) maps.
        how: ``"max"`` (most anomalous pixel), ``"mean"``, or ``"topk_mean"`` (mean of the ``k``
            largest pixels: robust to single hot pixels).
        k: for ``topk_mean``: a pixel count (int >= 1) or a fraction of the pixels (float in (0, 1]).

    Returns:
        (N,) float64 scores.
    """
    arr = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    if arr.ndim != 3:
        raise MapError(f"adlib.maps: maps must be (N, H, W), got {arr.shape}.")
    flat = arr.reshape(arr.shape[0], -1)
    if how == "max":
        return flat.max(axis=1).astype(np.float64)
    if how == "mean":
        return flat.mean(axis=1, dtype=np.float64)
    if how == "topk_mean":
        npix = flat.shape[1]
        if isinstance(k, float) and not isinstance(k, bool) and 0 < k <= 1:
            kk = max(1, math.ceil(k * npix))
        elif isinstance(k, (int, np.integer)) and k >= 1:
            kk = min(int(k), npix)
        else:
            raise MapError(f"adlib.maps: k must be an int >= 1 or a fraction in (0, 1], got {k!r}.")
        top = np.partition(flat, npix - kk, axis=1)[:, npix - kk :]
        return top.mean(axis=1, dtype=np.float64)
    raise MapError(f"adlib.maps: how must be 'max', 'mean' or 'topk_mean', got {how!r}.")
