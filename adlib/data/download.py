"""Verified downloads of the datasets in the registry.

Every public dataset the course can use is described by one :class:`DatasetEntry` in
:mod:`adlib.data.registry` (re-exported here). :func:`fetch` downloads an archive with
:mod:`pooch` (streamed to a temporary file with a progress bar, checksum verified, then renamed),
verifies it again on every cache hit, and extracts it with :func:`adlib.data.archives.safe_extract`
(no member may leave the target folder, no links, checksums of the compressed stream verified,
size limits); the dataset is moved into place, and a first-download checksum trusted, only after a
complete extraction that holds the expected layout. Temporaries of a killed earlier fetch are
removed (and reported) at the start of the next one.

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
import ipaddress
import json
import os
import shutil
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

from adlib.data.archives import (
    ArchiveLimitError,
    CorruptArchiveError,
    UnsafeArchiveError,
    safe_extract,
)
from adlib.data.registry import (  # noqa: F401 - re-exported: the registry's old home
    MVTEC_CATEGORIES,
    REGISTRY,
    DatasetEntry,
    _entry,
    registry_table,
)
from adlib.data.types import DataWarning, DownloadError
from adlib.tmpfiles import clean_stale

__all__ = [
    "MVTEC_CATEGORIES",
    "REGISTRY",
    "ArchiveLimitError",
    "CorruptArchiveError",
    "DatasetEntry",
    "DownloadError",
    "UnsafeArchiveError",
    "fetch",
    "normalise_hash",
    "registry_table",
    "safe_extract",
]

_STAMP_SUFFIX = ".extracted.json"


# --------------------------------------------------------------------------- hashing
_HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}


def normalise_hash(value: str, what: str = "known_hash") -> str:
    """``" MD5:ABC...\\n"`` -> ``"md5:abc..."``; a bare hex string is SHA-256.

    Surrounding spaces and newlines (from copying a checksum out of a web page or a file) are
    dropped, and so is a ``sha256:`` prefix.

    Raises:
        DownloadError: an unknown algorithm or a value that is not a hex digest of its length.
    """
    text = value.strip().lower()
    algorithm, _, digest = text.rpartition(":")
    algorithm = algorithm.strip() or "sha256"
    digest = digest.strip()
    if algorithm not in _HEX_LENGTHS:
        raise DownloadError(f"{what}={value!r}: unknown hash algorithm {algorithm!r}; use one of "
                            f"{', '.join(_HEX_LENGTHS)} (e.g. 'md5:<hex>', or a bare SHA-256).")
    expected = _HEX_LENGTHS[algorithm]
    if len(digest) != expected or any(c not in "0123456789abcdef" for c in digest):
        raise DownloadError(
            f"{what}={value!r} is not a {algorithm} checksum: expected {expected} hex digits, "
            f"got {len(digest)} characters {digest[:12]!r}... Fix: copy the checksum again "
            "('<sha256 hex>' or 'md5:<hex>').")
    return digest if algorithm == "sha256" else f"{algorithm}:{digest}"


def _file_hash(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _split_hash(known_hash: str) -> tuple[str, str]:
    """A normalised hash -> ``(algorithm, hex)``."""
    algorithm, _, value = known_hash.rpartition(":")
    return algorithm or "sha256", value


def _hash_matches(path: Path, known_hash: str) -> bool:
    algorithm, value = _split_hash(known_hash)
    return path.is_file() and _file_hash(path, algorithm) == value


# --------------------------------------------------------------------------- fetch
STALE_AFTER_S = 600.0
"""A temporary file or folder not written for this long (seconds) is a leftover of a killed run
(a live download writes every few seconds; pooch gives up on a silent server after 30 s)."""

_DOWNLOAD_TEMPS = ("tmp????????", "*.sha256.tmp")  # pooch: tempfile.NamedTemporaryFile names
_EXTRACT_TEMPS = (".*.staging-*", ".*.partial-*", ".*.extracted.tmp")
_STAMP_CHECK = "complete-v2"  # extraction with every member read to the end and the layout checked


def _clean_leftovers(downloads: Path, target: Path) -> list[Path]:
    """Remove (and report) temporaries that a killed fetch left in ``downloads`` / ``target``."""
    removed = clean_stale(downloads, _DOWNLOAD_TEMPS, older_than_s=STALE_AFTER_S)
    return removed + clean_stale(target, _EXTRACT_TEMPS, older_than_s=STALE_AFTER_S)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_plain_http(entry: DatasetEntry, source: str, user_hash: str | None) -> None:
    """Warn when a download travels over plain http and no registry checksum protects it."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme.lower() != "http" or _is_loopback(parts.hostname):
        return
    if entry.sha256 and user_hash in (None, normalise_hash(entry.sha256)):
        return  # the registry's published checksum protects the download
    rests_on = ("the checksum you passed (known_hash); make sure it comes from a trusted "
                "source, not from the same http server" if user_hash else
                "nothing: with allow_unverified the first download is trusted as it arrives")
    warnings.warn(
        f"{entry.name}: {source} is plain http (no TLS), so the archive can be altered on its "
        f"way to you, and adlib knows no published checksum for it; its integrity rests on "
        f"{rests_on}.", DataWarning, stacklevel=3)


