"""The three patch autoencoders of seed 003 (SEM nanofibres, 32x32 patches).

* ``sae``: standard autoencoder, loss ``||x - AE(x)||^2`` (seed eq. 1).
* ``dae``: the same network trained on noisy inputs, ``||x - AE(x + eps)||^2``,
  ``eps ~ N(0, sigma^2)`` (seed eq. 2).
* ``cvae``: convolutional variational autoencoder: the encoder predicts the mean and
  log-variance of ``q(z|x)``, ``z`` is drawn with the reparameterisation trick and the loss is
  reconstruction + KL to ``N(0, I)`` (seed eq. 3). No BatchNorm, as in the seed.
* ``ssim-ae`` (beyond the seed): the SAE's network trained to maximise the structural similarity
  of its reconstruction, loss ``1 - mean SSIM(x, AE(x))`` (Bergmann et al. 2019, who report an
  SSIM autoencoder far above an L2 one on the same SEM images).

"Equal capacity" (seed, section *Autoencoders*): the three share the convolution stack and the
latent size; SAE and DAE are the same class, the CVAE drops BatchNorm and adds a second linear
head for the log-variance. The seed gives no layer table, so the stack is ours: three stride-2
3x3 convolutions (32 -> 16 -> 8 -> 4 px), a linear bottleneck, and the mirrored transposed
convolutions with a sigmoid output (patches are in ``[0, 1]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from adlib.maps import ssim_loss

Kind = Literal["sae", "dae", "cvae", "ssim-ae"]
KINDS: tuple[str, ...] = ("sae", "dae", "cvae")
"""The seed's three autoencoders."""
SSIM_KIND = "ssim-ae"
ALL_KINDS: tuple[str, ...] = (*KINDS, SSIM_KIND)
"""The seed's three and the SSIM autoencoder."""
SSIM_WINDOW = 7
"""SSIM window side for 32x32 patches (11 in Bergmann et al., who used 128x128 patches)."""
LEAKY_SLOPE = 0.2


def _block(cin: int, cout: int, batchnorm: bool, transpose: bool = False) -> list[nn.Module]:
    conv = (nn.ConvTranspose2d(cin, cout, 4, 2, 1) if transpose
            else nn.Conv2d(cin, cout, 3, 2, 1))
    layers: list[nn.Module] = [conv]
    if batchnorm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    return layers


def _check_patch(patch_size: int, n_down: int) -> None:
    if patch_size % (2 ** n_down) or patch_size < 2 ** n_down:
        raise ValueError(f"patch_size must be a multiple of {2 ** n_down} (3 stride-2 layers), "
                         f"got {patch_size}; use 32 as in seed 003.")


