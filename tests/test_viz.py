"""Every figure renders under Agg and shows what it promises (tiny synthetic inputs)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from adlib import viz  # noqa: E402
from adlib.metrics import image_aupr, image_auroc  # noqa: E402
from adlib.train import History  # noqa: E402


@pytest.fixture()
def batch():
    rng = np.random.default_rng(0)
    images = rng.random((4, 3, 16, 16)).astype(np.float32)
    maps = rng.random((4, 16, 16)).astype(np.float32)
    gt = np.zeros((4, 16, 16), dtype=bool)
    gt[:2, 4:9, 4:9] = True
    maps[gt] += 1.0
    return images, maps, gt


def _render(fig: Figure) -> np.ndarray:
    """Rasterise through Agg and check that something other than a blank page was drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    assert pixels.shape[0] > 50 and pixels.std() > 1.0
    return pixels


def _legend_text(fig: Figure) -> str:
    return " ".join(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())


def test_result_grid_full_and_missing_columns(batch):
    images, maps, gt = batch
    fig = viz.result_grid(images, images, maps, maps > 1.0, list(gt[:2]) + [None, None],
                          titles=["a", "b", "c", "d"])
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4 * 5
    titles = [ax.get_title() for ax in panels[:5]]
    assert titles == ["Input", "Reconstruction", "Residual", "Predicted mask", "Ground truth"]
    texts = [t.get_text() for ax in panels for t in ax.texts]
    assert texts.count("no mask") == 2
    assert panels[0].get_ylabel() == "a"
    _render(fig)

    # No reconstruction, no ground truth at all (patch-based model, dataset without masks).
    fig2 = viz.result_grid(torch.from_numpy(images), residual_maps=maps, pred_masks=maps > 1.0)
    panels2 = [ax for ax in fig2.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels2[:3]] == ["Input", "Residual", "Predicted mask"]
    assert len(panels2) == 4 * 3
    _render(fig2)


def test_result_grid_rejects_length_mismatch(batch):
    images, maps, _ = batch
    with pytest.raises(ValueError, match="Residual"):
        viz.result_grid(images, residual_maps=maps[:2])


def test_overlay_heatmap_and_mask(batch):
    images, maps, gt = batch
    fig = viz.overlay(images[0], maps[0], alpha=0.4, title="heat")
    assert len(fig.axes[0].images) == 2 and fig.axes[0].get_title() == "heat"
    assert len(fig.axes) == 2  # image axes + colour bar
    fig_mask = viz.overlay(images[0], gt[0])
    assert len(fig_mask.axes[0].images) == 2 and len(fig_mask.axes) == 1
    _render(fig_mask)
    with pytest.raises(ValueError, match="map is"):
        viz.overlay(images[0], maps[0][:8])


def test_roc_and_pr_curves_show_auc_from_metrics(batch):
    _, maps, gt = batch
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(20), np.ones(10)].astype(int)
    scores = rng.random(30) + labels * 0.5
    fig = viz.roc_curves({"model": (labels, scores), "single class": (np.zeros(5), rng.random(5))})
    text = _legend_text(fig)
    assert f"model (AUROC = {image_auroc(scores, labels):.3f})" in text
    assert "not computable" in text
    assert len(fig.axes[0].lines) >= 2
    fig_pr = viz.pr_curves({"model": (labels, scores)})
    assert f"AUPR = {image_aupr(scores, labels):.3f}" in _legend_text(fig_pr)
    _render(fig)
    _render(fig_pr)


