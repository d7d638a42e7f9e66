"""Tests for the seed-000 convolutional autoencoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adlib.models.conv_ae import ConvAutoencoder, count_parameters, layout


def test_seed_shapes_256() -> None:
    model = ConvAutoencoder(latent_dim=500, image_size=256).eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        z = model.encode(x)
        y = model.decode(z)
    assert z.shape == (1, 500, 1, 1)
    assert y.shape == (1, 3, 256, 256)
    # the seed's bottleneck: an 8x8 convolution to the latent code
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert convs[-1].kernel_size == (8, 8) and convs[-1].out_channels == 500
    assert sum(c.stride == (2, 2) for c in convs) == 5
    deconvs = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert sum(d.stride == (2, 2) for d in deconvs) == 5


def test_batchnorm_and_activation_settings() -> None:
    model = ConvAutoencoder(latent_dim=20, image_size=64)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(b.momentum == 0.1 and b.eps == 1e-6 for b in bns)
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.01 for a in acts)
    # every BatchNorm matches the channels of the layer before it (the Table-2 typo is fixed)
    layers = list(model.encoder) + list(model.decoder)
    for prev, cur in zip(layers, layers[1:], strict=False):
        if isinstance(cur, nn.BatchNorm2d):
            assert cur.num_features == prev.out_channels


@pytest.mark.parametrize("latent", [7, 50, 1000])
def test_latent_size_is_a_parameter(latent: int) -> None:
    model = ConvAutoencoder(latent_dim=latent, image_size=64).eval()
    with torch.no_grad():
        z = model.encode(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, latent, 1, 1)


@pytest.mark.parametrize(("size", "stems", "kernel"), [(32, 0, 2), (64, 0, 4), (128, 0, 8), (256, 1, 8), (512, 2, 8)])
def test_layout_scaling(size: int, stems: int, kernel: int) -> None:
    assert layout(size) == (stems, kernel)


@pytest.mark.parametrize("size", [64, 128])
def test_smaller_sizes_round_trip(size: int) -> None:
    model = ConvAutoencoder(latent_dim=32, image_size=size, channels=1).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, size, size))
    assert y.shape == (1, 1, size, size)


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError, match="power of two"):
        ConvAutoencoder(image_size=100)
    model = ConvAutoencoder(latent_dim=8, image_size=64)
    with pytest.raises(ValueError, match="built for 64x64"):
        model(torch.rand(1, 3, 32, 32))


def test_latent_changes_parameter_count() -> None:
    small = count_parameters(ConvAutoencoder(latent_dim=50, image_size=64))
    big = count_parameters(ConvAutoencoder(latent_dim=1000, image_size=64))
    assert big > small


def test_training_steps_reduce_loss() -> None:
    torch.manual_seed(0)
    model = ConvAutoencoder(latent_dim=16, image_size=32)
    x = torch.rand(8, 3, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.mean((model(x) - x) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
