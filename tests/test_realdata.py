"""Readers on the real-data dev kit (../shared/data); skipped when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adlib.data import DataWarning, read_dagm, read_mvtec, validate_split

SHARED = Path(os.environ.get("ADLIB_SHARED_DATA") or Path(__file__).parents[2] / "shared" / "data")
DAGM = SHARED / "dagm" / "Class8"
BOTTLE = SHARED / "mvtec" / "bottle"

pytestmark = pytest.mark.realdata


@pytest.mark.skipif(not DAGM.is_dir(), reason=f"real-data kit not found at {DAGM}")
def test_dagm_class8_counts():
    split = read_dagm(SHARED / "dagm", "Class8")
    assert len(split.train) == 200 and len(split.extra["train_defective"]) == 30
    assert [s.label for s in split.test].count(0) == 80
    assert [s.label for s in split.test].count(1) == 50
    assert split.has_masks and split.channels == 1
    sample = split.test[split.test_labels.argmax()]
    mask = sample.load_mask(sample.load_image().shape[:2])
    assert mask.shape == (512, 512) and mask.any()


@pytest.mark.skipif(not DAGM.is_dir(), reason=f"real-data kit not found at {DAGM}")
def test_dagm_class8_full_check_passes():
    report = validate_split(read_dagm(SHARED / "dagm"), check_images=True, progress=False)
    assert report.channels == 1 and report.sizes[(512, 512)] == 200 + 30 + 130


@pytest.mark.skipif(not BOTTLE.is_dir(), reason=f"real-data kit not found at {BOTTLE}")
def test_mvtec_bottle_counts_without_masks():
    with pytest.warns(DataWarning, match="image-level"):
        split = read_mvtec(SHARED / "mvtec", "bottle")
    assert len(split.train) == 209
    assert [s.label for s in split.test].count(0) == 20
    assert [s.label for s in split.test].count(1) == 63
    assert split.has_masks is False and split.channels == 3
    assert split.defect_types == ["broken_large", "broken_small", "contamination"]
