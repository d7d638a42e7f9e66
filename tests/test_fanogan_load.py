"""Notebook 04's data step decodes every file once (issue 9), for both image sizes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

import adlib.data.torchdata as torchdata
import adlib.data.validate as validate
from adlib.data.torchdata import ImageDataset
from adlib.pipelines import fanogan_vs_ae as pipe


def test_load_decodes_each_file_once_for_both_sizes(monkeypatch) -> None:
    cfg = pipe.settings("smoke", {"gan_image_size": 16})  # two different sizes
    reads: Counter[Path] = Counter()

    def counting(read):
        def wrapper(path, *args, **kwargs):
            reads[Path(path)] += 1
            return read(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(validate, "read_image", counting(validate.read_image))
    monkeypatch.setattr(torchdata, "read_image", counting(torchdata.read_image))
    data = pipe.load(cfg, category="bottle", progress=False)
    files = {Path(s.path) for s in (*data.split.train, *data.split.test)}
    assert set(reads) == files and set(reads.values()) == {1}  # validation decoded, datasets reused
    assert data.ae.test[0]["image"].shape[-1] == 32 and data.gan.test[0]["image"].shape[-1] == 16
    # the same tensors as datasets that decode the files themselves
    fresh = ImageDataset(data.split.test, image_size=16, channels=data.split.channels,
                         with_masks=True, progress=False)
    assert torch.equal(data.gan.test.images_uint8(), fresh.images_uint8())
    assert all(torch.equal(a["mask"], b["mask"]) for a, b in zip(data.gan.test, fresh, strict=True))
    # datasets hold their own tensors, not the full-size decoded arrays
    assert all(ds._decoded is None for ds in (data.ae.train, data.gan.val, data.gan.test))
