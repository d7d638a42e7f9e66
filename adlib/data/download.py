"""Dataset registry and verified downloads.

Every public dataset the course can use is described by one :class:`DatasetEntry`: where the
archive lives, its checksum (or why there is none), its licence, which folder it extracts to and
which reader takes the result. :func:`fetch` downloads an archive with :mod:`pooch` (streamed to
a temporary file with a progress bar, checksum verified, then renamed), verifies it again on every
cache hit, and extracts it with a safe extractor that refuses members leaving the target folder.

Layout on disk (``root`` defaults to :func:`adlib.config.data_root`)::

    <root>/downloads/<archive file>       # the verified archive, kept as the cache
    <root>/<extract_to>/...               # the extracted dataset, in its original layout

Example:
    >>> from adlib.data.download import fetch                          # doctest: +SKIP
    >>> root = fetch("mvtec-hazelnut")                                 # doctest: +SKIP
    >>> split = read_mvtec(root, "hazelnut")                           # doctest: +SKIP

Nothing here touches the disk or the network at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from adlib.data.types import DataError

__all__ = [
    "REGISTRY",
    "DatasetEntry",
    "DownloadError",
    "UnsafeArchiveError",
    "fetch",
    "registry_table",
    "safe_extract",
]

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)

_STAMP_SUFFIX = ".extracted.json"


class DownloadError(DataError):
    """A download failed, was refused, or its checksum did not match."""


class UnsafeArchiveError(DownloadError):
    """An archive holds a member that would be written outside the target folder."""


@dataclass(frozen=True)
class DatasetEntry:
    """One downloadable dataset (or one part of it).

    Attributes:
        name: registry key, e.g. ``"mvtec-hazelnut"``.
        title: human-readable description.
        url: direct download URL, or ``None`` when there is no stable public URL.
        sha256: expected hash (``"<hex>"`` = SHA-256, or ``"md5:<hex>"``), or ``None``.
        hash_note: why ``sha256`` is ``None`` (or where the published hash comes from).
        archive: ``"tar.xz"``, ``"tar.gz"``, ``"tar"`` or ``"zip"``.
        size: approximate download size as published, or ``None`` when not published.
        licence: licence / terms of use.
        extract_to: folder under the data root that the archive is extracted into.
        reader: the :mod:`adlib.data` reader that takes the returned folder.
        marker: a folder the reader root must contain (e.g. the category folder).
        wrap: when the archive lacks the ``marker`` folder at its top, put its content inside one.
        homepage: landing page with the terms and the official instructions.
        layout: the folder layout the reader expects (shown in errors).
    """

    name: str
    title: str
    url: str | None
    sha256: str | None
    hash_note: str
    archive: str
    size: str | None
    licence: str
    extract_to: str
    reader: str
    marker: str
    wrap: bool = False
    homepage: str = ""
    layout: str = ""

    @property
    def filename(self) -> str:
        """File name of the cached archive under ``<root>/downloads``."""
        return f"{self.name}.{self.archive}"


# --------------------------------------------------------------------------- registry
_MVTEC_SHARE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download"
# Per-category archives as linked from the MVTec AD download page (2021 links; MVTec now hands
# out download links after a form, so these may expire: then download by hand and pass `url=`).
_MVTEC_PARTS: dict[str, str] = {
    "bottle": f"{_MVTEC_SHARE}/420937370-1629951468/bottle.tar.xz",
    "cable": f"{_MVTEC_SHARE}/420937413-1629951498/cable.tar.xz",
    "capsule": f"{_MVTEC_SHARE}/420937454-1629951595/capsule.tar.xz",
    "carpet": f"{_MVTEC_SHARE}/420937484-1629951672/carpet.tar.xz",
    "grid": f"{_MVTEC_SHARE}/420937487-1629951814/grid.tar.xz",
    "hazelnut": f"{_MVTEC_SHARE}/420937545-1629951845/hazelnut.tar.xz",
    "leather": f"{_MVTEC_SHARE}/420937607-1629951964/leather.tar.xz",
    "metal_nut": f"{_MVTEC_SHARE}/420937637-1629952063/metal_nut.tar.xz",
    "pill": "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/"
    "420938129-1629953099/pill.tar.xz",
    "screw": f"{_MVTEC_SHARE}/420938130-1629953152/screw.tar.xz",
    "tile": f"{_MVTEC_SHARE}/420938133-1629953189/tile.tar.xz",
    "toothbrush": f"{_MVTEC_SHARE}/420938134-1629953256/toothbrush.tar.xz",
    "transistor": f"{_MVTEC_SHARE}/420938166-1629953277/transistor.tar.xz",
    "wood": f"{_MVTEC_SHARE}/420938383-1629953354/wood.tar.xz",
    "zipper": f"{_MVTEC_SHARE}/420938385-1629953449/zipper.tar.xz",
}
_MVTEC_HOME = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
_MVTEC_LICENCE = "CC BY-NC-SA 4.0 (c) MVTec Software GmbH: non-commercial use only"
_MVTEC_LAYOUT = (
    "<root>/<category>/train/good/*.png, <root>/<category>/test/<defect>/*.png, "
    "<root>/<category>/ground_truth/<defect>/*_mask.png"
)
_DAGM_RECORD = "https://zenodo.org/record/8086136"
_DAGM_LAYOUT = (
    "<root>/ClassN/{Train,Test}/NNNN.PNG and <root>/ClassN/{Train,Test}/Label/Labels.txt "
    "(+ NNNN_label.PNG masks)"
)
_SEM_HOME = "http://web.mi.imati.cnr.it/ettore/NanoTWICE/"
_RSDD_PAPER = (
    'J. Gan, Q. Li, J. Wang, H. Yu, "A hierarchical extractor-based visual rail surface '
    'inspection system", IEEE Sensors Journal 17(23), 2017'
)


def _build_registry() -> dict[str, DatasetEntry]:
    entries: list[DatasetEntry] = [
        DatasetEntry(
            name="mvtec",
            title="MVTec AD, all 15 categories",
            url=f"{_MVTEC_SHARE}/420938113-1629952094/mvtec_anomaly_detection.tar.xz",
            sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
            hash_note="SHA-256 as used by anomalib's MVTec AD DownloadInfo",
            archive="tar.xz",
            size="4.9 GB",
            licence=_MVTEC_LICENCE,
            extract_to="mvtec",
            reader="adlib.data.mvtec.read_mvtec(root, category)",
            marker="bottle",
            homepage=_MVTEC_HOME,
            layout=_MVTEC_LAYOUT,
        )
    ]
    for category, url in _MVTEC_PARTS.items():
        entries.append(
            DatasetEntry(
                name=f"mvtec-{category}",
                title=f"MVTec AD, category {category}",
                url=url,
                sha256=None,
                hash_note="MVTec publishes no checksum for the per-category archives",
                archive="tar.xz",
                size=None,
                licence=_MVTEC_LICENCE,
                extract_to="mvtec",
                reader="adlib.data.mvtec.read_mvtec(root, category)",
                marker=category,
                homepage=_MVTEC_HOME,
                layout=_MVTEC_LAYOUT,
            )
        )
    for number in range(1, 11):
        entries.append(
            DatasetEntry(
                name=f"dagm-class{number}",
                title=f"DAGM 2007 (Wieler & Hahn), Class{number}, Zenodo re-release",
                url=f"{_DAGM_RECORD}/files/Class{number}.zip?download=1",
                sha256=None,
                hash_note=(
                    "Zenodo shows an md5 per file on the record page; it is not recorded here "
                    "because it could not be checked offline: pass known_hash='md5:<hex>' "
                    "copied from the record page"
                ),
                archive="zip",
                size=None,
                licence="CC BY 4.0 (Zenodo record 8086136)",
                extract_to="dagm",
                reader=f'adlib.data.dagm.read_dagm(root, "Class{number}")',
                marker=f"Class{number}",
                wrap=True,
                homepage=_DAGM_RECORD,
                layout=_DAGM_LAYOUT,
            )
        )
    entries.append(
        DatasetEntry(
            name="sem",
            title="NanoTWICE SEM images of nanofibrous material (Carrera et al. 2017)",
            url=f"{_SEM_HOME}dfg05er_Data.zip",
            sha256=None,
            hash_note="the NanoTWICE page publishes no checksum",
            archive="zip",
            size=None,
            licence="research use; terms and citation on the NanoTWICE page",
            extract_to="sem",
            reader="adlib.data.sem.read_sem(root)",
            marker="Normal",
            homepage=_SEM_HOME,
            layout="<root>/Normal/*.tif (5 defect-free), <root>/Anomalous/images/*.tif, "
            "<root>/Anomalous/gt/*.png (40 anomalous with masks)",
        )
    )
    entries.append(
        DatasetEntry(
            name="rsdd",
            title="RSDDs rail surface defects (Gan et al. 2017), Type-I and Type-II",
            url=None,
            sha256=None,
            hash_note="no stable public URL: distributed by the authors on request / file shares",
            archive="zip",
            size=None,
            licence="research use; ask the authors (Gan et al., IEEE Sensors Journal 2017)",
            extract_to="rsdd",
            reader="adlib.data.rsdd.read_rsdd(root)",
            marker="Type-I RSDDs dataset",
            homepage=_RSDD_PAPER,
            layout="<root>/Type-I RSDDs dataset/{Rail surface images,GroundTruth}/*.jpg "
            "(and the same for Type-II); see adlib.data.rsdd for the exact layout",
        )
    )
    return {entry.name: entry for entry in entries}


REGISTRY: dict[str, DatasetEntry] = _build_registry()
"""All known datasets, by name."""


def registry_table() -> list[dict[str, str]]:
    """One row per registry entry (for ``adlib data list`` and the docs)."""
    rows = []
    for entry in REGISTRY.values():
        rows.append(
            {
                "name": entry.name,
                "archive": entry.archive,
                "size": entry.size or "?",
                "checksum": "yes" if entry.sha256 else "no",
                "licence": entry.licence,
                "reader": entry.reader,
                "url": entry.url or "(none: manual download)",
            }
        )
    return rows


def _entry(name: str) -> DatasetEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise DownloadError(f"Unknown dataset {name!r}. Known datasets: {known}.") from None


# --------------------------------------------------------------------------- hashing
def _file_hash(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _split_hash(known_hash: str) -> tuple[str, str]:
    """``"md5:abc"`` -> ``("md5", "abc")``; a bare hex string is SHA-256."""
    if ":" in known_hash:
        algorithm, value = known_hash.split(":", 1)
        return algorithm.lower(), value.lower()
    return "sha256", known_hash.lower()


def _hash_matches(path: Path, known_hash: str) -> bool:
    algorithm, value = _split_hash(known_hash)
    return _file_hash(path, algorithm) == value


# --------------------------------------------------------------------------- extraction
def _is_within(base: Path, target: Path) -> bool:
    try:
        target.relative_to(base)
    except ValueError:
        return False
    return True


def _check_member_name(name: str, dest: Path, archive: Path) -> Path:
    """Resolve an archive member name under ``dest``; raise if it could escape."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member with an empty or invalid name: {name!r}")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; refusing to extract anything."
        )
    if ".." in posix.parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} contains '..' and would leave the target folder; "
            "refusing to extract anything."
        )
    resolved = (dest / Path(*posix.parts)).resolve() if posix.parts else dest.resolve()
    if not _is_within(dest.resolve(), resolved):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} resolves to {resolved}, outside {dest}; "
            "refusing to extract anything."
        )
    return resolved


