"""f-AnoGAN (Schlegl et al., 2019) with a small DCGAN trained as a WGAN with gradient penalty.

Two training steps, both on defect-free images only:

1. **GAN** (:class:`Generator`, :class:`Critic`): Wasserstein GAN with gradient penalty
   (Gulrajani et al., 2017). :func:`critic_step` runs on every batch, :func:`generator_step`
   on every ``n_critic``-th batch (the seed uses 5).
2. **Encoder** (:class:`Encoder`, "izi_f" architecture): maps an image to a latent code while
   the generator and critic stay frozen; loss = image residual + ``kappa`` * critic-feature
   residual (:func:`izif_loss`).

The anomaly score (:func:`anomaly_score`) is the encoder loss per image::

    A(x) = 1/n * ||x - G(E(x))||^2 + kappa/n_d * ||f(x) - f(G(E(x)))||^2

with ``f`` the critic's last feature layer. The pixel residual ``|x - G(E(x))|`` (mean over
channels) serves as an anomaly map.

Images are expected normalised to [-1, 1] (mean 0.5, std 0.5), matching the generator's
``tanh`` output.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "Critic",
    "Encoder",
    "Generator",
    "anomaly_score",
    "critic_step",
    "generator_step",
    "gradient_penalty",
    "izif_loss",
    "sample_latent",
]


def _n_stages(image_size: int) -> int:
    """Number of stride-2 stages between ``image_size`` and a 4x4 feature map."""
    stages = int(round(math.log2(image_size / 4))) if image_size >= 8 else 0
    if image_size < 8 or 4 * 2**stages != image_size:
        raise ValueError(
            f"image_size={image_size} is not supported: use 4 * 2**k with k >= 1 (8, 16, 32, 64, 128)."
        )
    return stages


def _widths(stages: int, width: int, max_width: int = 512) -> list[int]:
    """Channel widths from the image side (``width``) to the 4x4 side, doubling per stage."""
    return [min(width * 2**i, max_width) for i in range(stages)]


def sample_latent(n: int, latent_dim: int, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` latent codes from the prior, a standard normal ``N(0, I)``."""
    return torch.randn(n, latent_dim, device=device, generator=generator)


class Generator(nn.Module):
    """DCGAN generator: latent ``z`` (B, latent_dim) -> image (B, C, S, S) in [-1, 1].

    Args:
        latent_dim: size of ``z`` (the seed uses 100).
        channels: image channels (1 or 3).
        image_size: output side, ``4 * 2**k`` (64 in the seed).
        width: channels of the last hidden layer; doubled per stage towards the 4x4 map.
    """

    def __init__(self, latent_dim: int = 100, channels: int = 3, image_size: int = 64,
                 width: int = 64) -> None:
        super().__init__()
        stages = _n_stages(image_size)
        widths = _widths(stages, width)[::-1]  # 4x4 side first
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.channels = channels
        self.project = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Generate images from latent codes."""
        return self.body(self.project(z.view(z.shape[0], self.latent_dim, 1, 1)))


class _ConvStack(nn.Module):
    """Stride-2 convolutions from the image down to a 4x4 map (no batch norm: WGAN-GP-safe)."""

    def __init__(self, channels: int, image_size: int, width: int) -> None:
        super().__init__()
        widths = _widths(_n_stages(image_size), width)
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out_features = widths[-1] * 16

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x).flatten(1)


class Critic(nn.Module):
    """WGAN critic (the "discriminator"): image -> unbounded real score.

    :meth:`features` returns the last hidden layer (``f(x)`` in the f-AnoGAN score), flattened.
    """

    def __init__(self, channels: int = 3, image_size: int = 64, width: int = 64) -> None:
        super().__init__()
        self.stack = _ConvStack(channels, image_size, width)
        self.head = nn.Linear(self.stack.out_features, 1)

    def features(self, x: Tensor) -> Tensor:
        """Critic features ``f(x)``, shape (B, n_d)."""
        return self.stack(x)

    def forward(self, x: Tensor) -> Tensor:
        """Critic value per image, shape (B,)."""
        return self.head(self.features(x)).squeeze(1)


class Encoder(nn.Module):
    """f-AnoGAN encoder: image -> latent code, same convolutional trunk as the critic."""

    def __init__(self, latent_dim: int = 100, channels: int = 3, image_size: int = 64,
                 width: int = 64) -> None:
        super().__init__()
        self.stack = _ConvStack(channels, image_size, width)
        self.head = nn.Linear(self.stack.out_features, latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Latent code per image, shape (B, latent_dim)."""
        return self.head(self.stack(x))


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP penalty ``E[(||grad D(x_hat)||_2 - 1)^2]`` on random interpolates of real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_step(generator: Generator, critic: Critic, opt: torch.optim.Optimizer, real: Tensor,
                gp_weight: float = 10.0) -> dict[str, Tensor]:
    """One critic update on a batch of real images.

    Returns:
        ``{"critic_loss", "wasserstein", "gp"}`` as detached 0-d tensors (``float()`` them; left
        on the device so that a training step does not wait for the GPU); ``wasserstein`` =
        mean D(real) - mean D(fake), the critic's estimate of the Wasserstein-1 distance (should
        fall as G improves).
    """
    critic.train()
    with torch.no_grad():
        fake = generator(sample_latent(real.shape[0], generator.latent_dim, real.device))
    d_real = critic(real).mean()
    d_fake = critic(fake).mean()
    gp = gradient_penalty(critic, real, fake)
    loss = d_fake - d_real + gp_weight * gp
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"critic_loss": loss.detach(), "wasserstein": (d_real - d_fake).detach(),
            "gp": gp.detach()}