class PatchAutoencoder(nn.Module):
    """Convolutional autoencoder for small patches (SAE and DAE of seed 003).

    Args:
        channels: image channels (1 for SEM).
        patch_size: patch side, a multiple of 8 (32 in the seed).
        base: channels of the first convolution (doubled at each of the 3 stride-2 layers).
        latent_dim: size of the linear bottleneck.
        batchnorm: BatchNorm after every hidden convolution (True for SAE/DAE).
    """

    variational = False

    def __init__(self, channels: int = 1, patch_size: int = 32, base: int = 16,
                 latent_dim: int = 64, batchnorm: bool = True) -> None:
        super().__init__()
        _check_patch(patch_size, 3)
        self.channels, self.patch_size, self.latent_dim = channels, patch_size, latent_dim
        widths = [base, 2 * base, 4 * base]
        self._feat = (widths[-1], patch_size // 8, patch_size // 8)
        n_feat = widths[-1] * (patch_size // 8) ** 2
        self.encoder = nn.Sequential(
            *_block(channels, widths[0], batchnorm), *_block(widths[0], widths[1], batchnorm),
            *_block(widths[1], widths[2], batchnorm), nn.Flatten())
        self.to_latent = nn.Linear(n_feat, latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, n_feat), nn.LeakyReLU(LEAKY_SLOPE))
        self.decoder = nn.Sequential(
            *_block(widths[2], widths[1], batchnorm, transpose=True),
            *_block(widths[1], widths[0], batchnorm, transpose=True),
            nn.ConvTranspose2d(widths[0], channels, 4, 2, 1), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, P, P) -> (B, latent_dim) code."""
        return self.to_latent(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, P, P) reconstruction in ``[0, 1]``."""
        return self.decoder(self.from_latent(z).view(-1, *self._feat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``AE(x)``."""
        return self.decode(self.encode(x))


class PatchVAE(PatchAutoencoder):
    """Convolutional VAE of seed 003 (same stack, no BatchNorm, mean + log-variance heads).

    ``forward`` samples ``z`` in training mode and decodes the mean in eval mode, unless
    ``sample`` says otherwise; :meth:`forward_stats` also returns ``mu`` and ``logvar``.
    """

    variational = True

    def __init__(self, channels: int = 1, patch_size: int = 32, base: int = 16,
                 latent_dim: int = 64) -> None:
        super().__init__(channels, patch_size, base, latent_dim, batchnorm=False)
        self.to_logvar = nn.Linear(self.to_latent.in_features, latent_dim)

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z|x)``, each (B, latent_dim)."""
        h = self.encoder(x)
        return self.to_latent(h), self.to_logvar(h).clamp(-10.0, 10.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean (deterministic code)."""
        return self.encode_stats(x)[0]

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` (differentiable in mu, logvar)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward_stats(self, x: torch.Tensor, sample: bool | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(reconstruction, mu, logvar)``; ``sample=None`` samples only in training mode."""
        mu, logvar = self.encode_stats(x)
        sample = self.training if sample is None else sample
        z = self.reparameterize(mu, logvar) if sample else mu
        return self.decode(z), mu, logvar

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> torch.Tensor:
        """Reconstruction (sampled in training mode, from the mean in eval mode)."""
        return self.forward_stats(x, sample)[0]


def build_patch_model(kind: Kind | str, channels: int = 1, patch_size: int = 32, base: int = 16,
                      latent_dim: int = 64) -> PatchAutoencoder:
    """The model for ``kind`` in :data:`ALL_KINDS` (``dae`` and ``ssim-ae`` differ from ``sae``
    only in training).

    Raises:
        ValueError: unknown kind.
    """
    if kind in ("sae", "dae", SSIM_KIND):
        return PatchAutoencoder(channels, patch_size, base, latent_dim, batchnorm=True)
    if kind == "cvae":
        return PatchVAE(channels, patch_size, base, latent_dim)
    raise ValueError(f"Unknown patch autoencoder {kind!r}: expected one of {', '.join(ALL_KINDS)}.")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over latent dims, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seed eq. 3 with a Gaussian decoder: ``(total, reconstruction, kl)``.

    The reconstruction term is the per-patch sum of squared errors (the Gaussian
    log-likelihood up to constants), so it is on the same per-patch scale as the KL; both are
    averaged over the batch. ``beta`` weights the KL (1 = the plain VAE).
    """
    rec = (recon - x).pow(2).flatten(1).sum(dim=1).mean()
    kl = kl_divergence(mu, logvar)
    return rec + beta * kl, rec, kl


def _image(batch: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    return batch["image"] if isinstance(batch, Mapping) else batch


def training_step(kind: Kind | str, noise_std: float = 0.1, beta: float = 1.0,
                  ssim_window: int = SSIM_WINDOW) -> Callable[[nn.Module, torch.Tensor | Mapping[str, torch.Tensor]], torch.Tensor]:
    """A ``step_fn(model, batch, ctx) -> loss`` for :func:`adlib.train.fit`.

    * ``sae``: ``mse(AE(x), x)``
    * ``dae``: ``mse(AE(x + N(0, noise_std^2)), x)`` (noisy input, clean target)
    * ``cvae``: :func:`vae_loss` divided by the pixels per patch (so that its scale matches the
      MSE of the other two in the logs; the optimum is unchanged).
    * ``ssim-ae``: ``1 - mean SSIM(AE(x), x)`` with an ``ssim_window`` Gaussian window.
    """
    if kind not in ALL_KINDS:
        raise ValueError(f"Unknown patch autoencoder {kind!r}: expected one of {', '.join(ALL_KINDS)}.")

    def step(model: nn.Module, batch: torch.Tensor | Mapping[str, torch.Tensor], ctx: Any = None) -> torch.Tensor:
        x = _image(batch)
        if kind == "cvae":
            recon, mu, logvar = model.forward_stats(x, sample=True)  # type: ignore[operator]
            total, _, _ = vae_loss(recon, x, mu, logvar, beta)
            return total / x[0].numel()
        if kind == SSIM_KIND:
            return ssim_loss(model(x), x, ssim_window)
        inp = x + noise_std * torch.randn_like(x) if kind == "dae" else x
        return F.mse_loss(model(inp), x)

    return step


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