def _find_reader_root(folder: Path, marker: str, depth: int = 2) -> Path | None:
    """The shallowest folder at most ``depth`` levels under ``folder`` that holds ``marker``."""
    level = [folder]
    for _ in range(depth + 1):
        for candidate in level:
            if (candidate / marker).is_dir():
                return candidate
        level = [p for c in level for p in sorted(c.iterdir())
                 if p.is_dir() and not p.name.startswith(".")]
    return None


def _iter_top(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.iterdir()))


def _stamp_path(target: Path, entry: DatasetEntry) -> Path:
    return target / f".{entry.name}{_STAMP_SUFFIX}"


def _read_stamp(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _owned_by_stamps(target: Path) -> set[str]:
    owned: set[str] = set()
    for stamp in target.glob(f".*{_STAMP_SUFFIX}"):
        owned.update(_read_stamp(stamp).get("items", []))
    return owned


def _install(archive: Path, archive_hash: str, entry: DatasetEntry, target: Path,
             max_bytes: int | None, max_members: int | None) -> None:
    """Extract ``archive``, check its layout, then move its top-level items into ``target``.

    Nothing reaches ``target`` unless the whole archive extracted (every member read to the end)
    and holds the entry's ``marker`` folder; the stamp is written last.
    """
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".{entry.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        safe_extract(archive, staging, max_bytes=max_bytes, max_members=max_members)
        if entry.wrap and _find_reader_root(staging, entry.marker) is None:
            wrapped = staging / entry.marker
            wrapped.mkdir()
            for item in list(_iter_top(staging)):
                if item != wrapped:
                    os.replace(item, wrapped / item.name)
        if _find_reader_root(staging, entry.marker) is None:
            found = ", ".join(p.name for p in _iter_top(staging)) or "nothing"
            raise DownloadError(
                f"{entry.name}: {archive.name} holds no '{entry.marker}' folder (its top level: "
                f"{found}), so it is not the expected dataset; nothing was installed. Expected "
                f"layout: {entry.layout}. Fix: check the URL.")
        items = [p for p in _iter_top(staging) if not p.name.startswith(".")]
        owned = _owned_by_stamps(target)
        foreign = [target / p.name for p in items if ((target / p.name).exists() or
                   (target / p.name).is_symlink()) and p.name not in owned]
        if foreign:
            raise DownloadError(
                f"{', '.join(map(str, foreign))} already exist(s) and was not extracted by adlib; "
                f"move it away (or point `root=` elsewhere) and fetch {entry.name!r} again.")
        for item in items:
            dest = target / item.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(item, dest)
        stamp = {"archive": archive.name, "sha256": archive_hash, "check": _STAMP_CHECK,
                 "items": [p.name for p in items]}
        tmp_stamp = _stamp_path(target, entry).with_suffix(".tmp")
        tmp_stamp.write_text(json.dumps(stamp, indent=1), encoding="utf-8")
        os.replace(tmp_stamp, _stamp_path(target, entry))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _installed(target: Path, entry: DatasetEntry, archive_hash: str) -> bool:
    """True when ``target`` holds a complete, checked extraction of this very archive."""
    record = _read_stamp(_stamp_path(target, entry))
    return (record.get("sha256") == archive_hash and record.get("check") == _STAMP_CHECK
            and all((target / item).exists() for item in record.get("items", [])))


def _read_trusted(path: Path) -> str | None:
    """The recorded SHA-256 of a first download, or ``None`` when there is no record."""
    if not path.is_file():
        return None
    try:
        return normalise_hash(path.read_text(encoding="utf-8"), str(path))
    except DownloadError as exc:
        raise DownloadError(f"{exc}\nThis record is damaged. Fix: delete {path} (and the archive "
                            "next to it) and fetch again.") from None


def _write_trusted(path: Path, digest: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(digest + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _rsdd_error(entry: DatasetEntry, root: Path) -> DownloadError:
    return DownloadError(
        "RSDDs (rail surface defects, Gan et al. 2017) has no stable public download URL, so "
        f"adlib cannot fetch it. Get it from the authors of {entry.homepage} (or a copy shared "
        "for research), extract it yourself and place it so that "
        f"{root / entry.extract_to} holds this layout: {entry.layout}. Then pass that folder "
        "as DATA_ROOT (reader: adlib.data.rsdd.read_rsdd). If you have the archive at a URL, "
        "`fetch('rsdd', url=..., known_hash=...)` downloads and extracts it like the others."
    )


def _mismatch(entry: DatasetEntry, source: str, exc: Exception, archive: Path,
              keep: tuple[str | None, ...]) -> DownloadError:
    """The error for a download that failed its checksum; delete the cached archive unless it
    matches a checksum adlib trusts (the registry's, or a recorded first download)."""
    if any(h is not None and _hash_matches(archive, h) for h in keep):
        fate = (f"The cached archive {archive} matches adlib's own checksum for "
                f"{entry.name} and was kept. Fix: check the known_hash you passed (or leave it "
                "out to use the recorded one).")
    else:
        archive.unlink(missing_ok=True)
        fate = ("No archive was kept. Fix: try again; if it fails again, check the URL and the "
                "expected hash.")
    return DownloadError(f"{entry.name}: checksum mismatch for {source} ({exc}). {fate}")


def fetch(
    name: str,
    *,
    root: Path | str | None = None,
    url: str | None = None,
    known_hash: str | None = None,
    progress: bool = True,
    allow_unverified: bool = False,
    max_bytes: int | None = None,
    max_members: int | None = None,
) -> Path:
    """Download, verify and extract a registry dataset; return the folder its reader takes.

    The archive is cached under ``<root>/downloads``. Its checksum is verified after the
    download and again on every later call (pooch re-hashes a cached file and downloads it again
    when it does not match; a download that still fails its checksum is deleted and raises,
    except a cached archive that matches adlib's own checksum). Temporaries left by a killed
    earlier fetch are removed first (and reported). An archive that fails to extract is deleted
    with its partial folder and any recorded checksum.

    Args:
        name: registry key (see ``adlib data list`` / :data:`REGISTRY`).
        root: data root; default :func:`adlib.config.data_root`.
        url: override the registry URL (a mirror, a local server in tests).
        known_hash: expected hash (``"<sha256 hex>"`` or ``"md5:<hex>"``); overrides the registry.
        progress: show a download progress bar.
        allow_unverified: accept an entry without any published checksum. The SHA-256 of the
            first download is recorded once it extracted completely, and enforced afterwards.
        max_bytes: cap on the archive's uncompressed size (see :func:`safe_extract`).
        max_members: cap on the archive's number of members.

    Returns:
        The folder to pass to the dataset's reader (e.g. ``read_mvtec(path, category)``).

    Raises:
        DownloadError: unknown name, no URL, no checksum (without ``allow_unverified``),
            checksum mismatch, network failure, damaged archive or unexpected archive content.
        UnsafeArchiveError: the archive could write outside its folder, or holds links.
        ArchiveLimitError: the archive is over the size or member limits, or the disk is full.
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
    target = root / entry.extract_to
    first_seen = archive.with_name(archive.name + ".first-download.sha256")
    _clean_leftovers(downloads, target)
    user_hash = normalise_hash(known_hash) if known_hash else None
    registry_hash = normalise_hash(entry.sha256, f"registry checksum of {entry.name}") \
        if entry.sha256 else None
    trusted = _read_trusted(first_seen)
    expected = user_hash or registry_hash or trusted
    if expected is None and not allow_unverified:
        raise DownloadError(
            f"{entry.name}: no checksum is recorded ({entry.hash_note}). Pass "
            "known_hash='<sha256>' (or 'md5:<hex>') to verify the archive, or "
            "allow_unverified=True (CLI: --allow-unverified) to accept it unverified; the SHA-256 "
            "of that first download is then recorded and enforced on every later use."
        )
    _warn_plain_http(entry, source, user_hash)

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
        raise _mismatch(entry, source, exc, archive, (registry_hash, trusted)) from exc
    except Exception as exc:  # network errors (requests), missing downloaders, ...
        raise DownloadError(f"{entry.name}: download from {source} failed: {exc}") from exc

    archive_hash = _file_hash(path)
    if not _installed(target, entry, archive_hash):
        try:
            _install(path, archive_hash, entry, target, max_bytes, max_members)
        except DownloadError as exc:
            if isinstance(exc, ArchiveLimitError) and expected is not None:
                raise  # a verified archive that is merely too large: keep it for a retry
            path.unlink(missing_ok=True)
            first_seen.unlink(missing_ok=True)
            raise type(exc)(
                f"{exc}\n{entry.name}: the archive {path} was deleted, with its partial folder "
                "and any recorded checksum; fetching again downloads it anew.") from exc
    if expected is None:  # allow_unverified: trust on first use, only after a complete install
        _write_trusted(first_seen, archive_hash)

    reader_root = _find_reader_root(target, entry.marker)
    if reader_root is None:
        raise DownloadError(
            f"{entry.name}: extracted {path.name} into {target}, but found no '{entry.marker}' "
            f"folder there. Expected layout: {entry.layout}."
        )
    return reader_root
