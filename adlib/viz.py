"""Figures for the course: result grids, overlays, ROC/PR curves, score histograms, training curves.

Every function builds a ``matplotlib.figure.Figure`` **without pyplot** and returns it, so it
works under any backend (Agg on CI, inline in Jupyter), never opens a window, never leaks open
figures and never calls ``plt.show()``. In a notebook, a returned figure is shown when it is the
last expression of a cell (or with ``display(fig)``, or by passing ``show=True``); save it with
``fig.savefig(path)``. Pass ``ax=`` where offered to draw into an existing axes instead.

Metric values (AUROC, AUPR) come from :mod:`adlib.metrics`; this module only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "result_grid",
    "overlay",
    "roc_curves",
    "pr_curves",
    "score_distributions",
    "training_curves",
    "prf_vs_threshold",
    "sample_grid",
    "image_grid",
    "show",
]

from adlib.viz_curves import (  # noqa: F401 - part of adlib.viz
    pr_curves,
    prf_vs_threshold,
    roc_curves,
    score_distributions,
    training_curves,
)
from adlib.viz_helpers import (  # noqa: F401 - part of adlib.viz
    HEATMAP_CMAP,
    MASK_COLOR,
    _as_list,
    _blank,
    _finish,
    _is_mask,
    _mask_rgba,
    _new_axes,
    _to_numpy,
    show,
    to_display,
)

# --------------------------------------------------------------------------- result grids


def result_grid(
    images: Any,
    recons: Any = None,
    residual_maps: Any = None,
    pred_masks: Any = None,
    gt_masks: Any = None,
    titles: Sequence[str] | None = None,
    *,
    max_rows: int | None = 8,
    vmax: float | None = None,
    cell_size: float = 2.2,
    show: bool = False,
) -> Figure:
    """Seed 000's figure: input | reconstruction | residual heat map | predicted | ground truth.

    Columns whose argument is ``None`` are left out; a ``None`` entry inside ``gt_masks`` (e.g. a
    defect-free image or a dataset without masks) shows an empty "no mask" panel. Residual maps
    share one colour scale (0 .. ``vmax``, default: their maximum) so rows can be compared.

    Args:
        images: (N, C, H, W) / (N, H, W, C) tensor or array, or a list of images.
        recons, residual_maps, pred_masks, gt_masks: same length as ``images`` or ``None``.
        titles: one row label per image (e.g. defect type and score).
        max_rows: show at most this many rows (``None``: all).
        vmax: upper end of the residual colour scale.
        cell_size: inches per panel.
        show: display the figure now (notebooks).
    """
    columns = [
        ("Input", _as_list(images)),
        ("Reconstruction", _as_list(recons)),
        ("Residual", _as_list(residual_maps)),
        ("Predicted mask", _as_list(pred_masks)),
        ("Ground truth", _as_list(gt_masks)),
    ]
    columns = [(name, col) for name, col in columns if col is not None]
    n = len(columns[0][1])
    for name, col in columns:
        if len(col) != n:
            raise ValueError(f"result_grid: {n} images but {len(col)} entries for {name!r}.")
    rows = n if max_rows is None else min(n, max_rows)
    if rows == 0:
        raise ValueError("result_grid: no images to show.")
    residual = dict(columns).get("Residual")
    if residual is not None and vmax is None:
        vmax = max(float(np.nanmax(_to_numpy(r))) for r in residual[:rows] if r is not None)

    fig = Figure(figsize=(cell_size * len(columns), cell_size * rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(rows, len(columns), squeeze=False))
    heat = None
    for r in range(rows):
        for c, (name, col) in enumerate(columns):
            ax = axes[r, c]
            _blank(ax)
            item = col[r]
            if r == 0:
                ax.set_title(name, fontsize=10)
            if item is None:
                ax.text(0.5, 0.5, "no mask" if name == "Ground truth" else "n/a",
                        ha="center", va="center", transform=ax.transAxes, color="0.4")
                continue
            if name == "Residual":
                a = _to_numpy(item).squeeze()
                heat = ax.imshow(a, cmap=HEATMAP_CMAP, vmin=0.0, vmax=vmax)
            elif name in ("Predicted mask", "Ground truth"):
                ax.imshow(_to_numpy(item).squeeze().astype(float), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(to_display(item), cmap="gray")
        if titles is not None and r < len(titles):
            axes[r, 0].set_ylabel(str(titles[r]), fontsize=9)
    if heat is not None:
        col = [name for name, _ in columns].index("Residual")
        fig.colorbar(heat, ax=axes[rows - 1, col], location="bottom", shrink=0.9, label="residual")
    return _finish(fig, show)


def overlay(
    image: Any,
    heatmap_or_mask: Any,
    alpha: float = 0.5,
    *,
    cmap: str = HEATMAP_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar: bool = True,
    ax: Axes | None = None,
    show: bool = False,
) -> Figure:
    """Draw a heat map (float) or a mask (bool / 0-1 ints) over an image.

    Masks are drawn as a red fill with a contour; heat maps with ``cmap`` and a colour bar.
    """
    fig, ax = _new_axes(ax, (4.5, 4.5))
    img = to_display(image)
    ax.imshow(img, cmap="gray")
    over = _to_numpy(heatmap_or_mask).squeeze()
    if over.shape[:2] != img.shape[:2]:
        raise ValueError(f"overlay: image is {img.shape[:2]} but the map is {over.shape[:2]}.")
    if _is_mask(over):
        ax.imshow(_mask_rgba(over, alpha))
        if over.any() and not over.all():
            ax.contour(over.astype(float), levels=[0.5], colors=[MASK_COLOR], linewidths=1.0)
    else:
        im = ax.imshow(over, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
        if colorbar:
            fig.colorbar(im, ax=ax, shrink=0.8)
    _blank(ax)
    if title:
        ax.set_title(title)
    return _finish(fig, show)


def sample_grid(
    images: Any,
    masks: Any = None,
    ncols: int = 8,
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.35,
    cell_size: float = 1.8,
    show: bool = False,
) -> Figure:
    """A grid of dataset samples, with ground-truth masks outlined in red when given."""
    imgs = _as_list(images)
    if not imgs:
        raise ValueError("sample_grid: no images to show.")
    mlist = _as_list(masks)
    if mlist is not None and len(mlist) != len(imgs):
        raise ValueError(f"sample_grid: {len(imgs)} images but {len(mlist)} masks.")
    ncols = max(1, min(ncols, len(imgs)))
    nrows = int(np.ceil(len(imgs) / ncols))
    fig = Figure(figsize=(cell_size * ncols, cell_size * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        _blank(ax)
        if i >= len(imgs):
            ax.set_visible(False)
            continue
        ax.imshow(to_display(imgs[i]), cmap="gray")
        if mlist is not None and mlist[i] is not None:
            m = _to_numpy(mlist[i]).squeeze().astype(bool)
            ax.imshow(_mask_rgba(m, alpha))
            if m.any() and not m.all():
                ax.contour(m.astype(float), levels=[0.5], colors=[MASK_COLOR], linewidths=0.8)
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=8)
    return _finish(fig, show)


def image_grid(
    images: Any,
    nrow: int = 8,
    *,
    value_range: tuple[float, float] | None = None,
    title: str | None = None,
    padding: int = 2,
    figsize: tuple[float, float] | None = None,
    show: bool = False,
) -> Figure:
    """One mosaic of many images (GAN samples), via ``torchvision.utils.make_grid``.

    Args:
        images: (N, C, H, W) tensor/array (or (N, H, W)).
        nrow: images per row.
        value_range: data range to map to black..white (e.g. ``(-1, 1)`` for tanh outputs);
            ``None``: the batch's min..max.
    """
    import torch
    from torchvision.utils import make_grid

    t = torch.as_tensor(_to_numpy(images)).float()
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4 or t.shape[0] == 0:
        raise ValueError(f"image_grid expects (N, C, H, W) images, got shape {tuple(t.shape)}.")
    if t.shape[1] not in (1, 3) and t.shape[-1] in (1, 3):
        t = t.permute(0, 3, 1, 2)
    grid = make_grid(t, nrow=nrow, padding=padding, normalize=True, value_range=value_range, pad_value=1.0)
    fig, ax = _new_axes(None, figsize or (min(12.0, 1.2 * nrow), min(12.0, 1.2 * np.ceil(len(t) / nrow))))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
    _blank(ax)
    if title:
        ax.set_title(title)
    return _finish(fig, show)
