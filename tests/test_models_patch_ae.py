"""Tests for the seed-003 patch autoencoders and the Remez-style feature denoiser."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adlib.models.denoiser import FeatureDenoiser, denoiser_loss, denoiser_step
from adlib.models.patch_ae import (
    KINDS,
    PatchVAE,
    build_patch_model,
    count_parameters,
    kl_divergence,
    training_step,
    vae_loss,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the test machine is shared


def _stripes(n: int, size: int = 16) -> torch.Tensor:
    """Patches with structure (dark/bright stripes): learnable, unlike white noise."""
    row = (torch.arange(size) // 4 % 2).float() * 0.8 + 0.1
    return row.view(1, 1, 1, size).expand(n, 1, size, size).clone()


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_range(kind: str) -> None:
    model = build_patch_model(kind, latent_dim=16, base=4).eval()
    x = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        y = model(x)
        z = model.encode(x)
    assert y.shape == x.shape
    assert z.shape == (5, 16)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_equal_capacity_and_batchnorm() -> None:
    sae, dae, cvae = (build_patch_model(k, base=8, latent_dim=32) for k in KINDS)
    assert count_parameters(sae) == count_parameters(dae)
    assert any(isinstance(m, nn.BatchNorm2d) for m in sae.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in cvae.modules())
    # same convolution stack: the CVAE differs only by the missing BatchNorm and the log-variance head
    convs = [type(m) for m in sae.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs == [type(m) for m in cvae.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    bn = sum(p.numel() for m in sae.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    head = count_parameters(cvae.to_logvar)
    assert count_parameters(cvae) == count_parameters(sae) - bn + head


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        build_patch_model("sae", patch_size=20)
    with pytest.raises(ValueError, match="Unknown"):
        build_patch_model("gan")
    with pytest.raises(ValueError, match="Unknown"):
        training_step("gan")
    with pytest.raises(ValueError):
        FeatureDenoiser(depth=0)


def test_vae_sampling_modes() -> None:
    torch.manual_seed(0)
    vae = PatchVAE(base=8, latent_dim=8)
    x = torch.rand(4, 1, 32, 32)
    vae.eval()
    with torch.no_grad():
        assert torch.equal(vae(x), vae(x))  # eval: decodes the mean
        a, b = vae(x, sample=True), vae(x, sample=True)
    assert not torch.equal(a, b)  # sampling draws new z
    vae.train()
    mu, logvar = torch.zeros(3, 8, requires_grad=True), torch.zeros(3, 8, requires_grad=True)
    vae.reparameterize(mu, logvar).sum().backward()
    assert mu.grad is not None and logvar.grad is not None  # the reparameterisation is differentiable


def test_kl_and_vae_loss() -> None:
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    assert float(kl_divergence(mu, logvar)) == pytest.approx(0.0)
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension
    assert float(kl_divergence(torch.ones(2, 4), logvar)) == pytest.approx(2.0)
    x = torch.zeros(2, 1, 4, 4)
    total, rec, kl = vae_loss(torch.ones_like(x), x, torch.ones(2, 4), logvar, beta=0.5)
    assert float(rec) == pytest.approx(16.0)  # per-patch sum of squared errors
    assert float(total) == pytest.approx(16.0 + 0.5 * 2.0)


@pytest.mark.parametrize("kind", KINDS)
def test_training_step_reduces_loss(kind: str) -> None:
    torch.manual_seed(0)
    model = build_patch_model(kind, patch_size=16, base=4, latent_dim=4)
    x = _stripes(8)
    step = training_step(kind, noise_std=0.05, beta=0.01)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = step(model, {"image": x})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_dae_step_uses_noisy_input() -> None:
    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: torch.Tensor | None = None
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen = x
            return x * self.w

    x = torch.full((2, 1, 8, 8), 0.5)
    spy = Spy()
    training_step("sae")(spy, {"image": x})
    assert torch.equal(spy.seen, x)
    training_step("dae", noise_std=0.1)(spy, {"image": x})
    assert not torch.equal(spy.seen, x)
    assert float((spy.seen - x).std()) == pytest.approx(0.1, rel=0.5)


def test_denoiser_structure_and_identity_at_init() -> None:
    den = FeatureDenoiser(depth=5, width=8)
    convs3 = [m for m in den.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    convs1 = [m for m in den.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(convs3) == 5 and len(convs1) == 5  # one 1x1 noise estimate per layer
    x = torch.rand(2, 1, 32, 32)
    out = den(x)
    assert out.denoised.shape == x.shape and out.mask.shape == x.shape
    assert torch.equal(out.denoised, x) and out.mask.abs().max().item() == 0.0


def test_denoiser_mask_is_sum_of_layer_estimates() -> None:
    torch.manual_seed(0)
    den = FeatureDenoiser(depth=4, width=6, zero_init_heads=False)
    x = torch.rand(3, 1, 16, 16)
    parts = den.layer_masks(x)
    out = den(x)
    assert torch.allclose(out.mask, sum(parts), atol=1e-6)
    assert torch.allclose(out.denoised, x + out.mask, atol=1e-6)
    assert torch.allclose(den(x, layers=2).mask, parts[0] + parts[1], atol=1e-6)


def test_denoiser_step_trains_towards_original() -> None:
    """Seed eq. 6: the target is the original x, not the AE's reconstruction."""
    torch.manual_seed(0)
    x = _stripes(4)
    recon = 0.5 * x + 0.25  # a washed-out "reconstruction"
    den = FeatureDenoiser(depth=3, width=8)
    step = denoiser_step(noise_std=0.0)
    before = step(den, {"image": x, "recon": recon}).item()
    assert before == pytest.approx(float(denoiser_loss(recon, x)), rel=1e-5)  # identity at init
    opt = torch.optim.Adam(den.parameters(), lr=3e-3)
    for _ in range(30):
        loss = step(den, {"image": x, "recon": recon})
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert step(den, {"image": x, "recon": recon}).item() < 0.5 * before
    # with an autoencoder and no precomputed recon, the AE is frozen and used in the step
    ae = build_patch_model("sae", patch_size=16, base=4, latent_dim=4)
    step_ae = denoiser_step(ae, noise_std=0.05)
    assert all(not p.requires_grad for p in ae.parameters())
    assert torch.isfinite(step_ae(den, {"image": x}))
    with pytest.raises(ValueError, match="recon"):
        denoiser_step(None)(den, {"image": x})


def test_ssim_autoencoder_is_the_sae_network_with_the_ssim_loss() -> None:
    from adlib.maps import ssim_loss
    from adlib.models.patch_ae import ALL_KINDS, SSIM_KIND

    assert ALL_KINDS == (*KINDS, SSIM_KIND) == ("sae", "dae", "cvae", "ssim-ae")
    sae, ssim = (build_patch_model(k, base=4, latent_dim=8) for k in ("sae", SSIM_KIND))
    assert count_parameters(sae) == count_parameters(ssim)
    x = _stripes(8, 32)
    torch.manual_seed(0)
    loss = training_step(SSIM_KIND, ssim_window=7)(ssim, x)
    assert loss.item() == pytest.approx(ssim_loss(ssim(x), x, 7).item(), rel=1e-5)
    assert 0.0 < loss.item() <= 2.0
    with pytest.raises(ValueError, match="ssim-ae"):
        training_step("ssim")
