"""Issue 14: :func:`adlib.tmpfiles.clean_stale` removes what killed runs left, and says so."""

from __future__ import annotations

import os
import time
from pathlib import Path

from adlib.tmpfiles import clean_stale, format_size


def _make_old(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_killed_checkpoint_write_is_removed_and_reported(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    leftover = checkpoints / "conv_ae.pt.tmp"  # what a SIGKILL during save_checkpoint leaves
    with open(leftover, "wb") as handle:
        handle.truncate(14_000_000)  # 14 MB (sparse: cheap to create)
    _make_old(leftover, 3 * 3600)
    checkpoint = checkpoints / "conv_ae.pt"  # the finished checkpoint must survive
    checkpoint.write_bytes(b"weights")
    _make_old(checkpoint, 3 * 3600)
    lines: list[str] = []

    removed = clean_stale(checkpoints, ["*.pt.tmp"], older_than_s=60, log=lines.append)

    assert removed == [leftover]
    assert not leftover.exists() and checkpoint.read_bytes() == b"weights"
    assert len(lines) == 1
    assert str(leftover) in lines[0] and "14.0 MB" in lines[0] and "3.0 h ago" in lines[0]


def test_young_temporaries_survive_and_nothing_is_said(tmp_path: Path) -> None:
    writing = tmp_path / "model.pt.tmp"  # another run may be writing it right now
    writing.write_bytes(b"x" * 10)
    lines: list[str] = []
    assert clean_stale(tmp_path, ["*.pt.tmp"], older_than_s=600, log=lines.append) == []
    assert writing.exists() and lines == []
    assert clean_stale(tmp_path, ["*.pt.tmp"], log=lines.append) == [writing]  # age 0: all
    assert not writing.exists() and "10 B" in lines[0]


def test_folders_are_measured_by_their_newest_content(tmp_path: Path) -> None:
    partial = tmp_path / ".hazelnut.partial-1234"
    (partial / "train").mkdir(parents=True)
    fresh = partial / "train" / "000.png"
    fresh.write_bytes(bytes(2500))
    _make_old(partial, 7200)
    _make_old(partial / "train", 7200)
    # The folder itself is old, but a file inside was just written: an extraction in progress.
    assert clean_stale(tmp_path, [".*.partial-*"], older_than_s=600, log=None) == []
    _make_old(fresh, 7200)
    lines: list[str] = []
    assert clean_stale(tmp_path, [".*.partial-*"], older_than_s=600, log=lines.append) == [partial]
    assert not partial.exists()
    assert "temporary folder" in lines[0] and "2.5 kB" in lines[0]


def test_links_are_removed_not_followed(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.bin").write_bytes(b"keep")
    work = tmp_path / "work"
    work.mkdir()
    (work / "tmpabcdefgh").symlink_to(precious, target_is_directory=True)
    assert clean_stale(work, ["tmp????????"], log=None) == [work / "tmpabcdefgh"]
    assert (precious / "data.bin").read_bytes() == b"keep"


def test_missing_folder_and_size_format(tmp_path: Path) -> None:
    assert clean_stale(tmp_path / "absent", ["*"]) == []
    assert [format_size(n) for n in (0, 999, 1500, 14_000_000, 5_300_000_000)] == [
        "0 B", "999 B", "1.5 kB", "14.0 MB", "5.3 GB"]
