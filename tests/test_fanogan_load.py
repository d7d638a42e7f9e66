"""Notebook 04's data loading decodes every file once (issue 9)."""

from __future__ import annotations

import gc

import pytest
import torch

import adlib.data.torchdata as td
from adlib.pipelines import fanogan_vs_ae as pipe


def test_load_category_and_datasets_decode_each_file_once(monkeypatch):
    s = pipe.settings_for("smoke")
    split, _ = pipe.load_category(None, "bottle", s)  # validation decodes every file

    def fail(*_a, **_k):
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(td, "read_image", fail)
        ae = pipe.datasets(split, s["image_size"], s)  # the two calls of run_category
        gan = pipe.datasets(split, s["gan_image_size"], s)
    assert id(split) not in pipe._decoded  # arrays released after both sizes
    fresh = pipe.datasets(split, s["image_size"], s)  # later calls decode as before
    for data in (ae, gan):
        for name in ("train", "val", "test"):
            ds, ref = getattr(data, name), getattr(fresh, name)
            assert len(ds) == len(ref) > 0
            assert torch.equal(ds.images_uint8(), ref.images_uint8()), name
    again, _ = pipe.load_category(None, "bottle", s)
    assert id(again) in pipe._decoded
    del again
    gc.collect()
    assert len(pipe._decoded) == 0  # a split that dies frees its arrays


def test_decoded_arrays_respect_the_memory_budget(monkeypatch):
    s = pipe.settings_for("smoke")
    monkeypatch.setattr(pipe, "KEEP_DECODED_BYTES", 1)
    split, _ = pipe.load_category(None, "bottle", s)
    assert id(split) not in pipe._decoded
    data = pipe.datasets(split, s["image_size"], s)  # decodes itself
    assert len(data.train) > 0 and data.test.images_uint8().dtype == torch.uint8


@pytest.fixture(autouse=True)
def _empty_cache():
    pipe._decoded.clear()
    yield
    pipe._decoded.clear()