def _link_target_ok(member_name: str, link: str, dest: Path) -> bool:
    """A link target (relative to the member's folder) must stay inside ``dest``."""
    if PurePosixPath(link).is_absolute() or link.startswith(("/", "\\")):
        return False
    base = (dest / PurePosixPath(member_name).parent).resolve()
    return _is_within(dest.resolve(), (base / link).resolve())


def _archive_kind(path: Path) -> str:
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise DownloadError(f"{path}: neither a zip nor a tar archive (corrupted or wrong file?).")


def _validate_tar(tar: tarfile.TarFile, dest: Path, archive: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for member in members:
        _check_member_name(member.name, dest, archive)
        if member.issym():
            if not _link_target_ok(member.name, member.linkname, dest):
                raise UnsafeArchiveError(
                    f"{archive}: symbolic link {member.name!r} -> {member.linkname!r} points "
                    "outside the target folder; refusing to extract anything."
                )
        elif member.islnk():
            try:  # hard-link targets are archive paths, relative to the archive root
                _check_member_name(member.linkname, dest, archive)
            except UnsafeArchiveError:
                raise UnsafeArchiveError(
                    f"{archive}: hard link {member.name!r} -> {member.linkname!r} points outside "
                    "the target folder; refusing to extract anything."
                ) from None
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: member {member.name!r} is a device, fifo or other special file; "
                "refusing to extract anything."
            )
    return members


