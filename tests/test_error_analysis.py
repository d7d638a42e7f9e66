"""Tests for adlib.error_analysis on tiny evaluations with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from adlib import error_analysis as ea
from adlib import experiment


def _eval(scores, labels, masks=None, maps=None, val_max: float = 0.5) -> experiment.Evaluation:
    """A real Evaluation whose honest image threshold is ``val_max`` (q=1: validation maximum)."""
    n = len(scores)
    return experiment.evaluate(
        "toy", scores=np.asarray(scores, float), labels=np.asarray(labels),
        defects=["good" if y == 0 else "crack" for y in labels], paths=[f"img{i}.png" for i in range(n)],
        val_scores=np.array([0.1, val_max]), image_q=1.0, maps=maps, masks=masks,
        val_maps=None if maps is None else np.zeros((2, *maps.shape[1:]), np.float32),
        oracle=False, n_boot=0)


def _masks(areas_px: list[int], size: int = 10) -> np.ndarray:
    out = np.zeros((len(areas_px), size, size), bool)
    for k, a in enumerate(areas_px):
        out[k].flat[:a] = True
    return out


def test_misclassified_kinds_and_order() -> None:
    # threshold 0.5: good images at 0.9 and 0.6 are false positives (0.9 worst); defective ones at
    # 0.2 and 0.5 (tie: not above) are false negatives (0.2 worst); 0.3 good and 0.8 defective are right
    ev = _eval([0.6, 0.3, 0.9, 0.5, 0.8, 0.2], [0, 0, 0, 1, 1, 1])
    assert ev.image_threshold.value == pytest.approx(0.5)
    table = ea.misclassified(ev)
    assert table["index"].tolist() == [2, 0, 5, 3]
    assert table["kind"].tolist() == ["false positive"] * 2 + ["false negative"] * 2
    np.testing.assert_allclose(table["margin"], [0.4, 0.1, 0.3, 0.0])
    assert table["path"].tolist()[0] == "img2.png"
    assert "2 false positives of 3 defect-free and 2 false negatives of 3" in ea.error_summary(ev)


def test_no_errors_gives_empty_table_and_a_message() -> None:
    ev = _eval([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1])
    assert ea.misclassified(ev).empty
    fig = ea.error_gallery(ev, np.zeros((4, 8, 8)))
    assert isinstance(fig, Figure)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "no false positives and no false negatives" in texts


def test_gallery_panels_titles_and_bound() -> None:
    rng = np.random.default_rng(0)
    n = 12
    labels = np.array([0] * 6 + [1] * 6)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.1, 0.1, 0.2, 0.3, 0.4, 0.45, 0.9])  # 5 FP, 5 FN
    masks = _masks([0] * 6 + [5] * 6)
    maps = rng.random((n, 10, 10)).astype(np.float32)
    ev = _eval(scores, labels, masks=masks, maps=maps)
    images = rng.random((n, 3, 10, 10)).astype(np.float32)  # CHW, as the datasets give them
    fig = ea.error_gallery(ev, images, max_per_kind=3, per_row=2)
    # 3 FP + 3 FN shown, 2 per row -> 2 + 2 rows of 2 x (image, map, mask) = 24 panels (+ colour bar)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 24
    titles = [ax.get_title(loc="left") for ax in panels if ax.get_title(loc="left")]
    assert titles[0].startswith("false positive 1/5: good") and "0.9 > 0.5" in titles[0]
    assert titles[3].startswith("false negative 1/5: crack") and "0.1 <= 0.5" in titles[3]
    assert len(titles) == 6
    assert "worst 3 per kind shown" in fig._suptitle.get_text()


def test_gallery_without_maps_or_masks_takes_a_function() -> None:
    ev = _eval([0.9, 0.1], [0, 1])
    seen = []

    def load(i: int) -> np.ndarray:
        seen.append(i)
        return np.zeros((6, 6))

    fig = ea.error_gallery(ev, load)
    assert sorted(seen) == [0, 1]
    assert len([ax for ax in fig.axes if ax.get_title(loc="left")]) == 2
    with pytest.raises(ValueError, match="per_row"):
        ea.error_gallery(ev, load, per_row=0)


def test_detection_by_area_fixed_edges() -> None:
    # 100-pixel images; defective areas 0 (empty mask), 0.05, 0.02 and 0.5 of the image
    labels = [0, 1, 1, 1, 1]
    scores = [0.9, 0.7, 0.4, 0.6, 0.8]  # threshold 0.5: all detected but the one at 2 %
    masks = _masks([0, 0, 5, 2, 50])
    ev = _eval(scores, labels, masks=masks)
    per = ea.defect_areas(ev)
    np.testing.assert_allclose(per["area"], [0.0, 0.05, 0.02, 0.5])
    assert per["detected"].tolist() == [True, False, True, True]
    table = ea.detection_by_area(ev, bins=(0.0, 0.03, 0.1, 1.0))
    assert table["bucket"].tolist()[0] == "empty mask"
    assert table["n"].tolist() == [1, 1, 1, 1]
    assert table["detected"].tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(table["rate"], [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(table["hi"].iloc[1:], [0.03, 0.1, 1.0])
    fig = ea.area_figure(table, title="t")
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].texts] == ["1/1", "1/1", "0/1", "1/1"]


def test_detection_by_area_quantiles_and_edge_cases() -> None:
    masks = _masks([1, 2, 3, 4, 10, 20, 30, 40])
    scores = [0.1, 0.2, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9]  # the two smallest defects are missed
    ev = _eval(scores, [1] * 8, masks=masks)
    table = ea.detection_by_area(ev, bins=2)
    assert table["n"].tolist() == [4, 4]
    assert table["detected"].tolist() == [2, 4]
    assert table["rate"].tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="increasing"):
        ea.detection_by_area(ev, bins=(0.1, 0.05))
    with pytest.raises(ValueError, match="bins=0"):
        ea.detection_by_area(ev, bins=0)
    outside = ea.detection_by_area(ev, bins=(0.0, 0.05))
    assert outside["bucket"].tolist()[-1] == "outside the edges"
    assert outside["n"].sum() == 8


def test_no_masks_returns_none(capsys: pytest.CaptureFixture[str]) -> None:
    ev = _eval([0.9, 0.1], [0, 1])
    assert ea.defect_areas(ev) is None
    assert ea.detection_by_area(ev) is None
    assert ea.area_figure(None) is None
    assert ea.area_figure(pd.DataFrame()) is None
    assert ea.show_area_detection(ev) is None
    assert "no ground-truth masks" in capsys.readouterr().out
