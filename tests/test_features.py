"""Pretrained backbones, their weights and the two feature-embedding detectors (chapter 06)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adlib.features import weights
from adlib.features.backbones import FeatureExtractor, load_network
from adlib.features.embed import patch_embeddings, to_image_maps
from adlib.models.efficientnet_lite import STAGE_CHANNELS, STAGE_STRIDES, SameConv2d
from adlib.models.padim import Padim, random_channels
from adlib.models.patchcore import PatchCore, greedy_coreset, nearest_distances

CATS = set(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return load_network("efficientnet_lite0")


def _prepared(image: np.ndarray, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    x = np.asarray(Image.fromarray(image).resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
    return ((torch.from_numpy(x).permute(2, 0, 1)[None]) - mean) / std


def test_packaged_weights_match_their_recorded_sha256() -> None:
    path = weights.weights_file("efficientnet_lite0")
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == weights.WEIGHTS["efficientnet_lite0"].sha256


def test_weights_and_preprocessing_classify_photographs(lite0: torch.nn.Module) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    with torch.no_grad():
        cat = lite0(_prepared(skimage_data.chelsea())).softmax(1)[0]
        coffee = lite0(_prepared(skimage_data.coffee())).softmax(1)[0]
    assert set(cat.topk(3).indices.tolist()) & CATS, "chelsea (a cat) is not a cat class in the top 3"
    assert int(coffee.argmax()) == 967, "coffee should be 'espresso'"
    assert float(cat[list(CATS)].sum()) > 0.8


def test_same_padding_is_tensorflows() -> None:
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 6, 6))
    assert out.shape[-2:] == (3, 3)  # ceil(6 / 2)
    # TF pads (0, 1) here: the last row/column of outputs sees one padded zero, the first none
    assert out[0, 0, 0, 0] == 9 and out[0, 0, -1, -1] == 4


def test_feature_extractor_shapes_and_grey_input(lite0: torch.nn.Module) -> None:
    fe = FeatureExtractor("efficientnet_lite0", (2, 3, 5), network=lite0)
    feats = fe(torch.rand(2, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (STAGE_CHANNELS[s - 1], 64 // STAGE_STRIDES[s - 1], 64 // STAGE_STRIDES[s - 1]) for s in (2, 3, 5)]
    fe.train()
    assert not fe.training and not fe.net.training  # batch-norm statistics stay the pretrained ones
    with pytest.raises(ValueError, match="layers"):
        FeatureExtractor("efficientnet_lite0", (8,), network=lite0)


def test_wide_resnet_path_uses_torchvision_layers() -> None:
    from torchvision.models import wide_resnet50_2

    fe = FeatureExtractor("wide_resnet50_2", (2, 3), network=wide_resnet50_2(weights=None))
    a, b = fe(torch.rand(1, 3, 64, 64))
    assert a.shape == (1, 512, 8, 8) and b.shape == (1, 1024, 4, 4)


def test_default_backbone_needs_no_network(monkeypatch: pytest.MonkeyPatch, lite0: torch.nn.Module) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fe = FeatureExtractor("efficientnet_lite0", (3, 5))
    assert fe(torch.rand(1, 3, 32, 32))[0].shape[1] == 40


# --------------------------------------------------------------------------- downloadable weights


def _fake_entry(content: bytes, monkeypatch: pytest.MonkeyPatch, prefix_only: bool = True) -> weights.WeightsEntry:
    digest = hashlib.sha256(content).hexdigest()
    entry = weights.WeightsEntry("wide_resnet50_2", "wide_resnet50_2-test.pth",
                                 digest[:8] if prefix_only else digest, None, "http://127.0.0.1:1/x.pth",
                                 "test", 0.001)
    monkeypatch.setitem(weights.WEIGHTS, "wide_resnet50_2", entry)
    return entry


def test_missing_download_is_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry(b"weights", monkeypatch)
    with pytest.raises(weights.WeightsError, match="BACKBONE_DOWNLOAD"):
        weights.weights_file("wide_resnet50_2", folder=tmp_path)
    assert not list(tmp_path.iterdir())


def test_download_is_verified_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server) -> None:
    content = b"pretend these are 263 MB of weights" * 100
    (server.folder / "w.pth").write_bytes(content)
    entry = _fake_entry(content, monkeypatch)
    got = weights.weights_file("wide_resnet50_2", folder=tmp_path, download=True, progress=False,
                               url=server.url("w.pth"))
    assert got == tmp_path / entry.filename and got.read_bytes() == content
    # a cache hit is checked again: a damaged file is deleted and refused
    got.write_bytes(b"damaged")
    with pytest.raises(weights.WeightsError, match="does not match"):
        weights.weights_file("wide_resnet50_2", folder=tmp_path)
    assert not got.exists()


def test_download_with_wrong_content_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server) -> None:
    (server.folder / "evil.pth").write_bytes(b"not the weights")
    entry = _fake_entry(b"the real weights", monkeypatch)
    with pytest.raises(weights.WeightsError, match="deleted"):
        weights.weights_file("wide_resnet50_2", folder=tmp_path, download=True, progress=False,
                             url=server.url("evil.pth"))
    assert not (tmp_path / entry.filename).exists()


# --------------------------------------------------------------------------- embeddings, PatchCore, PaDiM


def test_patch_embeddings_concatenate_on_the_first_grid() -> None:
    a, b = torch.rand(2, 4, 8, 8), torch.rand(2, 6, 4, 4)
    emb = patch_embeddings([a, b], neighbourhood=3)
    assert emb.shape == (2, 10, 8, 8)
    assert torch.allclose(emb[:, :4, 3, 3], a[:, :, 2:5, 2:5].mean((2, 3)))  # 3x3 average
    assert patch_embeddings([a, b], neighbourhood=1, dim=5).shape == (2, 5, 8, 8)
    maps = to_image_maps(torch.rand(2, 4, 4), (16, 16), sigma=1.0)
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32


def test_greedy_coreset_covers_every_cluster_and_is_incremental() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=gen) for c in centres])
    picks = greedy_coreset(x, 4, proj_dim=None, seed=3)
    assert sorted((picks // 50).tolist()) == [0, 1, 2, 3]  # one pick per cluster
    longer = greedy_coreset(x, 20, proj_dim=None, seed=3)
    assert longer[:4].tolist() == picks.tolist()  # smaller coresets are prefixes
    # k-center: greedy radius <= 2 x the best radius with 4 centres (about 0.3 here)
    radius = torch.cdist(x, x[picks]).min(1).values.max()
    assert radius < 1.0


def test_nearest_distances_equal_brute_force() -> None:
    q, bank = torch.randn(300, 16), torch.randn(500, 16)
    d, i = nearest_distances(q, bank, k=2, chunk=64)
    full = torch.cdist(q, bank)
    assert torch.allclose(d[:, 0], full.min(1).values, atol=1e-4)
    assert torch.equal(i[:, 0], full.argmin(1))


def _textures(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, 6, 6, generator=gen) * 0.1 + torch.linspace(0, 1, 8)[None, :, None, None]


def test_patchcore_scores_an_unseen_patch_highest() -> None:
    train, test = _textures(10, 0), _textures(3, 1)
    test[1, :, 2, 4] += 3.0  # one anomalous patch in image 1
    pc = PatchCore(coreset_ratio=0.25, proj_dim=None).fit(train)
    assert len(pc.bank) == round(0.25 * 360) and len(pc.pick_seconds) == len(pc.bank)
    maps, image = pc.patch_scores(test)
    assert int(image.argmax()) == 1 and maps[1].argmax() == 2 * 6 + 4
    small = pc.with_size(10)
    assert torch.equal(small.bank, pc.bank[:10])
    assert torch.all(small.patch_scores(test)[1] >= image - 1e-6)  # fewer patches: distances only grow
    pc.reweight = True
    _, weighted = pc.patch_scores(test)
    assert torch.all(weighted <= image + 1e-6) and torch.all(weighted > 0)


def test_bank_limit_subsamples_before_the_coreset() -> None:
    pc = PatchCore(coreset_ratio=0.5, bank_limit=100, proj_dim=None).fit(_textures(10, 0))
    assert pc.bank_total == 360 and len(pc.bank) == 50


def test_padim_is_the_mahalanobis_distance_per_position() -> None:
    train, test = _textures(30, 0), _textures(2, 5)
    model = Padim(eps=0.01).fit(train)
    maps, image = model.patch_scores(test)
    x = train[:, :, 1, 2].double().numpy()
    cov = np.cov(x, rowvar=False) + 0.01 * np.eye(8)
    delta = test[0, :, 1, 2].double().numpy() - x.mean(0)
    expected = float(np.sqrt(delta @ np.linalg.inv(cov) @ delta))
    assert maps[0, 1, 2].item() == pytest.approx(expected, rel=1e-3)
    assert torch.allclose(image, maps.reshape(2, -1).max(1).values)
    assert random_channels(10, 4, seed=0) == random_channels(10, 4, seed=0)
    assert random_channels(10, 20) is None
    with pytest.raises(ValueError, match="grid"):
        model.patch_scores(torch.rand(1, 8, 5, 5))


def test_border_pad_removes_the_zero_padding_edge(lite0: torch.nn.Module) -> None:
    flat = torch.full((1, 3, 96, 96), 0.6)  # a featureless image: every patch should look alike
    spread = {}
    for pad in (0, 32):
        (f,) = FeatureExtractor("efficientnet_lite0", (3,), network=lite0, pad=pad)(flat)
        assert f.shape[-2:] == (12, 12)  # padding is cropped again
        centre = f[0, :, 6, 6]
        spread[pad] = float((f[0] - centre[:, None, None]).norm(dim=0).max())
    assert spread[32] < 0.2 * spread[0], spread


def test_cli_fetches_and_lists_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server,
                                       capsys: pytest.CaptureFixture) -> None:
    from adlib import cli

    content = b"fetched through the command line"
    (server.folder / "w.pth").write_bytes(content)
    entry = _fake_entry(content, monkeypatch)
    assert cli.main(["weights", "fetch", "wide_resnet50_2", "--folder", str(tmp_path), "--url",
                     server.url("w.pth"), "--no-progress"]) == 0
    assert (tmp_path / entry.filename).read_bytes() == content
    assert cli.main(["weights", "list"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
    (server.folder / "w.pth").write_bytes(b"tampered")
    (tmp_path / entry.filename).unlink()
    assert cli.main(["weights", "fetch", "wide_resnet50_2", "--folder", str(tmp_path), "--url",
                     server.url("w.pth"), "--no-progress"]) == 1
