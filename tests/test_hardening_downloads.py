"""Issue 14, downloads: hostile and damaged archives, limits, hashes, leftovers, plain http.

Every archive is built in ``tmp_path``; downloads come from a loopback server on 127.0.0.1 (or
from a stand-in for ``pooch.retrieve`` that copies a local file). No other address is contacted.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import random
import tarfile
import time
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from archive_helpers import LoopbackServer, mvtec_files, sha256, tar_archive, tree, zip_archive

from adlib.data import archives, download
from adlib.data.archives import ArchiveLimitError, CorruptArchiveError
from adlib.data.download import REGISTRY, DownloadError, UnsafeArchiveError, fetch, safe_extract
from adlib.data.types import DataWarning

BOTTLE = REGISTRY["mvtec-bottle"]


def _fetch(server: LoopbackServer, root: Path, name: str = "bottle.tar.gz", **kw) -> Path:
    kw.setdefault("progress", False)
    return fetch("mvtec-bottle", root=root, url=server.url(name), **kw)


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


# ----------------------------------------------------------------------------- 1. link chains
def _link_chain_archive(path: Path) -> Path:
    """Each link stays inside the target lexically; created in order, b/c/d is 3 levels up."""
    links = [_symlink("a", "."), _symlink("a/b", ".."), _symlink("b/c", ".."),
             _symlink("b/c/d", ".."), _hardlink("b/c/d/escaped.txt", "bottle/train/good/000.png")]
    return tar_archive(path, {"bottle/train/good/000.png": b"overwrites a file outside"}, links)


def test_link_chain_archive_really_escapes_without_the_checks(tmp_path: Path) -> None:
    # The proof that the archive below is hostile: trusted extraction writes 3 levels up.
    archive = _link_chain_archive(tmp_path / "chain.tar.gz")
    dest = tmp_path / "proof" / "x" / "y" / "out"
    dest.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="fully_trusted")
    assert (tmp_path / "proof" / "escaped.txt").read_bytes() == b"overwrites a file outside"


def test_link_chain_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    archive = _link_chain_archive(tmp_path / "chain.tar.gz")
    work = tmp_path / "w1" / "w2" / "w3"
    work.mkdir(parents=True)
    before = tree(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=r"'a' is a symbolic link .*refused"):
        safe_extract(archive, work / "out")
    assert tree(tmp_path) == before


def test_fetch_refuses_link_chain_and_deletes_it(server: LoopbackServer, tmp_path: Path) -> None:
    archive = _link_chain_archive(server.folder / "bottle.tar.gz")
    root = tmp_path / "r1" / "r2" / "data"
    with pytest.raises(UnsafeArchiveError, match="links"):
        _fetch(server, root, known_hash=sha256(archive))
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (root / "downloads" / BOTTLE.filename).exists()
    assert tree(root / "mvtec") == set()  # no staging or partial folder left


@pytest.mark.parametrize("link", [_hardlink("bottle/h", "bottle/train/good/000.png"),
                                  _symlink("bottle/s", "train/good/000.png")])
def test_even_harmless_links_are_refused(tmp_path: Path, link: tarfile.TarInfo) -> None:
    archive = tar_archive(tmp_path / "a.tar", {"bottle/train/good/000.png": b"x"}, [link],
                          mode="w")
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_backslash_names_are_checked_like_slashes(tmp_path: Path) -> None:
    archive = zip_archive(tmp_path / "a.zip", {"bottle\\..\\..\\evil.txt": b"x"})
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.'"):
        safe_extract(archive, tmp_path / "out")


# ----------------------------------------------------------------------------- 2. corruption
def _random_files(n: int = 3, size: int = 40_000) -> dict[str, bytes]:
    rng = random.Random(0)
    files = {f"bottle/train/good/{i:03d}.png": rng.randbytes(size) for i in range(n)}
    return {**files, "bottle/test/good/000.png": b"t", "bottle/ground_truth/x/0_mask.png": b"m"}


def _bit_flipped_tar_gz(path: Path) -> tuple[Path, dict[str, bytes]]:
    """A .tar.gz (default compression) with one bit flipped in the middle of the stream.

    Deflate still decodes it (into wrong bytes); only the gzip CRC-32 at the end can tell.
    """
    files = _random_files()
    tar_archive(path, files)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
    return path, files


def test_bit_flip_is_invisible_to_tarfile_alone(tmp_path: Path) -> None:
    archive, _ = _bit_flipped_tar_gz(tmp_path / "flip.tar.gz")
    with tarfile.open(archive) as tar:  # what extraction used to do: no error at all
        for member in tar.getmembers():
            if member.isfile():
                tar.extractfile(member).read()
    with pytest.raises(gzip.BadGzipFile, match="CRC"):
        gzip.decompress(archive.read_bytes())


def test_bit_flipped_archive_is_refused(tmp_path: Path) -> None:
    archive, _ = _bit_flipped_tar_gz(tmp_path / "flip.tar.gz")
    before = tree(tmp_path)
    with pytest.raises(CorruptArchiveError, match=r"flip\.tar\.gz is damaged .*CRC"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == before


def test_corrupt_unverified_archive_is_never_trusted(server: LoopbackServer, tmp_path: Path) -> None:
    root = tmp_path / "data"
    served = server.folder / "bottle.tar.gz"
    _bit_flipped_tar_gz(served)
    with pytest.raises(CorruptArchiveError, match="was deleted"):
        _fetch(server, root, allow_unverified=True)
    downloads = root / "downloads"
    assert list(downloads.iterdir()) == []  # no archive, no recorded hash
    assert tree(root / "mvtec") == set()  # no partial folder

    # The server now has the good archive: fetching again gets it, and trusts that one.
    good = tar_archive(served, _random_files())
    out = _fetch(server, root, allow_unverified=True)
    assert (out / "bottle/train/good/001.png").read_bytes() == _random_files()[
        "bottle/train/good/001.png"]
    record = downloads / (BOTTLE.filename + ".first-download.sha256")
    assert record.read_text().strip() == sha256(good)


def test_damaged_header_in_plain_tar_is_noticed(tmp_path: Path) -> None:
    archive = tar_archive(tmp_path / "a.tar", _random_files(size=600), mode="w")
    data = bytearray(archive.read_bytes())
    second = 512 + 1024  # header of the second member (first: 512 header + 600 data -> 1024)
    assert data[second:second + 6] == b"bottle"
    data[second] ^= 0x01  # header checksum now fails: tarfile silently ends the archive here
    archive.write_bytes(bytes(data))
    with tarfile.open(archive) as tar:
        assert len(tar.getmembers()) == 1  # the silent truncation this guards against
    with pytest.raises(CorruptArchiveError, match="non-zero data after the end"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_archives_are_refused(tmp_path: Path) -> None:
    full = tar_archive(tmp_path / "a.tar", _random_files(size=600), mode="w")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(full.read_bytes()[:512 + 1024])  # ends exactly after the first member
    with pytest.raises(CorruptArchiveError, match="end-of-archive marker"):
        safe_extract(cut, tmp_path / "out1")
    gz = tar_archive(tmp_path / "a.tar.gz", _random_files())
    cut_gz = tmp_path / "cut.tar.gz"
    cut_gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(CorruptArchiveError, match="damaged"):
        safe_extract(cut_gz, tmp_path / "out2")
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()


def test_bit_flipped_zip_member_is_refused(tmp_path: Path) -> None:
    files = _random_files()
    archive = zip_archive(tmp_path / "a.zip", files)
    data = bytearray(archive.read_bytes())
    at = bytes(data).index(files["bottle/train/good/002.png"][500:532])
    data[at] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(CorruptArchiveError, match="CRC"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_layout_installs_nothing_and_records_no_hash(server: LoopbackServer,
                                                          tmp_path: Path) -> None:
    tar_archive(server.folder / "bottle.tar.gz", {"cable/train/good/0.png": b"x"})
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="holds no 'bottle' folder"):
        _fetch(server, root, allow_unverified=True)
    assert list((root / "downloads").iterdir()) == []
    assert tree(root / "mvtec") == set()


def test_legacy_stamp_is_re_extracted_with_checks(server: LoopbackServer, tmp_path: Path) -> None:
    # A stamp written before the checks existed is not trusted: the archive is extracted again.
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    root = tmp_path / "data"
    _fetch(server, root, known_hash=sha256(archive))
    stamp = root / "mvtec" / f".{BOTTLE.name}.extracted.json"
    stamp.write_text(stamp.read_text().replace('"check"', '"old"'))
    (root / "mvtec/bottle/train/good/000.png").write_bytes(b"tampered")
    _fetch(server, root, known_hash=sha256(archive))
    assert (root / "mvtec/bottle/train/good/000.png").read_bytes() == b"png-bytes-0"


# ----------------------------------------------------------------------------- 3. limits
def test_compression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        info = tarfile.TarInfo("bottle/zeros.bin")
        info.size = 50 * 10**6
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 100_000
    before = tree(tmp_path)
    start = time.perf_counter()
    with pytest.raises(ArchiveLimitError, match=r"size is at least 50\.0 MB, more than the limit of 10\.0 MB"):
        safe_extract(bomb, tmp_path / "out", max_bytes=10 * 10**6)
    assert time.perf_counter() - start < 5  # refused from the header, not after unpacking
    assert tree(tmp_path) == before


def test_many_small_members_add_up_to_the_limit(tmp_path: Path) -> None:
    files = {f"bottle/{i}.bin": bytes(10**6) for i in range(12)}
    bomb = tar_archive(tmp_path / "many.tar.xz", files, mode="w:xz")
    with pytest.raises(ArchiveLimitError, match="uncompressed size"):
        safe_extract(bomb, tmp_path / "out", max_bytes=5 * 10**6)
    zbomb = zip_archive(tmp_path / "many.zip", files, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(ArchiveLimitError, match="uncompressed size"):
        safe_extract(zbomb, tmp_path / "out", max_bytes=5 * 10**6)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_absurd_member_count_is_refused(tmp_path: Path, kind: str) -> None:
    files = {f"bottle/{i}.txt": b"" for i in range(30)}
    archive = (tar_archive(tmp_path / "a.tar.bz2", files, mode="w:bz2") if kind == "tar"
               else zip_archive(tmp_path / "a.zip", files))
    with pytest.raises(ArchiveLimitError, match="number of members (is at least )?(21|30), more "
                                                "than the limit of 20"):
        safe_extract(archive, tmp_path / "out", max_members=20)
    assert safe_extract(archive, tmp_path / "ok", max_members=30) == tmp_path / "ok"
    assert len(list((tmp_path / "ok" / "bottle").iterdir())) == 30


def test_default_limits_admit_the_largest_dataset() -> None:
    assert archives.DEFAULT_MAX_BYTES >= 3 * 5.3e9  # MVTec AD unpacks to about 5 GB
    assert archives.DEFAULT_MAX_MEMBERS >= 10 * 7000


def test_limit_from_environment_keeps_a_verified_archive(server: LoopbackServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    root = tmp_path / "data"
    monkeypatch.setenv("ADLIB_MAX_ARCHIVE_BYTES", "10")
    with pytest.raises(ArchiveLimitError, match="ADLIB_MAX_ARCHIVE_BYTES"):
        _fetch(server, root, known_hash=sha256(archive))
    cached = root / "downloads" / BOTTLE.filename
    assert sha256(cached) == sha256(archive)  # verified and merely too large: kept for a retry
    monkeypatch.delenv("ADLIB_MAX_ARCHIVE_BYTES")
    _fetch(server, root, known_hash=sha256(archive))
    assert server.counts == {"/bottle.tar.gz": 1}  # the retry used the kept archive
    monkeypatch.setenv("ADLIB_MAX_ARCHIVE_BYTES", "lots")
    with pytest.raises(DownloadError, match="ADLIB_MAX_ARCHIVE_BYTES='lots' is not a number"):
        safe_extract(archive, tmp_path / "x")


def test_not_enough_disk_space_is_refused_before_writing(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tar_archive(tmp_path / "a.tar.gz", _random_files())
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda _path: SimpleNamespace(free=1000))
    before = tree(tmp_path)
    with pytest.raises(ArchiveLimitError, match=r"only 1\.0 kB is free"):
        safe_extract(archive, tmp_path / "out")
    assert tree(tmp_path) == before


def test_wrong_known_hash_keeps_the_registry_verified_archive(
        server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    monkeypatch.setitem(download.REGISTRY, "mvtec-bottle",
                        dataclasses.replace(BOTTLE, sha256=sha256(archive)))
    root = tmp_path / "data"
    _fetch(server, root)
    cached = root / "downloads" / BOTTLE.filename
    with pytest.raises(DownloadError, match="matches adlib's own checksum .* was kept"):
        _fetch(server, root, known_hash="f" * 64)
    assert sha256(cached) == sha256(archive)


def test_wrong_known_hash_keeps_a_trusted_first_download(server: LoopbackServer,
                                                         tmp_path: Path) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    root = tmp_path / "data"
    _fetch(server, root, allow_unverified=True)
    with pytest.raises(DownloadError, match="was kept"):
        _fetch(server, root, known_hash="md5:" + "0" * 32)
    assert sha256(root / "downloads" / BOTTLE.filename) == sha256(archive)


def test_hash_with_spaces_newline_case_and_prefix_is_accepted(server: LoopbackServer,
                                                              tmp_path: Path) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    for i, spelled in enumerate([sha256(archive) + "\n", "  " + sha256(archive).upper() + " ",
                                 "SHA256:" + sha256(archive) + "\r\n"]):
        out = _fetch(server, tmp_path / f"data{i}", known_hash=spelled)
        assert (out / "bottle/train/good/000.png").is_file()
    assert download.normalise_hash(" MD5:" + "AB" * 16 + "\n") == "md5:" + "ab" * 16


@pytest.mark.parametrize("bad, message", [("abc123", "expected 64 hex digits, got 6"),
                                          ("g" * 64, "expected 64 hex digits"),
                                          ("crc32:1234", "unknown hash algorithm 'crc32'")])
def test_malformed_hash_is_refused_before_downloading(server: LoopbackServer, tmp_path: Path,
                                                      bad: str, message: str) -> None:
    tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    with pytest.raises(DownloadError, match=message):
        _fetch(server, tmp_path / "data", known_hash=bad)
    assert server.counts == {}


# ----------------------------------------------------------------------------- 3. leftovers
def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (old, old), follow_symlinks=False)


def test_fetch_removes_and_reports_stale_temporaries(server: LoopbackServer, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    root = tmp_path / "data"
    downloads, target = root / "downloads", root / "mvtec"
    downloads.mkdir(parents=True)
    killed = downloads / "tmpk3_9zq1x"  # the name pooch's NamedTemporaryFile gives its download
    killed.write_bytes(bytes(123_456))
    live = downloads / "tmpa1b2c3d4"  # another fetch writing right now: too young to touch
    live.write_bytes(b"in progress")
    mine = downloads / "tmp_notes.txt"  # not a pooch name
    mine.write_text("keep")
    staging = target / ".mvtec-cable.staging-0badf00d" / "cable"
    staging.mkdir(parents=True)
    (staging / "big.png").write_bytes(bytes(5000))
    for p in (killed, mine, staging.parent):
        _age(p, 2 * download.STALE_AFTER_S)

    _fetch(server, root, known_hash=sha256(archive))

    out = capsys.readouterr().out
    assert f"removed stale temporary file {killed} (123.5 kB" in out
    assert f"removed stale temporary folder {staging.parent} (5.0 kB" in out
    assert not killed.exists() and not staging.parent.exists()
    assert live.exists() and mine.read_text() == "keep"


# ----------------------------------------------------------------------------- 3. plain http
def _fake_retrieve(archive: Path, calls: list[str]):
    def retrieve(url, known_hash, fname, path, progressbar):  # pooch.retrieve's arguments
        calls.append(url)
        dest = Path(path) / fname
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(archive.read_bytes())
        return str(dest)
    return retrieve


def test_sem_over_plain_http_warns_that_integrity_rests_on_the_checksum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pooch

    sem = REGISTRY["sem"]
    assert sem.url.startswith("http://") and sem.sha256 is None
    archive = zip_archive(tmp_path / "sem.zip", {"data/Normal/n.tif": b"x",
                                                 "data/Anomalous/images/a.tif": b"y"})
    calls: list[str] = []
    monkeypatch.setattr(pooch, "retrieve", _fake_retrieve(archive, calls))  # no network
    with pytest.warns(DataWarning, match=r"plain http .* integrity rests on nothing"):
        out = fetch("sem", root=tmp_path / "a", allow_unverified=True, progress=False)
    assert (out / "Normal/n.tif").is_file()
    with pytest.warns(DataWarning, match="integrity rests on the checksum you passed"):
        fetch("sem", root=tmp_path / "b", known_hash=sha256(archive), progress=False)
    assert calls == [sem.url, sem.url]


def test_no_http_warning_for_loopback_or_a_registry_checksum(
        server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        _fetch(server, tmp_path / "a", known_hash=sha256(archive))  # 127.0.0.1: no transit
        monkeypatch.setitem(download.REGISTRY, "mvtec-bottle",
                            dataclasses.replace(BOTTLE, url="http://example.invalid/b.tar.gz",
                                                sha256=sha256(archive)))
        download._warn_plain_http(download.REGISTRY["mvtec-bottle"],
                                  "http://example.invalid/b.tar.gz", None)
    with pytest.warns(DataWarning, match="plain http"):
        download._warn_plain_http(BOTTLE, "http://example.invalid/b.tar.gz", sha256(archive))
