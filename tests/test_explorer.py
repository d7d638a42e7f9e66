"""Threshold explorer: static fallback when headless, live widget when forced."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from adlib import explorer  # noqa: E402
from adlib.metrics import pixel_prf  # noqa: E402


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    images = rng.random((5, 16, 16)).astype(np.float32)
    maps = rng.random((5, 16, 16)).astype(np.float32)
    gt = np.zeros((5, 16, 16), dtype=bool)
    gt[1:3, 3:8, 3:8] = True
    maps[gt] += 1.0
    return images, maps, gt


def test_plain_python_process_gets_static_figure():
    code = (
        "import numpy as np\n"
        "from adlib.explorer import threshold_explorer, interactive_frontend\n"
        "m = np.random.default_rng(0).random((3, 8, 8)); g = m > 0.9\n"
        "out = threshold_explorer(m, m, g)\n"
        "print(type(out).__name__, interactive_frontend(), len(out.axes))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("ADLIB_STATIC", "ADLIB_INTERACTIVE", "MPLBACKEND")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    kind, interactive, n_axes = done.stdout.split()
    assert kind == "Figure" and interactive == "False" and int(n_axes) > 3


def test_frontend_rules(monkeypatch):
    monkeypatch.delenv("ADLIB_STATIC", raising=False)
    monkeypatch.delenv("ADLIB_INTERACTIVE", raising=False)
    assert explorer.interactive_frontend() is False  # pytest: no kernel
    monkeypatch.setenv("ADLIB_INTERACTIVE", "1")
    assert explorer.interactive_frontend() is True
    monkeypatch.setenv("ADLIB_STATIC", "1")
    assert explorer.interactive_frontend() is False  # static wins


def test_static_figure_content(data, monkeypatch):
    images, maps, gt = data
    monkeypatch.setenv("ADLIB_STATIC", "1")
    fig = explorer.threshold_explorer(images, maps, gt, thresholds=np.linspace(0.2, 1.8, 9),
                                      initial=0.95, max_images=3)
    assert isinstance(fig, Figure)
    f1_ax = fig.axes[-1]
    (curve,) = [ln for ln in f1_ax.lines if ln.get_label().startswith("pixel F1")]
    expected = [pixel_prf(maps, gt, t).f1 for t in np.linspace(0.2, 1.8, 9)]
    np.testing.assert_allclose(curve.get_ydata(), expected)
    tau_labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel().startswith("\u03c4=")]
    assert "\u03c4=0.95" in tau_labels  # the initial (e.g. validation) threshold is one of the rows
    # Defective images come first.
    contours = [ax for ax in fig.axes[:3] if ax.collections]
    assert len(contours) >= 2


def test_static_without_masks(data):
    images, maps, _ = data
    fig = explorer.threshold_explorer(images, maps, None, static=True)
    texts = [t.get_text() for t in fig.axes[-1].texts]
    assert any("not computable" in t for t in texts)


def test_widget_updates_f1_live(data):
    pytest.importorskip("ipywidgets")
    images, maps, gt = data
    box = explorer.threshold_explorer(images, maps, gt, initial=0.5, static=False)
    slider, label = box.children[0].children
    assert f"{pixel_prf(maps, gt, 0.5).f1:.3f}" in label.value
    slider.value = 1.2
    assert f"{pixel_prf(maps, gt, slider.value).f1:.3f}" in label.value


def test_bad_shapes_raise(data):
    images, maps, gt = data
    with pytest.raises(ValueError, match="do not match"):
        explorer.threshold_explorer(images, maps, gt[:, :8], static=True)
    with pytest.raises(ValueError, match="images"):
        explorer.threshold_explorer(images[:2], maps, gt, static=True)
