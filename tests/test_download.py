"""Downloads: checksum before use and on cache hits, safe extraction, clear refusals.

Archives are built in ``tmp_path`` and served by a loopback HTTP server; no internet is used.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest
from archive_helpers import LoopbackServer, mvtec_files, sha256, tar_archive, tree, zip_archive

from adlib.data import download
from adlib.data.download import REGISTRY, DownloadError, UnsafeArchiveError, fetch, safe_extract


# ----------------------------------------------------------------------------- happy paths
def test_tar_gz_fetch_verifies_extracts_and_reuses_cache(server: LoopbackServer, tmp_path: Path) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    digest = sha256(archive)
    root = tmp_path / "data"

    out = fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), known_hash=digest, progress=False)

    assert out == root / "mvtec"
    assert (out / "bottle/train/good/000.png").read_bytes() == b"png-bytes-0"
    assert (out / "bottle/ground_truth/broken/000_mask.png").is_file()
    cached = root / "downloads" / REGISTRY["mvtec-bottle"].filename
    assert sha256(cached) == digest
    assert server.counts == {"/bottle.tar.gz": 1}
    assert not list((root / "mvtec").glob(".*staging*")), "staging folder left behind"

    # Second call: cache hit, no new request, same folder.
    again = fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), known_hash=digest, progress=False)
    assert again == out
    assert server.counts == {"/bottle.tar.gz": 1}


def test_cache_hit_is_rehashed_and_corruption_never_used(server: LoopbackServer, tmp_path: Path) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    digest = sha256(archive)
    root = tmp_path / "data"
    fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), known_hash=digest, progress=False)
    cached = root / "downloads" / REGISTRY["mvtec-bottle"].filename

    # Corrupt the cached copy: the next call must notice and download a good copy again.
    cached.write_bytes(b"corrupted" + cached.read_bytes()[9:])
    fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), known_hash=digest, progress=False)
    assert server.counts["/bottle.tar.gz"] == 2
    assert sha256(cached) == digest

    # Corrupt it again while the server also serves a bad file: raise, and keep no archive.
    cached.write_bytes(b"corrupted")
    (server.folder / "bottle.tar.gz").write_bytes(b"also corrupted")
    with pytest.raises(DownloadError, match="checksum"):
        fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), known_hash=digest, progress=False)
    assert not cached.exists()


def test_zip_fetch_with_wrap_for_dagm(server: LoopbackServer, tmp_path: Path) -> None:
    # An archive whose top level is Train/Test (no Class8 folder) is wrapped into Class8/.
    files = {"Train/0001.PNG": b"img", "Train/Label/Labels.txt": b"1\n", "Test/0002.PNG": b"img2"}
    archive = zip_archive(server.folder / "Class8.zip", files)
    root = tmp_path / "data"

    out = fetch(
        "dagm-class8", root=root, url=server.url("Class8.zip"), known_hash=f"md5:{hashlib.md5(archive.read_bytes()).hexdigest()}", progress=False
    )

    assert out == root / "dagm"
    assert (out / "Class8/Train/Label/Labels.txt").read_bytes() == b"1\n"
    assert (out / "Class8/Test/0002.PNG").is_file()


# ----------------------------------------------------------------------------- refusals
def test_wrong_checksum_raises_and_leaves_no_archive(server: LoopbackServer, tmp_path: Path) -> None:
    tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="checksum"):
        fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), known_hash="0" * 64, progress=False)
    downloads = root / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []
    assert not (root / "mvtec").exists()


def test_no_checksum_is_refused_unless_allowed(server: LoopbackServer, tmp_path: Path) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    root = tmp_path / "data"
    assert REGISTRY["mvtec-bottle"].sha256 is None
    with pytest.raises(DownloadError, match="allow_unverified"):
        fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), progress=False)
    assert server.counts == {}

    out = fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), progress=False, allow_unverified=True)
    assert (out / "bottle/train/good/000.png").is_file()
    # Trust on first use: the first download's hash is now enforced on the cached archive.
    cached = root / "downloads" / REGISTRY["mvtec-bottle"].filename
    assert (cached.parent / (cached.name + ".first-download.sha256")).read_text().strip() == sha256(archive)
    cached.write_bytes(b"tampered")
    fetch("mvtec-bottle", root=root, url=server.url("bottle.tar.gz"), progress=False)
    assert server.counts["/bottle.tar.gz"] == 2
    assert sha256(cached) == sha256(archive)


def _escape_cases(tmp_path: Path) -> dict[str, Path]:
    good = {"bottle/train/good/000.png": b"ok"}
    dotdot = tarfile.TarInfo("bottle/../../escaped.txt")
    dotdot.size = 0
    absolute = tarfile.TarInfo(str(tmp_path / "absolute_escape.txt"))
    absolute.size = 0
    link = tarfile.TarInfo("bottle/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../outside"
    hard = tarfile.TarInfo("bottle/hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "../outside_hard"
    cases = {}
    for name, info in {"dotdot": dotdot, "absolute": absolute, "symlink": link, "hardlink": hard}.items():
        cases[name] = tar_archive(tmp_path / f"{name}.tar.gz", good, extra=[info])
    zip_path = tmp_path / "zipslip.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("bottle/ok.png", b"ok")
        archive.writestr("../zip_escape.txt", b"bad")
    cases["zip-dotdot"] = zip_path
    return cases


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink", "zip-dotdot"])
def test_safe_extract_refuses_escaping_members(tmp_path: Path, case: str) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    archive = _escape_cases(archives)[case]
    work = tmp_path / "work"
    work.mkdir()
    before = tree(tmp_path)

    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, work / "out")

    assert not (work / "out").exists()
    assert tree(tmp_path) == before, "something was written"


def test_fetch_deletes_unsafe_archive(server: LoopbackServer, tmp_path: Path) -> None:
    archive = _escape_cases(server.folder)["symlink"]
    root = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError, match="outside"):
        fetch("mvtec-bottle", root=root, url=server.url(archive.name), known_hash=sha256(archive), progress=False)
    assert not (root / "downloads" / REGISTRY["mvtec-bottle"].filename).exists()
    assert not (root / "mvtec" / "bottle").exists()
    assert not (tmp_path / "outside").exists()


def test_existing_foreign_folder_is_not_overwritten(server: LoopbackServer, tmp_path: Path) -> None:
    archive = tar_archive(server.folder / "bottle.tar.gz", mvtec_files())
    root = tmp_path / "data"
    mine = root / "mvtec" / "bottle"
    mine.mkdir(parents=True)
    (mine / "my_notes.txt").write_text("keep me")
    with pytest.raises(DownloadError, match="not extracted by adlib"):
        fetch("mvtec-bottle", root=root, url=server.url(archive.name), known_hash=sha256(archive), progress=False)
    assert (mine / "my_notes.txt").read_text() == "keep me"


def test_rsdd_explains_where_to_get_it(tmp_path: Path) -> None:
    assert REGISTRY["rsdd"].url is None
    with pytest.raises(DownloadError) as info:
        fetch("rsdd", root=tmp_path)
    message = str(info.value)
    assert "no stable public download URL" in message
    assert str(tmp_path / "rsdd") in message and "read_rsdd" in message


def test_unknown_name_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="mvtec-hazelnut"):
        fetch("mvtec-hazelnutt", root=tmp_path)


def test_registry_is_complete() -> None:
    for category in download.MVTEC_CATEGORIES:
        entry = REGISTRY[f"mvtec-{category}"]
        assert entry.url and entry.url.endswith(f"/{category}.tar.xz")
    assert len(REGISTRY["mvtec"].sha256 or "") == 64
    for entry in REGISTRY.values():
        assert entry.sha256 or entry.hash_note, entry.name  # no checksum without a reason
        assert entry.licence and entry.reader and entry.layout
    rows = download.registry_table()
    assert {row["name"] for row in rows} == set(REGISTRY)


def test_cli_data_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adlib.cli import main

    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert "mvtec-hazelnut" in listing and "dagm-class8" in listing and "rsdd" in listing
    assert main(["data", "fetch", "rsdd", "--root", str(tmp_path)]) == 1
    assert "no stable public download URL" in capsys.readouterr().err
    assert main(["data", "fetch", "sem", "--root", str(tmp_path)]) == 1  # no checksum: refused
    assert "--allow-unverified" in capsys.readouterr().err
    assert not (tmp_path / "downloads").exists()


def test_two_categories_share_one_mvtec_folder(server: LoopbackServer, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for category in ("bottle", "cable"):
        archive = tar_archive(server.folder / f"{category}.tar.gz", mvtec_files(category))
        out = fetch(f"mvtec-{category}", root=root, url=server.url(archive.name), known_hash=sha256(archive), progress=False)
        assert out == root / "mvtec"
    assert (root / "mvtec/bottle/train/good/000.png").is_file()
    assert (root / "mvtec/cable/train/good/000.png").is_file()
    assert (root / "mvtec/license.txt").is_file()  # shared file from both archives: replaced, not refused
