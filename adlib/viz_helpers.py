"""Small shared helpers of :mod:`adlib.viz` and :mod:`adlib.viz_curves` (no pyplot)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

HEATMAP_CMAP = "inferno"
MASK_COLOR = (1.0, 0.15, 0.1)


# --------------------------------------------------------------------------- helpers


def show(fig: Figure) -> Figure:
    """Display ``fig`` now in a notebook (``IPython.display``); a no-op outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency of ipykernel
        return fig
    if get_ipython() is not None:
        display(fig)
    return fig


def _finish(fig: Figure, show_now: bool) -> Figure:
    return show(fig) if show_now else fig


def _to_numpy(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)


def to_display(img: Any) -> np.ndarray:
    """One image as ``imshow`` wants it: HxW or HxWx3, uint8 or float in [0, 1].

    Accepts torch tensors or arrays in CHW or HWC layout. Float images outside [0, 1]
    (e.g. normalised to [-1, 1]) are min-max scaled for display only.
    """
    a = _to_numpy(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"Expected one image (HxW, HxWxC or CxHxW), got shape {a.shape}.")
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo < -1e-6 or hi > 1 + 1e-6:
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        return np.clip(a, 0.0, 1.0)
    return a


def _as_list(items: Any) -> list | None:
    """A batch (N,...) tensor/array or a sequence as a list of per-image items (``None`` kept)."""
    if items is None:
        return None
    if isinstance(items, (list, tuple)):
        return list(items)
    a = _to_numpy(items)
    return [a[i] for i in range(len(a))]


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.5)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _blank(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _mask_rgba(mask: np.ndarray, alpha: float, color=MASK_COLOR) -> np.ndarray:
    m = _to_numpy(mask).astype(bool)
    if m.ndim == 3:
        m = m.reshape(m.shape[-2:]) if m.shape[0] == 1 else m[..., 0]
    rgba = np.zeros((*m.shape, 4), dtype=np.float32)
    rgba[..., :3] = color
    rgba[..., 3] = m * alpha
    return rgba


def _is_mask(a: np.ndarray) -> bool:
    return a.dtype == bool or (np.issubdtype(a.dtype, np.integer) and set(np.unique(a)) <= {0, 1})
