"""Readers and image/mask decoding: the good path and every bad input, on tiny files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from fixtures_layouts import (
    box_mask,
    noise_image,
    save,
    write_dagm,
    write_mvtec,
    write_rsdd,
    write_sem,
)

from adlib.data import (
    DataError,
    DataWarning,
    Sample,
    Split,
    read_dagm,
    read_image,
    read_mask,
    read_mvtec,
    read_rsdd,
    read_sem,
    validate_split,
)

RSDD = Path("Type-I RSDDs dataset")


def _read(kind: str, root: Path, **kw) -> Split:
    if kind == "mvtec":
        return read_mvtec(root, "toy", **kw)
    if kind == "dagm":
        return read_dagm(root, "Class8", **kw)
    return {"rsdd": read_rsdd, "sem": read_sem}[kind](root, **kw)


WRITERS = {"mvtec": write_mvtec, "dagm": write_dagm, "rsdd": write_rsdd, "sem": write_sem}
# One file of each role per layout (relative to the root the writer returns).
TRAIN_IMAGE = {"mvtec": "toy/train/good/000.png", "dagm": "Class8/Train/1001.PNG",
               "rsdd": RSDD / "Rail surface images/rail_0.jpg", "sem": "Normal/normal_0.tif"}
TEST_IMAGE = {"mvtec": "toy/test/good/000.png", "dagm": "Class8/Test/1005.PNG",
              "rsdd": RSDD / "Rail surface images/rail_1.jpg", "sem": "Anomalous/images/anom_0.tif"}
MASK = {"mvtec": "toy/ground_truth/crack/000_mask.png", "dagm": "Class8/Test/Label/1007_label.PNG",
        "rsdd": RSDD / "GroundTruth/rail_1.jpg", "sem": "Anomalous/gt/anom_0_gt.png"}
KINDS = list(WRITERS)


@pytest.fixture(params=KINDS)
def layout(request, tmp_path) -> tuple[str, Path]:
    kind = request.param
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return kind, WRITERS[kind](tmp_path / "data")


def _replace_image(path: Path, array: np.ndarray) -> None:
    path.unlink()
    save(path, array, **({"quality": 95} if path.suffix == ".jpg" else {}))


# ---------------------------------------------------------------- good path


def test_reads_each_layout(layout):
    kind, root = layout
    split = _read(kind, root, check_images=True, progress=False)
    expected = {"mvtec": (3, 6, 4, 3), "dagm": (3, 4, 2, 1), "rsdd": (0, 4, 3, 1),
                "sem": (2, 2, 2, 1)}[kind]
    assert (len(split.train), len(split.test), int(split.test_labels.sum()),
            split.channels) == expected
    assert split.has_masks
    assert all(s.mask_path is not None and s.mask_path.is_file()
               for s in split.test if s.label == 1)
    assert all(s.label == 0 and s.defect == "good" for s in split.train)
    mask = next(s for s in split.test if s.label == 1).load_mask()
    assert mask.dtype == bool and mask.any()
    counts = split.counts()
    assert counts.loc["total", "test"] == len(split.test)


def test_dagm_keeps_defective_train_images_out_of_training(tmp_path):
    split = read_dagm(write_dagm(tmp_path, train=(3, 2)))
    assert [s.label for s in split.train] == [0, 0, 0]
    assert len(split.extra["train_defective"]) == 2
    assert split.defect_types == ["defect"]
    assert split.counts().loc["defect", "train_defective"] == 2


def test_dagm_accepts_the_class_folder_itself(tmp_path):
    split = read_dagm(write_dagm(tmp_path) / "Class8", "Class8")
    assert len(split.train) == 3


def test_mvtec_reads_any_category_and_lists_found_ones(tmp_path):
    write_mvtec(tmp_path, "screw", channels=1)
    split = read_mvtec(tmp_path, "screw")
    assert split.channels == 1 and split.defect_types == ["crack", "hole"]
    with pytest.raises(DataError, match="Categories found there: screw"):
        read_mvtec(tmp_path, "hazelnut")
    assert len(read_mvtec(tmp_path / "screw", "screw").train) == 3


# ---------------------------------------------------------------- bad inputs, every reader


@pytest.mark.parametrize("kind", KINDS)
def test_missing_root_folder(kind, tmp_path):
    with pytest.raises(DataError, match="Expected layout") as err:
        _read(kind, tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    if kind == "rsdd":
        assert "no stable public download URL" in str(err.value)
        assert "IEEE Sensors Journal" in str(err.value) and "Gan" in str(err.value)


def test_empty_folder(layout):
    kind, root = layout
    if kind == "dagm":
        (root / "Class8/Train/Label/Labels.txt").write_text("1\n")
        with pytest.raises(DataError, match="lists no images"), \
                pytest.warns(DataWarning, match="not in .*Labels.txt"):
            _read(kind, root)
        return
    folder = (root / TRAIN_IMAGE[kind]).parent
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(DataError, match="holds no image") as err:
        _read(kind, root)
    assert str(folder) in str(err.value)


def test_garbage_image_is_caught_by_cheap_checks(layout):
    kind, root = layout
    bad = root / TEST_IMAGE[kind]
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match="Cannot decode") as err:
        _read(kind, root)
    assert str(bad) in str(err.value)


def test_truncated_image_is_caught_by_full_check(layout):
    kind, root = layout
    bad = root / TEST_IMAGE[kind]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        _read(kind, root, check_images=True, progress=False)
    assert str(bad) in str(err.value)


def test_mask_size_mismatch(layout):
    kind, root = layout
    mask = root / MASK[kind]
    h, w = read_image(root / TEST_IMAGE[kind]).shape[:2]
    _replace_image(mask, box_mask((h + 3, w), 1, 1, 2, 2))
    with pytest.raises(DataError, match="mask") as err:
        _read(kind, root)
    assert str(mask) in str(err.value)


def test_non_binary_mask(layout, rng):
    kind, root = layout
    mask = root / MASK[kind]
    h, w = read_mask(mask).shape
    if kind == "rsdd":  # a photo in the GroundTruth folder: rejected even without full check
        _replace_image(mask, noise_image(rng, (h, w)))
        with pytest.raises(DataError, match="does not look like a mask"):
            _read(kind, root)
        return
    values = np.zeros((h, w), np.uint8)
    values[:2] = 100
    values[2:4] = 255
    _replace_image(mask, values)
    with pytest.raises(DataError, match="not binary") as err:
        _read(kind, root, check_images=True, progress=False)
    assert str(mask) in str(err.value) and "100" in str(err.value)


def test_wrong_channel_count(layout, rng):
    kind, root = layout
    odd = root / TEST_IMAGE[kind]
    h, w, c = read_image(odd).shape
    _replace_image(odd, noise_image(rng, (h, w), 1 if c == 3 else 3))
    with pytest.raises(DataError, match="inconsistent channel count") as err:
        _read(kind, root)
    assert str(odd) in str(err.value)


@pytest.mark.parametrize("kind", ["mvtec", "dagm", "sem"])
def test_train_test_overlap_by_content(kind, tmp_path):
    root = WRITERS[kind](tmp_path)
    shutil.copyfile(root / TRAIN_IMAGE[kind], root / TEST_IMAGE[kind])
    _read(kind, root)  # cheap checks cannot see it
    with pytest.raises(DataError, match="identical pixel content") as err:
        _read(kind, root, check_images=True, progress=False)
    assert str(root / TEST_IMAGE[kind]) in str(err.value)


def test_train_test_overlap_by_path(tmp_path):
    root = write_mvtec(tmp_path)
    split = read_mvtec(root, "toy")
    split.test.append(split.train[0])
    with pytest.raises(DataError, match="same file in both") as err:
        validate_split(split, check_images=False)
    assert str(split.train[0].path) in str(err.value)


def test_empty_train_or_test_raise(tmp_path):
    split = read_mvtec(write_mvtec(tmp_path), "toy")
    with pytest.raises(DataError, match="no training"):
        validate_split(Split("mvtec", "toy", tmp_path, [], split.test, True, 3))
    with pytest.raises(DataError, match="no test images"):
        validate_split(Split("mvtec", "toy", tmp_path, split.train, [], True, 3))


# ---------------------------------------------------------------- masks missing


def test_mvtec_without_ground_truth_warns_and_has_no_masks(tmp_path):
    root = write_mvtec(tmp_path, ground_truth=False)
    with pytest.warns(DataWarning, match="only image-level metrics"):
        split = read_mvtec(root, "toy")
    assert split.has_masks is False
    assert all(s.mask_path is None for s in split.test)


def test_mvtec_one_missing_mask_is_an_error(tmp_path):
    root = write_mvtec(tmp_path)
    (root / MASK["mvtec"]).unlink()
    with pytest.raises(DataError, match="have no mask") as err:
        read_mvtec(root, "toy")
    assert str(root / MASK["mvtec"]) in str(err.value)


@pytest.mark.parametrize("kind", ["dagm", "rsdd", "sem"])
def test_missing_mask_file(kind, tmp_path):
    root = WRITERS[kind](tmp_path)
    (root / MASK[kind]).unlink()
    with pytest.raises(DataError) as err:
        _read(kind, root)
    assert Path(MASK[kind]).stem.split("_gt")[0].split("_label")[0] in str(err.value)


def test_dagm_malformed_labels_line(tmp_path):
    root = write_dagm(tmp_path)
    labels = root / "Class8/Test/Label/Labels.txt"
    labels.write_text(labels.read_text() + "1099\tmaybe\tx.PNG\n")
    with pytest.raises(DataError, match="line .*maybe"):
        read_dagm(root)


# ---------------------------------------------------------------- read_image / read_mask


def test_read_image_grey_rgb_alpha_and_16bit(tmp_path, rng):
    grey = save(tmp_path / "g.png", noise_image(rng, (5, 7)))
    assert read_image(grey).shape == (5, 7, 1)
    rgb = read_image(grey, channels=3)
    assert rgb.shape == (5, 7, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    rgba = save(tmp_path / "a.png", noise_image(rng, (4, 4), 4))
    assert read_image(rgba).shape == (4, 4, 3)
    wide = np.array([[0, 65535], [257 * 10, 257 * 200]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "w.tif", wide)
    assert read_image(tmp_path / "w.tif")[..., 0].tolist() == [[0, 255], [10, 200]]
    with pytest.raises(DataError, match="Cannot convert"):
        read_image(grey, channels=2)
    planar = np.stack([np.full((4, 5), v, np.uint8) for v in (10, 20, 30)])
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    assert read_image(tmp_path / "p.tif")[0, 0].tolist() == [10, 20, 30]
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((4, 4, 5), np.uint8), planarconfig="contig")
    with pytest.raises(DataError, match="Unexpected image shape"):
        read_image(tmp_path / "five.tif")
    with pytest.raises(DataError, match="not found"):
        read_image(tmp_path / "absent.png")


def test_read_image_to_grey_is_luma(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 200
    out = read_image(save(tmp_path / "c.png", rgb), channels=1)
    assert out.shape == (2, 2, 1) and int(out[0, 0, 0]) == round(0.587 * 200)


def test_read_mask_accepts_0_1_and_0_255_and_thresholds_jpeg(tmp_path):
    ones = save(tmp_path / "m01.png", box_mask((8, 8), 1, 1, 3, 3) // 255)
    full = save(tmp_path / "m255.png", box_mask((8, 8), 1, 1, 3, 3))
    assert np.array_equal(read_mask(ones), read_mask(full))
    assert read_mask(full).sum() == 9
    jpg = save(tmp_path / "m.jpg", box_mask((64, 64), 10, 10, 20, 20), quality=75)
    mask = read_mask(jpg, shape=(64, 64))
    assert abs(int(mask.sum()) - 400) <= 40
    with pytest.raises(DataError, match="is 64x64 .* image is 60x64"):
        read_mask(jpg, shape=(60, 64))


def test_read_mask_rejects_colour(tmp_path, rng):
    colour = save(tmp_path / "c.png", noise_image(rng, (6, 6), 3))
    with pytest.raises(DataError, match="colour"):
        read_mask(colour)


def test_sample_loads_image_and_mask(tmp_path):
    img = save(tmp_path / "i.png", np.full((6, 5), 7, np.uint8))
    msk = save(tmp_path / "i_mask.png", box_mask((6, 5), 0, 0, 2, 2))
    s = Sample(img, 1, "crack", msk)
    assert s.load_image(channels=3).shape == (6, 5, 3)
    assert s.load_mask(shape=(6, 5)).sum() == 4
    assert Sample(img, 0, "good").load_mask() is None
    assert not Sample(img, 0, "good").load_mask_or_empty((6, 5)).any()