def test_score_distributions_with_thresholds():
    rng = np.random.default_rng(2)
    scores = np.r_[rng.normal(0, 1, 40), rng.normal(3, 1, 15)]
    labels = np.r_[np.zeros(40), np.ones(15)]
    fig = viz.score_distributions(scores, labels, {"validation": 1.5, "oracle (test set)": 2.0})
    text = _legend_text(fig)
    assert "normal (n=40)" in text and "defective (n=15)" in text
    assert "validation = 1.5" in text and "oracle (test set) = 2" in text
    vlines = [ln for ln in fig.axes[0].lines if len(set(ln.get_xdata())) == 1]
    assert len(vlines) == 2
    # Degenerate group (one defective image): no KDE, no crash.
    fig2 = viz.score_distributions(np.r_[scores[:10], 5.0], np.r_[np.zeros(10), 1], threshold=1.0)
    assert "threshold = 1" in _legend_text(fig2)
    _render(fig2)


def test_training_curves_from_history_and_frame():
    steps = [{"epoch": i // 5, "step": i, "loss": 1.0 / (i + 1)} for i in range(20)]
    epochs = [{"epoch": e, "loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "lr": 1e-3, "seconds": 0.1}
              for e in range(4)]
    hist = History(steps=steps, epochs=epochs)
    fig = viz.training_curves(hist, per="epoch", log=True)
    labels = [ln.get_label() for ln in fig.axes[0].lines]
    assert labels == ["loss", "val_loss"]
    assert fig.axes[0].get_yscale() == "log"
    fig_step = viz.training_curves(hist.to_frame("step"), per="step", smooth=4)
    assert any("mean of 4" in lab for lab in (ln.get_label() for ln in fig_step.axes[0].lines))
    # WGAN-style negative losses: log requested -> symlog instead of failing.
    gan = pd.DataFrame({"step": range(10), "critic": np.linspace(-5, 1, 10)})
    assert viz.training_curves(gan, log=True).axes[0].get_yscale() == "symlog"
    with pytest.raises(ValueError, match="empty"):
        viz.training_curves(History(), per="epoch")
    _render(fig_step)


def test_prf_vs_threshold_from_arrays_and_frame():
    ts = np.linspace(0, 1, 11)
    precision, recall = ts.copy(), 1 - ts
    f1 = [None] + list((2 * precision * recall / (precision + recall + 1e-12))[1:])
    fig = viz.prf_vs_threshold(ts, precision, recall, f1, marks={"validation": 0.3, "oracle": 0.5})
    text = _legend_text(fig)
    assert "validation" in text and "oracle" in text and "F1" in text
    assert len(fig.axes[0].lines) == 5
    frame = pd.DataFrame({"threshold": ts, "precision": precision, "recall": recall, "f1": f1})
    fig2 = viz.prf_vs_threshold(frame)
    assert [ln.get_label() for ln in fig2.axes[0].lines] == ["precision", "recall", "F1"]
    _render(fig)


def test_sample_and_image_grids(batch):
    images, _, gt = batch
    fig = viz.sample_grid(images, gt, ncols=3, titles=["g", "g", "d", "d"])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4 and len(fig.axes) == 6
    assert all(len(ax.images) == 2 for ax in visible)  # image + mask layer
    fig2 = viz.image_grid(torch.randn(10, 1, 8, 8), nrow=5, value_range=(-1, 1), title="samples")
    (ax,) = fig2.axes
    h, w = ax.images[0].get_array().shape[:2]
    assert (h, w) == (2 * 8 + 3 * 2, 5 * 8 + 6 * 2)
    assert ax.get_title() == "samples"
    _render(fig2)


def test_to_display_layouts():
    chw = torch.rand(3, 5, 7)
    assert viz.to_display(chw).shape == (5, 7, 3)
    assert viz.to_display(np.zeros((1, 5, 7))).shape == (5, 7)
    scaled = viz.to_display(np.array([[-1.0, 1.0]]))
    assert scaled.min() == 0.0 and scaled.max() == 1.0


def test_no_pyplot_figures_are_left_open(batch):
    import matplotlib.pyplot as plt

    images, maps, gt = batch
    before = len(plt.get_fignums())
    viz.result_grid(images, images, maps, maps > 1, gt)
    viz.overlay(images[0], maps[0])
    assert len(plt.get_fignums()) == before
