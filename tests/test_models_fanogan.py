"""Unit tests for the f-AnoGAN networks and the seed-001 autoencoder (tiny sizes, CPU, seconds)."""

from __future__ import annotations

import pytest
import torch

from adlib.models import fanogan as F
from adlib.models.ae256 import ConvAutoencoder, reconstruction_errors


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_gan_shapes(size: int) -> None:
    g = F.Generator(latent_dim=8, channels=3, image_size=size, width=8)
    d = F.Critic(channels=3, image_size=size, width=8)
    e = F.Encoder(latent_dim=8, channels=3, image_size=size, width=8)
    img = g(F.sample_latent(4, 8))
    assert img.shape == (4, 3, size, size)
    assert img.min() >= -1 and img.max() <= 1
    assert d(img).shape == (4,)
    assert d.features(img).shape[0] == 4 and d.features(img).ndim == 2
    assert e(img).shape == (4, 8)


@pytest.mark.parametrize("size", [4, 48, 100])
def test_gan_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="image_size"):
        F.Generator(image_size=size)


def test_gradient_penalty_zero_for_unit_gradient() -> None:
    """A linear critic with a unit-norm weight has gradient norm 1 everywhere: penalty 0."""

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, 3, 4, 4))
            with torch.no_grad():
                self.w[0, 0, 0, 0] = 1.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x * self.w).flatten(1).sum(1)

    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    assert F.gradient_penalty(Linear(), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic = Linear()
        critic.w.mul_(3.0)  # gradient norm 3 -> penalty (3 - 1)^2 = 4
    assert F.gradient_penalty(critic, real, fake).item() == pytest.approx(4.0, rel=1e-5)


def test_critic_and_generator_steps_update_only_their_network() -> None:
    g = F.Generator(latent_dim=8, channels=1, image_size=16, width=8)
    d = F.Critic(channels=1, image_size=16, width=8)
    opt_g = torch.optim.Adam(g.parameters(), 1e-3)
    opt_d = torch.optim.Adam(d.parameters(), 1e-3)
    real = torch.rand(6, 1, 16, 16) * 2 - 1

    g_before = [p.clone() for p in g.parameters()]
    d_before = [p.clone() for p in d.parameters()]
    logs = F.critic_step(g, d, opt_d, real)
    assert set(logs) == {"critic_loss", "wasserstein", "gp"}
    # detached 0-d tensors: fit() converts them once per epoch (no host sync per step)
    assert all(v.ndim == 0 and not v.requires_grad for v in logs.values())
    assert all(torch.equal(a, b) for a, b in zip(g_before, g.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, d.parameters(), strict=True))

    d_before = [p.clone() for p in d.parameters()]
    logs = F.generator_step(g, d, opt_g, batch_size=6)
    assert "generator_loss" in logs
    assert all(torch.equal(a, b) for a, b in zip(d_before, d.parameters(), strict=True))
    assert all(p.requires_grad for p in d.parameters()), "critic must be unfrozen afterwards"


def test_critic_learns_to_separate_real_from_fake() -> None:
    """A few critic steps against a fixed generator raise the Wasserstein estimate."""
    g = F.Generator(latent_dim=8, channels=1, image_size=16, width=8)
    d = F.Critic(channels=1, image_size=16, width=8)
    opt_d = torch.optim.Adam(d.parameters(), 1e-3, betas=(0.5, 0.9))
    real = torch.full((16, 1, 16, 16), 0.8)
    first = F.critic_step(g, d, opt_d, real)["wasserstein"]
    for _ in range(30):
        last = F.critic_step(g, d, opt_d, real)["wasserstein"]
    assert last > first + 0.1


def test_izif_encoder_training_reduces_loss_and_keeps_gan_frozen() -> None:
    g = F.Generator(latent_dim=8, channels=1, image_size=16, width=8).eval().requires_grad_(False)
    d = F.Critic(channels=1, image_size=16, width=8).eval().requires_grad_(False)
    e = F.Encoder(latent_dim=8, channels=1, image_size=16, width=8)
    x = g(F.sample_latent(16, 8)).detach()  # images the generator can produce exactly
    opt = torch.optim.Adam(e.parameters(), 3e-3)
    g_before = [p.clone() for p in g.parameters()]
    first = F.izif_loss(e, g, d, x, kappa=1.0).item()
    for _ in range(40):
        loss = F.izif_loss(e, g, d, x, kappa=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
    assert all(torch.equal(a, b) for a, b in zip(g_before, g.parameters(), strict=True))


def test_anomaly_score_matches_formula() -> None:
    g = F.Generator(latent_dim=8, channels=3, image_size=16, width=8).eval()
    d = F.Critic(channels=3, image_size=16, width=8).eval()
    e = F.Encoder(latent_dim=8, channels=3, image_size=16, width=8).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    out = F.anomaly_score(e, g, d, x, kappa=0.5)
    with torch.no_grad():
        recon = g(e(x))
        n = x[0].numel()
        fx, fr = d.features(x), d.features(recon)
        expected = ((x - recon) ** 2).flatten(1).sum(1) / n + 0.5 * ((fx - fr) ** 2).sum(1) / fx.shape[1]
    torch.testing.assert_close(out["score"], expected)
    assert out["map"].shape == (3, 16, 16)
    torch.testing.assert_close(out["map"], (x - recon).abs().mean(1))


@pytest.mark.parametrize(("size", "depth"), [(32, None), (64, 3), (256, None)])
def test_autoencoder_shapes(size: int, depth: int | None) -> None:
    ae = ConvAutoencoder(image_size=size, channels=3, latent_dim=16, width=4, depth=depth)
    x = torch.rand(2, 3, size, size) * 2 - 1
    assert ae.encode(x).shape == (2, 16)
    y = ae(x)
    assert y.shape == x.shape and y.abs().max() <= 1


def test_autoencoder_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="image_size"):
        ConvAutoencoder(image_size=100, depth=3)


def test_autoencoder_training_step_reduces_loss() -> None:
    ae = ConvAutoencoder(image_size=16, channels=1, latent_dim=8, width=8)
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    opt = torch.optim.Adam(ae.parameters(), 1e-3)
    first = reconstruction_errors(ae, x)["score"].mean().item()
    ae.train()
    for _ in range(30):
        loss = ((ae(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = reconstruction_errors(ae, x)
    assert out["score"].mean().item() < first
    assert out["map"].shape == (8, 16, 16)
    torch.testing.assert_close(out["score"], out["map"].flatten(1).mean(1))
