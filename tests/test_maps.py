"""Tests for adlib.maps: residual scales, SSIM against scikit-image, smoothing, stitching, scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from adlib import maps as AM


def _pair(seed=0, n=2, c=3, h=24, w=20):
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, h, w)).astype(np.float32)
    r = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    return x, r


def test_l2_l1_values_scale_and_types():
    x = np.zeros((1, 3, 4, 4), np.float32)
    r = np.zeros_like(x)
    r[0, 0, 1, 1] = 1.0  # one channel fully wrong
    r[0, :, 2, 2] = 0.5  # all channels half wrong
    l2 = AM.residual_map(x, r, "l2")
    l1 = AM.residual_map(torch.from_numpy(x), torch.from_numpy(r), "l1")
    assert l2.shape == (1, 4, 4) and l2.dtype == np.float32 and isinstance(l1, np.ndarray)
    assert l2[0, 1, 1] == pytest.approx(1 / 3) and l2[0, 2, 2] == pytest.approx(0.25)
    assert l1[0, 2, 2] == pytest.approx(0.5)
    assert AM.residual_map(x, r, "l2", reduce_channels="max")[0, 1, 1] == pytest.approx(1.0)
    # the worst possible residual is 1 on [0, 1] images, 1 again with data_range=2 on [-1, 1]
    assert AM.residual_map(np.zeros((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), "l2").max() == 1.0
    assert AM.residual_map(-np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), "l2", data_range=2).max() == 1.0


def test_numpy_and_torch_agree_and_batching():
    x, r = _pair()
    for kind in ("l2", "l1", "ssim"):
        a = AM.residual_map(x, r, kind, batch_size=1)
        b = AM.residual_map(torch.from_numpy(x), torch.from_numpy(r), kind)
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_ssim_matches_skimage_interior():
    x, r = _pair(1, n=1, c=1, h=40, w=36)
    ours = 1 - AM.residual_map(x, r, "ssim")[0]
    _, ref = structural_similarity(x[0, 0], r[0, 0], data_range=1.0, gaussian_weights=True,
                                   sigma=1.5, use_sample_covariance=False, full=True)
    np.testing.assert_allclose(ours[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-4)
    ours_u = 1 - AM.residual_map(x, r, "ssim", window="uniform", window_size=7)[0]
    _, ref_u = structural_similarity(x[0, 0], r[0, 0], data_range=1.0, win_size=7,
                                     use_sample_covariance=False, full=True)
    np.testing.assert_allclose(ours_u[3:-3, 3:-3], ref_u[3:-3, 3:-3], atol=1e-4)


def test_ssim_identical_is_zero_and_loss_is_differentiable():
    x, r = _pair(2)
    assert np.abs(AM.residual_map(x, x, "ssim")).max() < 1e-5
    xt = torch.from_numpy(x)
    rt = torch.from_numpy(r).requires_grad_(True)
    loss = AM.ssim_loss(rt, xt)
    loss.backward()
    assert 0 < loss.item() < 2 and rt.grad is not None and torch.isfinite(rt.grad).all()
    assert AM.ssim_loss(xt, xt).item() == pytest.approx(0.0, abs=1e-5)


def test_small_images_and_errors():
    x, r = _pair(3, h=6, w=6)  # smaller than the 11x11 window
    assert AM.residual_map(x, r, "ssim").shape == (2, 6, 6)
    with pytest.raises(AM.MapError, match="uint8"):
        AM.residual_map(np.zeros((1, 1, 4, 4), np.uint8), np.zeros((1, 1, 4, 4), np.uint8))
    with pytest.raises(AM.MapError, match="shape"):
        AM.residual_map(x, r[:, :, :5])
    with pytest.raises(AM.MapError, match="odd"):
        AM.residual_map(x, r, "ssim", window_size=4)


def test_gaussian_smooth():
    rng = np.random.default_rng(0)
    m = rng.random((3, 32, 32)).astype(np.float32)
    s = AM.gaussian_smooth(m, 2.0)
    assert s.shape == m.shape and s.std() < m.std() / 2
    np.testing.assert_allclose(AM.gaussian_smooth(np.full((1, 8, 8), 0.3), 1.0), 0.3, atol=1e-6)
    spike = np.zeros((1, 9, 9), np.float32)
    spike[0, 4, 4] = 1
    out = AM.gaussian_smooth(torch.from_numpy(spike), 1.0)
    assert out.sum() == pytest.approx(1.0, abs=1e-4) and out[0, 4, 4] < 0.2
    smoothed = AM.residual_map(*_pair(), "l2", smooth_sigma=1.0)
    assert smoothed.std() < AM.residual_map(*_pair(), "l2").std()


def test_stitch_patches_scores_and_maps():
    # 2x2 grid of 4x4 patches, no overlap
    coords = [(0, 0), (0, 4), (4, 0), (4, 4)]
    out = AM.stitch_patches([1, 2, 3, 4], coords, (8, 8), 4)
    assert out[0, 0] == 1 and out[0, 7] == 2 and out[7, 0] == 3 and out[7, 7] == 4
    # overlapping patches: the overlap gets the mean
    out = AM.stitch_patches([0.0, 1.0], [(0, 0), (0, 2)], (4, 6), 4, fill=-1)
    assert out[0, 0] == 0 and out[0, 3] == pytest.approx(0.5) and out[0, 5] == 1
    # patch maps on several images
    pm = np.arange(2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2)
    out = AM.stitch_patches(pm, [(1, 0, 0), (0, 2, 2)], (2, 4, 4), (2, 2))
    assert out.shape == (2, 4, 4)
    np.testing.assert_array_equal(out[1, :2, :2], pm[0])
    np.testing.assert_array_equal(out[0, 2:, 2:], pm[1])
    assert out[0, 0, 0] == 0.0  # uncovered -> fill
    with pytest.raises(AM.MapError, match="outside"):
        AM.stitch_patches([1.0], [(6, 6)], (8, 8), 4)


def test_image_scores():
    m = np.zeros((2, 10, 10), np.float32)
    m[0, 0, :5] = [1, 2, 3, 4, 5]
    m[1] = 0.5
    assert AM.image_scores(m, "max").tolist() == [5.0, 0.5]
    assert AM.image_scores(m, "mean")[0] == pytest.approx(15 / 100)
    assert AM.image_scores(m, "topk_mean", k=2)[0] == pytest.approx(4.5)
    assert AM.image_scores(m, "topk_mean", k=0.05)[0] == pytest.approx(3.0)
    with pytest.raises(AM.MapError):
        AM.image_scores(m, "median")


def test_separable_ssim_equals_the_2d_window_definition():
    """The fast separable SSIM gives what a direct 2-D Gaussian window gives (reference below)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 20, 24), torch.rand(2, 3, 20, 24)
    k, sigma = 11, 1.5
    coords = torch.arange(k, dtype=torch.float32) - k // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, k, k)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (5, 5, 5, 5), mode="reflect"), w, groups=3)

    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    got = AM.ssim_map(x, y)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-4)
