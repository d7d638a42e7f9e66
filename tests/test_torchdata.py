"""ImageDataset / PatchDataset / loaders / holdout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_layouts import write_mvtec

import adlib.data.torchdata as td
from adlib.data import Sample, read_mvtec, validate_split
from adlib.data.torchdata import (
    ImageDataset,
    PatchDataset,
    RandomAugment,
    auto_workers,
    holdout,
    make_loader,
)


@pytest.fixture
def split(tmp_path):
    return read_mvtec(write_mvtec(tmp_path, n_train=6, size=20), "toy")


def _batches(loader, epochs=2):
    return [b for _ in range(epochs) for b in loader]


def test_items_are_float_chw_in_unit_range(split):
    ds = ImageDataset(split.test, image_size=12, channels=1, with_masks=True, progress=False)
    item = ds[len(ds) - 1]
    assert item["image"].shape == (1, 12, 12) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["mask"].shape == (1, 12, 12) and item["label"].item() == 1
    assert item["mask"].sum() > 0 and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    good = ds[[s.label for s in split.test].index(0)]
    assert good["label"].item() == 0 and good["mask"].sum() == 0
    assert ImageDataset(split.train, None, 3, progress=False)[0]["image"].shape == (3, 20, 20)


def test_cached_and_uncached_give_identical_batches(split):
    aug = RandomAugment(rot90=True, noise_std=0.05)
    kw = dict(image_size=16, channels=3, augment=aug, progress=False)
    cached = _batches(make_loader(ImageDataset(split.train, cache=True, **kw), 4, True, seed=7))
    lazy = _batches(make_loader(ImageDataset(split.train, cache=False, **kw), 4, True, seed=7))
    assert len(cached) == len(lazy) == 4
    for a, b in zip(cached, lazy, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
    assert not torch.equal(cached[0]["index"], cached[2]["index"]) or \
        not torch.equal(cached[0]["image"], cached[2]["image"])  # epochs differ
    other = _batches(make_loader(ImageDataset(split.train, **kw), 4, True, seed=8))
    assert any(not torch.equal(a["image"], b["image"]) for a, b in zip(cached, other, strict=True))


def test_same_batches_with_workers(split):
    ds = ImageDataset(split.train, 16, 3, augment=RandomAugment(noise_std=0.1), progress=False)
    serial = _batches(make_loader(ds, 3, True, seed=1, num_workers=0), 1)
    parallel = _batches(make_loader(ds, 3, True, seed=1, num_workers=1), 1)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(serial, parallel, strict=True))


def test_decoded_arrays_are_reused(split, monkeypatch):
    report = validate_split(split, keep_arrays=True, progress=False)
    assert len(report.images) == len(split.train) + len(split.test)

    def fail(*_a, **_k):
        raise AssertionError("decoded twice")

    monkeypatch.setattr(td, "read_image", fail)
    ds = ImageDataset(split.test, 16, 3, with_masks=True, decoded=report, progress=False)
    assert ds[len(ds) - 1]["mask"].sum() > 0


def test_augment_moves_mask_with_image():
    image = torch.zeros(1, 8, 8)
    image[0, 0, :3] = 1.0
    aug = RandomAugment(hflip=0.5, vflip=0.5, rot90=True)
    for seed in range(8):
        out, mask = aug(image, image.clone(), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out, mask) and out.sum() == 3
    noisy, _ = RandomAugment.seed000(noise_std=0.1)(image, None, torch.Generator().manual_seed(0))
    assert not torch.equal(noisy.round(), noisy) and 0 <= noisy.min() and noisy.max() <= 1
    rect = RandomAugment(hflip=0, vflip=0, rot90=True)
    for seed in range(6):
        out, _ = rect(torch.rand(1, 4, 6), None, torch.Generator().manual_seed(seed))
        assert out.shape == (1, 4, 6)


def test_patch_dataset(rng):
    patches = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)
    masks = np.zeros((10, 8, 8), bool)
    masks[3, 2, 2] = True
    ds = PatchDataset(patches, labels=(masks.any(axis=(1, 2))).astype(int), masks=masks,
                      with_masks=True)
    item = ds[3]
    assert item["image"].shape == (1, 8, 8) and item["label"].item() == 1
    assert torch.allclose(item["image"][0] * 255, torch.from_numpy(patches[3]).float())
    assert item["mask"].sum() == 1
    batch = next(iter(make_loader(ds, 4)))
    assert batch["image"].shape == (4, 1, 8, 8) and batch["index"].tolist() == [0, 1, 2, 3]


def test_make_loader_accepts_plain_datasets():
    plain = torch.utils.data.TensorDataset(torch.arange(10))
    first = [b[0].tolist() for b in make_loader(plain, 5, shuffle=True, seed=2)]
    again = [b[0].tolist() for b in make_loader(plain, 5, shuffle=True, seed=2)]
    assert first == again and sorted(first[0] + first[1]) == list(range(10))


def test_auto_workers_zero_on_tiny_datasets():
    assert auto_workers(10) == 0
    assert make_loader(PatchDataset(np.zeros((5, 4, 4), np.uint8)), 2).num_workers == 0


def test_holdout_is_deterministic_and_disjoint(tmp_path):
    samples = [Sample(tmp_path / f"{i:02d}.png", 0, "good") for i in range(20)]
    train, val = holdout(samples, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert {s.path for s in train}.isdisjoint({s.path for s in val})
    assert set(holdout(list(reversed(samples)), 0.25, seed=3)[1]) == set(val)
    assert set(holdout(samples, 0.25, seed=4)[1]) != set(val)
    doubled = samples[:3] + samples[:3]  # the same file twice stays on one side
    t, v = holdout(doubled, 0.5, seed=0)
    assert {s.path for s in t}.isdisjoint({s.path for s in v}) and len(t) + len(v) == 6
    assert holdout(samples, 0.0) == (samples, [])
    with pytest.raises(ValueError):
        holdout(samples[:1], 0.5)


def test_patch_batches_fetched_at_once_equal_item_by_item_collation() -> None:
    """PatchDataset.__getitems__ (whole batch at once) gives exactly the collated single items."""
    from torch.utils.data import default_collate

    from adlib.data.torchdata import PatchDataset, make_loader

    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (37, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 2, 37)
    masks = rng.random((37, 8, 8)) > 0.7
    ds = PatchDataset(patches, labels, masks, with_masks=True)
    loader = make_loader(ds, batch_size=10, shuffle=True, seed=3, num_workers=0)
    batches = list(loader)
    assert [len(b["image"]) for b in batches] == [10, 10, 10, 7]
    for batch in batches:
        expected = default_collate([ds[int(i)] for i in batch["index"]])
        assert set(batch) == set(expected)
        for key in expected:
            assert batch[key].dtype == expected[key].dtype, key
            assert torch.equal(batch[key], expected[key]), key


# ------------------------------------------------------------------ batched fetch (issue 9)

AUGMENTS = [
    RandomAugment(rot90=True, noise_std=0.05),
    RandomAugment(hflip=0.5, vflip=0.0, rot90=False),
    RandomAugment(hflip=0.3, vflip=0.7, rot90=True, degrees=20.0, noise_std=0.1),
]


def _assert_same_batch(batch: dict, expected: dict) -> None:
    assert list(batch) == list(expected)
    for key in expected:
        assert batch[key].dtype == expected[key].dtype, key
        assert torch.equal(batch[key], expected[key]), key


@pytest.mark.parametrize("aug", AUGMENTS, ids=["rot90+noise", "hflip", "all+degrees"])
def test_batched_fetch_equals_collated_items(split, aug):
    """__getitems__ (the loader's path) gives exactly the collated single items, masks included."""
    from torch.utils.data import default_collate

    from adlib.data.torchdata import Repeated

    ds = ImageDataset(split.test, 16, 3, augment=aug, with_masks=True, progress=False)
    keys = [(i % len(ds), 1000 + 7 * i) for i in range(2 * len(ds))]
    _assert_same_batch(ds.__getitems__(keys), default_collate([ds[k] for k in keys]))
    plain = [0, 2, 1]  # plain indices draw from the dataset's own generator, in order
    a = ImageDataset(split.test, 16, 3, augment=aug, with_masks=True, progress=False, seed=4)
    b = ImageDataset(split.test, 16, 3, augment=aug, with_masks=True, progress=False, seed=4)
    _assert_same_batch(a.__getitems__(plain), default_collate([b[k] for k in plain]))
    rep = Repeated(ds, 3)
    rkeys = [(len(ds) * 2 + 1, 5), (3, 6)]
    _assert_same_batch(rep.__getitems__(rkeys), default_collate([rep[k] for k in rkeys]))
    assert rep[(len(ds) * 2 + 1, 5)]["index"].item() == 1 and len(rep) == 3 * len(ds)


def test_batched_loader_same_with_and_without_workers_and_cache(split):
    from adlib.data.torchdata import Repeated

    aug = RandomAugment(rot90=True, noise_std=0.05)
    kw = dict(image_size=16, channels=3, augment=aug, progress=False)
    cached = Repeated(ImageDataset(split.train, cache=True, **kw), 3)
    lazy = Repeated(ImageDataset(split.train, cache=False, **kw), 3)
    runs = [_batches(make_loader(ds, 4, True, seed=7, num_workers=w), 2)
            for ds, w in ((cached, 0), (cached, 2), (lazy, 0))]
    assert len(runs[0]) == 2 * -(-len(cached) // 4)
    for batches in runs[1:]:
        assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
                   for a, b in zip(runs[0], batches, strict=True))
    first, second = runs[0][0]["image"], runs[0][len(runs[0]) // 2]["image"]
    assert not torch.equal(first, second)  # the second epoch draws new augmentations


def test_images_of_different_sizes_fall_back_to_single_items(tmp_path):
    small = read_mvtec(write_mvtec(tmp_path / "a", n_train=3, size=12), "toy")
    large = read_mvtec(write_mvtec(tmp_path / "b", n_train=3, size=20), "toy")
    ds = ImageDataset(small.train + large.train, None, 3, augment=RandomAugment(), progress=False)
    items = ds.__getitems__([(0, 1), (4, 2)])
    assert isinstance(items, list) and [tuple(it["image"].shape) for it in items] == \
        [(3, 12, 12), (3, 20, 20)]
    assert torch.equal(items[1]["image"], ds[(4, 2)]["image"])
    one = next(iter(make_loader(ds, 1, True, seed=0)))
    assert one["image"].shape[0] == 1


def test_batched_augment_moves_masks_with_asymmetric_images():
    """A mask equal to one channel of an asymmetric image stays equal to it after augmentation."""
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(64, 2, 9, 9, generator=gen) * 255).round().to(torch.uint8).numpy()
    patches = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    masks = patches[..., 0] > 127
    keys = [(i, 100 + i) for i in range(64)]
    plain = PatchDataset(patches, masks=masks, with_masks=True).__getitems__(list(range(64)))
    aug = RandomAugment(hflip=0.5, vflip=0.5, rot90=True)
    batch = PatchDataset(patches, masks=masks, augment=aug, with_masks=True).__getitems__(keys)
    assert torch.equal(batch["image"][:, :1] > 127 / 255, batch["mask"] > 0.5)
    changed = (batch["image"] != plain["image"]).flatten(1).any(1)
    assert changed.float().mean() > 0.8  # most items did move
    # arbitrary angles: bilinear image vs nearest mask, so they agree up to edge pixels
    aug = RandomAugment(hflip=0.0, vflip=0.0, rot90=False, degrees=30.0)
    batch = PatchDataset(np.repeat(patches[..., :1] // 128 * 255, 2, axis=-1), masks=masks,
                         augment=aug, with_masks=True).__getitems__(keys)
    agree = ((batch["image"][:, :1] > 0.5) == (batch["mask"] > 0.5)).float().mean()
    assert agree > 0.9 and not torch.equal(batch["mask"].bool(), plain["mask"].bool())


def test_batched_flip_and_rot90_frequencies_and_noise_std():
    """Over many items, flips/rotations happen at the configured rates; noise has its std."""
    n, p_h, p_v, std = 4000, 0.3, 0.6, 0.05
    base = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4).div(15)
    aug = RandomAugment(hflip=p_h, vflip=p_v, rot90=True)
    gens = [torch.Generator().manual_seed(10_000 + i) for i in range(n)]
    out, _ = aug.apply_batch(base.repeat(n, 1, 1, 1), None, gens)
    # identify which of the 8 dihedral transforms each item received
    table = {}
    for h in (False, True):
        for v in (False, True):
            for k in range(4):
                t = base[0, 0].flip(-1) if h else base[0, 0]
                t = t.flip(-2) if v else t
                table.setdefault(tuple(torch.rot90(t, k).flatten().tolist()), []).append((h, v, k))
    counts = {}
    for img in out[:, 0]:
        key = tuple(img.flatten().tolist())
        assert key in table  # a pure flip/rotation of the input
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 8  # every element of the dihedral group occurs
    # hflip then vflip = rot180: each image corresponds to 4 (h, v, k) triples of equal chance
    for key, c in counts.items():
        expected = sum((p_h if h else 1 - p_h) * (p_v if v else 1 - p_v) / 4
                       for h, v, _ in table[key])
        assert abs(c / n - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    noisy = RandomAugment(hflip=0, vflip=0, rot90=False, noise_std=std)
    mid = torch.full((64, 3, 16, 16), 0.5)
    out, _ = noisy.apply_batch(mid.clone(), None, [torch.Generator().manual_seed(i) for i in range(64)])
    residual = out - mid
    assert abs(float(residual.std()) - std) < 0.05 * std and abs(float(residual.mean())) < 0.1 * std
    assert not torch.equal(residual[0], residual[1])  # each item gets its own noise
