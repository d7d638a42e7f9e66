"""Interactive threshold explorer, with a static fallback for headless runs.

:func:`threshold_explorer` shows, for a slider-chosen threshold tau, the predicted masks of a few
test images next to their ground truth, and the pixel F1 against tau (F1 from
:func:`adlib.metrics.prf_curve`). It is an ipywidgets slider only when a person can move it;
everywhere else it returns a static matplotlib figure (small multiples at a few taus + F1 vs tau),
so headless runs never hang and the HTML report still shows something useful.

Rule (see :func:`interactive_frontend`), checked in this order:

1. ``ADLIB_STATIC=1`` -> static; ``ADLIB_INTERACTIVE=1`` -> widget (when ipywidgets imports).
2. ipywidgets not importable, or not inside a Jupyter kernel (plain Python, pytest, IPython in
   a terminal) -> static.
3. The kernel was started by a headless runner (its parent process is papermill, nbclient,
   nbconvert, pytest/nbmake or adlib's report runner) -> static. These tools set no environment
   variable, so the parent process is the reliable signal.
4. A widget front end has talked to the kernel (ipywidgets' ``jupyter.widget.control`` comm is
   open) or the kernel's parent is a Jupyter server / VS Code -> widget.
5. Otherwise -> static.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from adlib.viz import _to_numpy, to_display

_HEADLESS_PARENTS = ("papermill", "nbclient", "nbconvert", "pytest", "nbmake", "adlib")
_FRONTEND_PARENTS = ("jupyter-lab", "jupyter_lab", "jupyterlab", "jupyter-notebook",
                     "jupyter-server", "jupyter_server", "notebook", "voila", "vscode")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _parent_cmdline() -> str:
    try:
        import psutil

        parent = psutil.Process().parent()
        return " ".join(parent.cmdline()).lower() if parent is not None else ""
    except Exception:  # noqa: BLE001 - no psutil, no permission: unknown parent
        return ""


def interactive_frontend() -> bool:
    """Whether a widget can be shown to a person right now (see the module docstring)."""
    if _truthy("ADLIB_STATIC"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    if _truthy("ADLIB_INTERACTIVE"):
        return True
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    parent = _parent_cmdline()
    if any(word in parent for word in _HEADLESS_PARENTS):
        return False
    try:
        from ipywidgets.widgets.widget import Widget

        if getattr(Widget, "_control_comm", None) is not None:
            return True
    except ImportError:  # pragma: no cover - ipywidgets layout changed
        pass
    return any(word in parent for word in _FRONTEND_PARENTS)


def default_thresholds(maps: Any, n: int = 40, low_quantile: float = 0.5) -> np.ndarray:
    """``n`` thresholds from the ``low_quantile`` quantile of the map values to their maximum."""
    values = _to_numpy(maps).astype(np.float64).ravel()
    if values.size > 200_000:
        values = np.random.default_rng(0).choice(values, 200_000, replace=False)
    lo, hi = np.quantile(values, low_quantile), float(values.max())
    if hi <= lo:
        return np.array([float(lo)])
    return np.linspace(lo, hi, n, endpoint=False)


def _prep(images, maps, gt_masks, thresholds, max_images):
    m = _to_numpy(maps).astype(np.float32)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"threshold_explorer: maps must be (N, H, W), got shape {m.shape}.")
    imgs = list(images) if isinstance(images, (list, tuple)) else [x for x in images]
    if len(imgs) != len(m):
        raise ValueError(f"threshold_explorer: {len(imgs)} images but {len(m)} maps.")
    g = None
    if gt_masks is not None:
        g = _to_numpy(gt_masks).astype(bool)
        if g.ndim == 4 and g.shape[1] == 1:
            g = g[:, 0]
        if g.shape != m.shape:
            raise ValueError(f"threshold_explorer: masks {g.shape} do not match maps {m.shape}.")
    ts = np.asarray(default_thresholds(m) if thresholds is None else thresholds, dtype=np.float64)
    ts = np.unique(ts.ravel())
    f1 = None
    if g is not None and g.any():
        from adlib.metrics import prf_curve

        curve = prf_curve(m, g, ts)
        f1 = np.array([np.nan if v is None else float(v) for v in curve["f1"]])
    # Show defective images first (where masks exist), then the rest.
    order = list(range(len(m)))
    if g is not None:
        order.sort(key=lambda i: not g[i].any())
    shown = order[:max_images]
    return imgs, m, g, ts, f1, shown


def _draw(fig: Figure, imgs, m, g, ts, f1, shown, taus: Sequence[float]) -> None:
    """Rows: image (+ GT outline), then predicted masks at each tau; last panel: F1 vs tau."""
    ncols = len(shown)
    nrows = 1 + len(taus)
    grid = fig.add_gridspec(nrows, ncols + 2)
    for c, i in enumerate(shown):
        ax = fig.add_subplot(grid[0, c])
        ax.imshow(to_display(imgs[i]), cmap="gray")
        if g is not None and g[i].any():
            ax.contour(g[i].astype(float), levels=[0.5], colors=["lime"], linewidths=0.8)
        ax.set_axis_off()
        if c == 0:
            ax.set_title("image (GT green)" if g is not None else "image", fontsize=8, loc="left")
        for r, tau in enumerate(taus, start=1):
            ax = fig.add_subplot(grid[r, c])
            pred = m[i] > tau
            ax.imshow(pred, cmap="gray", vmin=0, vmax=1)
            if g is not None and g[i].any():
                ax.contour(g[i].astype(float), levels=[0.5], colors=["lime"], linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"\N{GREEK SMALL LETTER TAU}={tau:.3g}", fontsize=8)
    ax = fig.add_subplot(grid[:, ncols:])
    if f1 is not None:
        ax.plot(ts, f1, color="tab:green", lw=1.6, label="pixel F1 (all images)")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("F1")
    else:
        ax.text(0.5, 0.5, "no ground-truth masks:\nF1 not computable", ha="center", va="center",
                transform=ax.transAxes)
    for k, tau in enumerate(taus):
        ax.axvline(tau, color="k", ls="--" if len(taus) == 1 else ":", lw=1,
                   label="current \N{GREEK SMALL LETTER TAU}" if len(taus) == 1 else None)
        if f1 is not None:
            j = int(np.argmin(np.abs(ts - tau)))
            ax.annotate(f"{f1[j]:.2f}" if np.isfinite(f1[j]) else "n/a", (tau, 0.02 + 0.06 * k),
                        fontsize=7)
    ax.set_xlabel("threshold \N{GREEK SMALL LETTER TAU}")
    if f1 is not None:
        ax.legend(fontsize=7, loc="upper right")


def static_explorer(
    images: Any,
    maps: Any,
    gt_masks: Any = None,
    thresholds: Any = None,
    *,
    initial: float | None = None,
    taus: Sequence[float] | None = None,
    n_taus: int = 4,
    max_images: int = 4,
) -> Figure:
    """The static version: predicted masks at a few thresholds (small multiples) + F1 vs tau.

    The rows are ``taus`` if given, else ``n_taus`` values spread over ``thresholds`` (with
    ``initial``, e.g. the validation threshold, replacing the nearest one).
    """
    imgs, m, g, ts, f1, shown = _prep(images, maps, gt_masks, thresholds, max_images)
    if taus is None:
        idx = np.linspace(0, len(ts) - 1, min(n_taus, len(ts))).round().astype(int)
        taus = [float(ts[i]) for i in np.unique(idx)]
        if initial is not None:
            taus[int(np.argmin(np.abs(np.asarray(taus) - float(initial))))] = float(initial)
            taus = sorted(set(taus))
    fig = Figure(figsize=(1.8 * (len(shown) + 2), 1.7 * (1 + len(taus))), layout="constrained")
    _draw(fig, imgs, m, g, ts, f1, shown, list(taus))
    fig.suptitle("threshold explorer (static): predicted masks at a few thresholds", fontsize=10)
    return fig


def threshold_explorer(
    images: Any,
    maps: Any,
    gt_masks: Any = None,
    thresholds: Any = None,
    initial: float | None = None,
    *,
    max_images: int = 4,
    static: bool | None = None,
):
    """Slider over tau updating the predicted masks and F1 live; a static figure when headless.

    Args:
        images: the test images (N, ...), shown for context.
        maps: anomaly maps (N, H, W).
        gt_masks: ground-truth masks (N, H, W) or ``None`` (no F1 then).
        thresholds: candidate taus (default: 40 values from the median map value to the max).
        initial: starting tau (e.g. the validation threshold); default: middle of the range.
        max_images: how many images to show (defective ones first).
        static: force the static figure (``True``) or the widget (``False``); ``None`` decides
            with :func:`interactive_frontend`.

    Returns:
        An ``ipywidgets.VBox`` (interactive) or a ``matplotlib.figure.Figure`` (static).
    """
    use_widget = (not static) if static is not None else interactive_frontend()
    if not use_widget:
        return static_explorer(images, maps, gt_masks, thresholds, initial=initial,
                               max_images=max_images)

    import ipywidgets as widgets
    from IPython.display import display

    imgs, m, g, ts, f1, shown = _prep(images, maps, gt_masks, thresholds, max_images)
    start = float(initial) if initial is not None else float(ts[len(ts) // 2])
    slider = widgets.FloatSlider(
        value=start, min=float(ts.min()), max=float(ts.max()),
        step=float((ts.max() - ts.min()) / max(len(ts) - 1, 1)) or 1e-6,
        description="\N{GREEK SMALL LETTER TAU}", readout_format=".4g", continuous_update=False,
        layout=widgets.Layout(width="60%"),
    )
    label = widgets.HTML()
    out = widgets.Output()

    def redraw(change: Any = None) -> None:
        tau = float(slider.value)
        if g is not None and g.any():
            from adlib.metrics import pixel_prf

            prf = pixel_prf(m, g, tau)
            f1_text = "n/a" if prf.f1 is None else f"{prf.f1:.3f}"
            label.value = f"<b>pixel F1 = {f1_text}</b> at \N{GREEK SMALL LETTER TAU} = {tau:.4g}"
        else:
            label.value = f"\N{GREEK SMALL LETTER TAU} = {tau:.4g} (no masks: F1 not computable)"
        fig = Figure(figsize=(1.8 * (len(shown) + 2), 3.6), layout="constrained")
        _draw(fig, imgs, m, g, ts, f1, shown, [tau])
        with out:
            out.clear_output(wait=True)
            display(fig)

    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([slider, label]), out])