def _extract_tar(path: Path, dest: Path) -> None:
    with tarfile.open(path) as tar:
        members = _validate_tar(tar, dest, path)
        # Links (validated above) are created last, so no later member is written through one.
        ordered = [m for m in members if not (m.issym() or m.islnk())]
        ordered += [m for m in members if m.issym() or m.islnk()]
        for member in ordered:
            target = dest / Path(*PurePosixPath(member.name).parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() guarantees a stream
                    raise DownloadError(f"{path}: cannot read member {member.name!r}")
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, (member.mode & 0o755) | stat.S_IRUSR | stat.S_IWUSR)
            elif member.issym():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, target)
            else:  # hard link: copy the (already extracted, validated) file
                link_source = dest / Path(*PurePosixPath(member.linkname).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(link_source, target)


def _extract_zip(path: Path, dest: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        for info in infos:
            _check_member_name(info.filename, dest, path)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == stat.S_IFLNK:
                raise UnsafeArchiveError(
                    f"{path}: member {info.filename!r} is a symbolic link; zip archives with "
                    "links are refused."
                )
        bad = archive.testzip()
        if bad is not None:
            raise DownloadError(f"{path}: member {bad!r} is corrupted (CRC mismatch).")
        for info in infos:
            target = dest / Path(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)


def safe_extract(archive: Path | str, dest: Path | str) -> Path:
    """Extract a tar (.tar, .tar.gz, .tar.xz) or zip archive into ``dest``, safely.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    paths resolving outside ``dest``, links pointing outside ``dest`` (and any link in a zip) and
    special files make it raise :class:`UnsafeArchiveError` with nothing extracted. The content
    goes to a temporary folder next to ``dest`` first and is renamed into place at the end, so
    ``dest`` never holds a half-extracted archive.

    Args:
        archive: the archive file.
        dest: folder to create; must not exist yet.

    Returns:
        ``dest``.

    Raises:
        UnsafeArchiveError: a member would leave ``dest``.
        DownloadError: ``dest`` exists, or the archive is corrupted.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise DownloadError(f"{dest} already exists; remove it or extract elsewhere.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        kind = _archive_kind(archive)
        try:
            if kind == "zip":
                _extract_zip(archive, tmp)
            else:
                _extract_tar(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise DownloadError(f"{archive}: extraction failed ({exc}); the archive is corrupted.") from exc
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------- fetch
def _find_reader_root(folder: Path, marker: str, depth: int = 2) -> Path | None:
    """The shallowest folder at most ``depth`` levels under ``folder`` that holds ``marker``."""
    level = [folder]
    for _ in range(depth + 1):
        for candidate in level:
            if (candidate / marker).is_dir():
                return candidate
        level = [p for c in level for p in sorted(c.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return None


def _iter_top(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.iterdir()))


def _stamp_path(target: Path, entry: DatasetEntry) -> Path:
    return target / f".{entry.name}{_STAMP_SUFFIX}"


def _owned_by_stamps(target: Path) -> set[str]:
    owned: set[str] = set()
    for stamp in target.glob(f".*{_STAMP_SUFFIX}"):
        try:
            owned.update(json.loads(stamp.read_text(encoding="utf-8")).get("items", []))
        except (OSError, ValueError):
            continue
    return owned


def _install(archive: Path, archive_hash: str, entry: DatasetEntry, target: Path) -> None:
    """Extract ``archive`` and move its top-level items into ``target`` (with a stamp)."""
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".{entry.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        safe_extract(archive, staging)
        if entry.wrap and _find_reader_root(staging, entry.marker) is None:
            wrapped = staging / entry.marker
            wrapped.mkdir()
            for item in list(_iter_top(staging)):
                if item != wrapped:
                    os.replace(item, wrapped / item.name)
        items = [p for p in _iter_top(staging) if not p.name.startswith(".")]
        owned = _owned_by_stamps(target)
        for item in items:
            dest = target / item.name
            if dest.exists() or dest.is_symlink():
                if item.name not in owned:
                    raise DownloadError(
                        f"{dest} already exists and was not extracted by adlib; move it away "
                        f"(or point `root=` elsewhere) and fetch {entry.name!r} again."
                    )
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
            os.replace(item, dest)
        stamp = {"archive": archive.name, "sha256": archive_hash, "items": [p.name for p in items]}
        tmp_stamp = _stamp_path(target, entry).with_suffix(".tmp")
        tmp_stamp.write_text(json.dumps(stamp, indent=1), encoding="utf-8")
        os.replace(tmp_stamp, _stamp_path(target, entry))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _rsdd_error(entry: DatasetEntry, root: Path) -> DownloadError:
    return DownloadError(
        "RSDDs (rail surface defects, Gan et al. 2017) has no stable public download URL, so "
        f"adlib cannot fetch it. Get it from the authors of {entry.homepage} (or a copy shared "
        "for research), extract it yourself and place it so that "
        f"{root / entry.extract_to} holds this layout: {entry.layout}. Then pass that folder "
        "as DATA_ROOT (reader: adlib.data.rsdd.read_rsdd). If you have the archive at a URL, "
        "`fetch('rsdd', url=..., known_hash=...)` downloads and extracts it like the others."
    )


def fetch(
    name: str,
    *,
    root: Path | str | None = None,
    url: str | None = None,
    known_hash: str | None = None,
    progress: bool = True,
    allow_unverified: bool = False,
) -> Path:
    """Download, verify and extract a registry dataset; return the folder its reader takes.

    The archive is cached under ``<root>/downloads``. Its checksum is verified after the
    download and again on every later call (pooch re-hashes a cached file and downloads it again
    when it does not match; a download that still fails its checksum is deleted and raises).

    Args:
        name: registry key (see ``adlib data list`` / :data:`REGISTRY`).
        root: data root; default :func:`adlib.config.data_root`.
        url: override the registry URL (a mirror, a local server in tests).
        known_hash: expected hash (``"<sha256 hex>"`` or ``"md5:<hex>"``); overrides the registry.
        progress: show a download progress bar.
        allow_unverified: accept an entry without any published checksum. The SHA-256 of the
            first download is then recorded next to the archive and enforced afterwards.

    Returns:
        The folder to pass to the dataset's reader (e.g. ``read_mvtec(path, category)``).

    Raises:
        DownloadError: unknown name, no URL, no checksum (without ``allow_unverified``),
            checksum mismatch, network failure or unexpected archive content.
        UnsafeArchiveError: the archive tries to write outside its folder.
    """
    import pooch

    from adlib import config

    entry = _entry(name)
    root = Path(root).expanduser().resolve() if root is not None else config.data_root()
    source = url or entry.url
    if source is None:
        if entry.name == "rsdd":
            raise _rsdd_error(entry, root)
        raise DownloadError(f"{entry.name}: no download URL is known; see {entry.homepage}.")

    downloads = root / "downloads"
    archive = downloads / entry.filename
    first_seen = archive.with_name(archive.name + ".first-download.sha256")
    expected = known_hash or entry.sha256
    if expected is None and first_seen.is_file():
        expected = first_seen.read_text(encoding="utf-8").strip()
    if expected is None and not allow_unverified:
        raise DownloadError(
            f"{entry.name}: no checksum is recorded ({entry.hash_note}). Pass "
            "known_hash='<sha256>' (or 'md5:<hex>') to verify the archive, or "
            "allow_unverified=True (CLI: --allow-unverified) to accept it unverified; the SHA-256 "
            "of that first download is then recorded and enforced on every later use."
        )

    try:
        path = Path(
            pooch.retrieve(
                source,
                known_hash=expected,
                fname=entry.filename,
                path=downloads,
                progressbar=progress,
            )
        )
    except ValueError as exc:  # pooch: hash mismatch (its temporary file is already removed)
        if "hash" not in str(exc).lower():  # e.g. an unsupported URL scheme
            raise DownloadError(f"{entry.name}: cannot download {source}: {exc}") from exc
        if archive.exists() and (expected is None or not _hash_matches(archive, expected)):
            archive.unlink()
        raise DownloadError(
            f"{entry.name}: checksum mismatch for {source} ({exc}). The archive was deleted; "
            "try again, or check the URL / expected hash."
        ) from exc
    except Exception as exc:  # network errors (requests), missing downloaders, ...
        raise DownloadError(f"{entry.name}: download from {source} failed: {exc}") from exc

    archive_hash = _file_hash(path)
    if expected is None:  # allow_unverified: trust on first use, enforce afterwards
        first_seen.write_text(archive_hash + "\n", encoding="utf-8")

    target = root / entry.extract_to
    stamp = _stamp_path(target, entry)
    done = False
    if stamp.is_file():
        try:
            record = json.loads(stamp.read_text(encoding="utf-8"))
            done = record.get("sha256") == archive_hash and all(
                (target / item).exists() for item in record.get("items", [])
            )
        except (OSError, ValueError):
            done = False
    if not done:
        try:
            _install(path, archive_hash, entry, target)
        except DownloadError as exc:
            # An unsafe archive is never kept; nor is an unverified one that fails to extract.
            if isinstance(exc, UnsafeArchiveError) or expected is None:
                path.unlink(missing_ok=True)
                first_seen.unlink(missing_ok=True)
            raise

    reader_root = _find_reader_root(target, entry.marker)
    if reader_root is None:
        raise DownloadError(
            f"{entry.name}: extracted {path.name} into {target}, but found no '{entry.marker}' "
            f"folder there. Expected layout: {entry.layout}."
        )
    return reader_root