def generator_step(generator: Generator, critic: Critic, opt: torch.optim.Optimizer,
                   batch_size: int) -> dict[str, Tensor]:
    """One generator update: minimise ``-mean D(G(z))``. The critic's weights are not updated.

    Returns:
        ``{"generator_loss"}`` as a detached 0-d tensor (see :func:`critic_step`).
    """
    generator.train()
    critic.requires_grad_(False)
    try:
        z = sample_latent(batch_size, generator.latent_dim, next(generator.parameters()).device)
        loss = -critic(generator(z)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    finally:
        critic.requires_grad_(True)
    return {"generator_loss": loss.detach()}


def _residuals(encoder: Encoder, generator: Generator, critic: Critic,
               x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image image residual, feature residual and the reconstruction ``G(E(x))``."""
    recon = generator(encoder(x))
    img_res = ((x - recon) ** 2).flatten(1).mean(1)
    feat_res = ((critic.features(x) - critic.features(recon)) ** 2).mean(1)
    return img_res, feat_res, recon


def izif_loss(encoder: Encoder, generator: Generator, critic: Critic, x: Tensor,
              kappa: float = 1.0) -> Tensor:
    """izi_f encoder loss (batch mean): image MSE + ``kappa`` * critic-feature MSE.

    The generator and critic must be frozen by the caller (eval mode, no optimiser); gradients
    still flow through them into the encoder.
    """
    img_res, feat_res, _ = _residuals(encoder, generator, critic, x)
    return (img_res + kappa * feat_res).mean()


@torch.no_grad()
def anomaly_score(encoder: Encoder, generator: Generator, critic: Critic, x: Tensor,
                  kappa: float = 1.0) -> dict[str, Tensor]:
    """f-AnoGAN anomaly score for a batch of images (all three networks in eval mode).

    Returns:
        ``{"score": (B,), "image_residual": (B,), "feature_residual": (B,),
        "recon": (B, C, H, W), "map": (B, H, W)}``; ``map`` is ``|x - G(E(x))|``
        averaged over channels.
    """
    for net in (encoder, generator, critic):
        net.eval()
    img_res, feat_res, recon = _residuals(encoder, generator, critic, x)
    return {
        "score": img_res + kappa * feat_res,
        "image_residual": img_res,
        "feature_residual": feat_res,
        "recon": recon,
        "map": (x - recon).abs().mean(1),
    }
