"""Unit tests for the UNet-like autoencoder (seed 002)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adlib.models.unet_ae import (
    ENCODER_KERNELS,
    VARIANTS,
    UNetAE,
    UNetAEConfigError,
    count_parameters,
)


@pytest.mark.parametrize("size", [(512, 512), (200, 160), (33, 17), (127, 255), (1, 1)])
def test_output_has_input_size(size: tuple[int, int]) -> None:
    model = UNetAE(base_channels=2).eval()
    x = torch.rand(1, 1, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_colour_input_and_wrong_channels() -> None:
    model = UNetAE(in_channels=3, base_channels=2).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 40, 24)).shape == (2, 3, 40, 24)
    with pytest.raises(UNetAEConfigError, match="expected a"):
        model(torch.rand(2, 1, 40, 24))


def test_kernels_decrease_in_encoder_and_mirror_in_decoder() -> None:
    model = UNetAE(base_channels=2)
    enc = [block[0].kernel_size[0] for block in model.encoder]
    dec = [layer.conv.kernel_size[0] for layer in model.decoder] + [model.out.kernel_size[0]]
    assert enc == list(ENCODER_KERNELS) == [11, 9, 7, 5, 3]
    assert dec == enc[::-1]
    # BatchNorm + ReLU after every encoder and decoder layer
    for block in model.encoder:
        assert isinstance(block[1], nn.BatchNorm2d) and isinstance(block[2], nn.ReLU)
    for layer in model.decoder:
        assert isinstance(layer.bn, nn.BatchNorm2d) and isinstance(layer.act, nn.ReLU)


def test_skip_variants_change_decoder_inputs() -> None:
    full = UNetAE.from_variant("unet-ae", base_channels=4)
    deep = UNetAE.from_variant("unet-ae-deepskip", base_channels=4)
    none = UNetAE.from_variant("unet-ae-noskip", base_channels=4)
    assert full.skips == (7, 8, 9) and deep.skips == (7,) and none.skips == ()
    ins = [[layer.conv.in_channels for layer in m.decoder] for m in (full, deep, none)]
    # x6 never has a skip; x7..x9 are wider exactly where a skip is concatenated
    assert ins[0][0] == ins[1][0] == ins[2][0]
    assert ins[0][1:] > ins[2][1:] and ins[1][1] > ins[2][1] and ins[1][2:] == ins[2][2:]
    assert count_parameters(full) > count_parameters(deep) > count_parameters(none)
    assert set(VARIANTS) >= {"unet-ae", "unet-ae-deepskip", "unet-ae-noskip"}


def test_skips_carry_information_the_bottleneck_does_not() -> None:
    """Perturbing only a skip path must change the output of the skip model, not of the no-skip one."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 64, 64)
    for name, expect_change in (("unet-ae", True), ("unet-ae-noskip", False)):
        model = UNetAE.from_variant(name, base_channels=2).eval()
        feats: dict[str, torch.Tensor] = {}

        def hook(_m, _i, out, feats=feats):  # noqa: ANN001
            feats["x2"] = out
            return out + 1.0  # perturb x2's output, which feeds x3 *and* the skip into x9

        # Freeze the downstream encoder path: the perturbation then reaches the output only via x9.
        handle = model.encoder[1].register_forward_hook(hook)
        model.encoder[2].register_forward_pre_hook(lambda _m, inp, feats=feats: (feats["x2"],))
        with torch.no_grad():
            perturbed = model(x)
        handle.remove()
        model2 = UNetAE.from_variant(name, base_channels=2).eval()
        model2.load_state_dict(model.state_dict())
        with torch.no_grad():
            clean = model2(x)
        changed = not torch.allclose(perturbed, clean)
        assert changed == expect_change, name


def test_invalid_arguments() -> None:
    with pytest.raises(UNetAEConfigError, match="cannot take a skip"):
        UNetAE(skips=(6,))
    with pytest.raises(UNetAEConfigError, match="skip_dropout"):
        UNetAE(skip_dropout=1.0)
    with pytest.raises(UNetAEConfigError, match="Unknown variant"):
        UNetAE.from_variant("unet-ae-bogus")
    with pytest.raises(UNetAEConfigError, match="must be >= 1"):
        UNetAE(base_channels=0)


def test_skip_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = UNetAE(base_channels=2, skip_dropout=0.5)
    x = torch.rand(2, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # deterministic at eval time
    model.train()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert not torch.allclose(a, b)


def test_training_step_reduces_loss() -> None:
    torch.manual_seed(0)
    model = UNetAE(base_channels=4)
    x = torch.rand(4, 1, 48, 40) * 0.5 + 0.25
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = nn.functional.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
