"""Issue 14, item 4: inputs that silently mislead get a clear error or a warning naming the file.

Every case builds its own folder in ``tmp_path`` (layout writers of fixtures_layouts.py).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures_layouts import box_mask, save, write_dagm, write_mvtec, write_sem
from PIL import Image

from adlib.data import (
    DataError,
    DataWarning,
    read_dagm,
    read_image,
    read_mvtec,
    read_sem,
    validate_split,
)
from adlib.data.synthetic.dagm_like import make_dagm_like

TEST_GOOD, TEST_BAD = "Class8/Test/1005.PNG", "Class8/Test/1007.PNG"  # write_dagm's numbering
TRAIN_GOOD, TRAIN_BAD = "Class8/Train/1001.PNG", "Class8/Train/1004.PNG"


# ---------------------------------------------------------------- train/test overlap, every layout
@pytest.mark.parametrize("source, copy", [(TEST_GOOD, TRAIN_GOOD), (TEST_BAD, TRAIN_BAD)])
def test_dagm_image_copied_from_test_into_train_is_found(tmp_path: Path, source: str,
                                                         copy: str) -> None:
    root = write_dagm(tmp_path)
    shutil.copyfile(root / source, root / copy)  # over a train image (good, or defective)
    split = read_dagm(root)  # cheap checks read headers only: they cannot see it
    with pytest.raises(DataError, match="identical pixel content") as err:
        validate_split(split, check_images=True, progress=False)
    assert str(root / source) in str(err.value) and str(root / copy) in str(err.value)


def test_synthetic_dagm_layout_overlap_is_found(tmp_path: Path) -> None:
    root = make_dagm_like(tmp_path, n_train_normal=4, n_train_defective=2, n_test_normal=2,
                          n_test_defective=2, size=32, progress=False)
    split = read_dagm(root, "Class8")
    validate_split(split, check_images=True, progress=False)  # clean: passes
    victim, leaked = split.extra["train_defective"][0].path, split.test[0].path
    shutil.copyfile(leaked, victim)
    with pytest.raises(DataError, match="identical pixel content") as err:
        validate_split(read_dagm(root, "Class8"), check_images=True, progress=False)
    assert f"test image {leaked} has the same pixels as train_defective image {victim}" in str(
        err.value)


def test_mvtec_image_copied_from_test_into_train_is_found(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path)
    shutil.copyfile(root / "toy/test/crack/001.png", root / "toy/train/good/002.png")
    split = read_mvtec(root, "toy")
    with pytest.raises(DataError, match="identical pixel content") as err:
        validate_split(split, check_images=True, progress=False)
    assert str(root / "toy/test/crack/001.png") in str(err.value)


def test_same_pixels_in_another_file_format_is_found(tmp_path: Path) -> None:
    # Content hashes are of decoded pixels, so a re-encoded copy is found too.
    root = write_sem(tmp_path)
    pixels = read_image(root / "Anomalous/images/anom_0.tif")[..., 0]
    (root / "Normal/normal_1.tif").unlink()
    save(root / "Normal/normal_1.png", pixels)
    with pytest.raises(DataError, match="identical pixel content"):
        read_sem(root, check_images=True, progress=False)


# ---------------------------------------------------------------- DAGM Labels.txt
def _add_rows(root: Path, part: str, *rows: str) -> Path:
    labels = root / f"Class8/{part}/Label/Labels.txt"
    labels.write_text(labels.read_text() + "".join(f"{r}\n" for r in rows))
    return labels


def test_dagm_duplicate_row_with_conflicting_label(tmp_path: Path) -> None:
    root = write_dagm(tmp_path)
    save(root / "Class8/Train/Label/1001_label.PNG", box_mask((16, 16), 2, 2, 4, 4))
    _add_rows(root, "Train", "1001\t1\t1001.PNG\t0\t1001_label.PNG")
    with pytest.raises(DataError, match="1001.PNG is listed again with a different label") as err:
        read_dagm(root)
    assert "line 2: flag 0" in str(err.value) and "Labels.txt" in str(err.value)


def test_dagm_exact_duplicate_row_is_used_once(tmp_path: Path) -> None:
    root = write_dagm(tmp_path)
    labels = _add_rows(root, "Test", "1005\t0\t1005.PNG\t0\t0\t")
    with pytest.warns(DataWarning, match=r"line 6 repeats line 2 \(image 1005.PNG\)") as record:
        split = read_dagm(root)
    assert str(labels) in str(record[0].message)
    assert [s.path.name for s in split.test].count("1005.PNG") == 1


def test_dagm_good_row_that_names_a_label_file(tmp_path: Path) -> None:
    root = write_dagm(tmp_path)
    labels = root / "Class8/Test/Label/Labels.txt"
    labels.write_text(labels.read_text().replace("1005\t0\t1005.PNG\t0\t0",
                                                 "1005\t0\t1005.PNG\t0\t1007_label.PNG"))
    with pytest.raises(DataError, match="1005.PNG is flagged 0 .* names the label file "
                                        "1007_label.PNG") as err:
        read_dagm(root)
    assert str(labels) in str(err.value)


# ---------------------------------------------------------------- empty masks
@pytest.mark.parametrize("kind", ["mvtec", "dagm", "sem"])
def test_defective_image_with_all_zero_mask(tmp_path: Path, kind: str) -> None:
    if kind == "mvtec":
        root, read = write_mvtec(tmp_path), (lambda r, **kw: read_mvtec(r, "toy", **kw))
        mask = root / "toy/ground_truth/hole/001_mask.png"
    elif kind == "dagm":
        root, read = write_dagm(tmp_path), read_dagm
        mask = root / "Class8/Test/Label/1007_label.PNG"
    else:
        root, read = write_sem(tmp_path), read_sem
        mask = root / "Anomalous/gt/anom_1_gt.png"
    shape = np.array(Image.open(mask)).shape
    Image.fromarray(np.zeros(shape, np.uint8)).save(mask)
    read(root)  # headers only: fine
    with pytest.raises(DataError, match="defective images with an empty mask") as err:
        read(root, check_images=True, progress=False)
    assert f"{mask}: all zero" in str(err.value)


# ---------------------------------------------------------------- 16-bit images using 12 bits
def test_16bit_png_holding_12bit_values_warns_and_can_be_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)
    twelve = tmp_path / "cam" / "twelve.png"
    twelve.parent.mkdir()
    Image.fromarray(values).save(twelve)
    assert np.array(Image.open(twelve)).dtype == np.uint16  # really a 16-bit PNG
    with pytest.warns(DataWarning, match=r"twelve.png is a 16-bit image whose values all fit in "
                                         r"12 bits \(max 4095 of 65535\).* 16x too dark"):
        dark = read_image(twelve)
    assert dark[..., 0].tolist() == [[0, 4], [8, 16]]  # what the user would otherwise get
    scaled = read_image(twelve, bit_depth=12)
    assert scaled[..., 0].tolist() == [[0, 64], [128, 255]]
    with pytest.raises(DataError, match="more than 10 bits allow"):
        read_image(twelve, bit_depth=10)


def test_full_range_16bit_png_gives_no_warning(tmp_path: Path) -> None:
    full = tmp_path / "full.png"
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(full)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert read_image(full)[..., 0].tolist() == [[0, 255]]


def test_low_bit_depth_warning_comes_once_per_folder(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.full((2, 2), 4000 + i, np.uint16)).save(tmp_path / f"{i}.png")
    with pytest.warns(DataWarning) as record:
        for i in range(3):
            read_image(tmp_path / f"{i}.png")
    assert len([w for w in record if "16-bit" in str(w.message)]) == 1


# ---------------------------------------------------------------- symbolic links
def test_defect_folder_linked_to_good_is_refused(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path)
    crack = root / "toy/test/crack"
    shutil.rmtree(crack)
    crack.symlink_to(root / "toy/test/good", target_is_directory=True)
    with pytest.raises(DataError, match="the same file is listed more than once") as err:
        read_mvtec(root, "toy")
    message = str(err.value)
    assert f"{crack}/000.png as test defective (crack)" in message
    assert f"{root}/toy/test/good/000.png as test good (good)" in message


def test_defect_folder_copied_from_good_is_refused(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path)
    for name in ("000.png", "001.png"):
        shutil.copyfile(root / "toy/test/good" / name, root / "toy/test/crack" / name)
    read_mvtec(root, "toy")
    with pytest.raises(DataError, match="identical test images with different labels"):
        read_mvtec(root, "toy", check_images=True, progress=False)


def test_symlink_to_a_train_image_in_test_is_an_overlap(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path)
    (root / "toy/test/good/001.png").unlink()
    (root / "toy/test/good/001.png").symlink_to(root / "toy/train/good/001.png")
    with pytest.raises(DataError, match="train/test overlap"):
        read_mvtec(root, "toy")


@pytest.mark.parametrize("state", ["dangling", "loops"])
def test_broken_file_links_are_reported(tmp_path: Path, state: str) -> None:
    root = write_mvtec(tmp_path)
    good = root / "toy/train/good"
    if state == "dangling":
        (good / "003.png").symlink_to(tmp_path / "unmounted_disk" / "003.png")
    else:
        (good / "003.png").symlink_to(good / "004.png")
        (good / "004.png").symlink_to(good / "003.png")
    with pytest.raises(DataError, match=f"(?s)point to nothing.*003.png -> .*\\({state}\\)") as err:
        read_mvtec(root, "toy")
    assert "delete the links" in str(err.value)


def test_broken_defect_folder_link_is_reported(tmp_path: Path) -> None:
    root = write_mvtec(tmp_path)
    (root / "toy/test/scratch").symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(DataError, match=r"(?s)test folder link\(s\) .*/scratch -> .*dangling"):
        read_mvtec(root, "toy")


def test_broken_link_in_sem_and_dagm_folders(tmp_path: Path) -> None:
    sem = write_sem(tmp_path / "sem")
    (sem / "Normal/normal_9.tif").symlink_to(tmp_path / "nowhere.tif")
    with pytest.raises(DataError, match="normal_9.tif -> .*dangling"):
        read_sem(sem)
    dagm = write_dagm(tmp_path / "dagm")
    (dagm / "Class8/Train/1099.PNG").symlink_to(tmp_path / "nowhere.PNG")
    with pytest.raises(DataError, match="1099.PNG -> .*dangling"):
        read_dagm(dagm)
