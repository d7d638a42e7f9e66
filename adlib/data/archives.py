"""Safe, complete extraction of dataset archives (``.tar``, ``.tar.gz/.bz2/.xz``, ``.zip``).

:func:`safe_extract` is hard to fool on purpose, because archives come from the internet:

* **Nothing leaves the target folder.** Member names that are absolute, contain ``..`` or
  resolve outside the folder are refused, and so are *all* symbolic and hard links and special
  files (devices, fifos). No dataset of the course needs a link, and links are how archives
  escape: a chain such as ``a -> .``, ``a/b -> ..``, ``b/c -> ..`` stays inside the folder
  link by link, yet a later member written through it lands outside. Python's
  :func:`tarfile.data_filter` is applied on top as the reference (when Python has it).
* **Corruption is caught before anything is used.** A tar archive is read twice: the first
  pass checks every header and then reads the compressed stream to its very end, so the
  gzip/xz/bzip2 checksums are verified (``tarfile`` alone stops at the end-of-archive marker
  and never reaches the gzip CRC) and a damaged header in the middle, which ``tarfile``
  silently treats as the end of the archive, is noticed as non-zero data after the end.
  Zip members are read to their end, which checks their CRC-32.
* **Limits.** An archive whose members add up to more than ``max_bytes``, that has more than
  ``max_members`` members, or that does not fit on the disk is refused before anything is
  written (:class:`ArchiveLimitError`). A compression bomb is refused from its headers.
* **All or nothing.** The content is written to a fresh temporary folder next to ``dest`` and
  renamed to ``dest`` only when every member passed; on any failure the folder is removed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from adlib.data.types import DownloadError
from adlib.tmpfiles import format_size

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_MEMBERS",
    "ArchiveLimitError",
    "CorruptArchiveError",
    "UnsafeArchiveError",
    "safe_extract",
]

DEFAULT_MAX_BYTES = 20 * 10**9
"""Default cap on the total uncompressed size (20 GB; MVTec AD, the largest dataset, is ~5 GB).
Override per call, or with the environment variable ``ADLIB_MAX_ARCHIVE_BYTES``."""

DEFAULT_MAX_MEMBERS = 200_000
"""Default cap on the number of members (MVTec AD has ~7 000). Override per call, or with
``ADLIB_MAX_ARCHIVE_MEMBERS``."""

_CHUNK = 1 << 20
_TAR_BLOCK = 512


class UnsafeArchiveError(DownloadError):
    """An archive holds a member that could write outside the target folder (or a link)."""


class CorruptArchiveError(DownloadError):
    """An archive is damaged: a checksum failed, it is truncated, or a header is broken."""


class ArchiveLimitError(DownloadError):
    """An archive is larger, or has more members, than allowed (or than the disk can hold)."""


@dataclass(frozen=True)
class _Limits:
    max_bytes: int
    max_members: int


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(float(value))
    except ValueError:
        raise DownloadError(f"Environment variable {name}={value!r} is not a number. "
                            f"Fix: set it to a count, e.g. {name}={default}.") from None
    if number <= 0:
        raise DownloadError(f"Environment variable {name}={value!r} must be positive.")
    return number


def _limits(max_bytes: int | None, max_members: int | None) -> _Limits:
    return _Limits(
        max_bytes if max_bytes is not None else _env_int("ADLIB_MAX_ARCHIVE_BYTES",
                                                         DEFAULT_MAX_BYTES),
        max_members if max_members is not None else _env_int("ADLIB_MAX_ARCHIVE_MEMBERS",
                                                             DEFAULT_MAX_MEMBERS),
    )


# --------------------------------------------------------------------------- member checks
def _is_within(base: Path, target: Path) -> bool:
    try:
        target.relative_to(base)
    except ValueError:
        return False
    return True


def _member_parts(name: str, dest: Path, archive: Path) -> tuple[str, ...]:
    """The path components of a member under ``dest``; raise if the name could escape.

    Backslashes count as separators (Windows archivers write them, and Windows would honour
    them), so ``a\\..\\..\\x`` is refused like ``a/../../x``.
    """
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive}: member with an empty or invalid name: {name!r}; "
                                 "refusing to extract anything.")
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; refusing to extract anything.")
    if ".." in posix.parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} contains '..' and would leave the target folder; "
            "refusing to extract anything.")
    base = dest.resolve()
    resolved = base.joinpath(*posix.parts).resolve() if posix.parts else base
    if not _is_within(base, resolved):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves to {resolved}, outside "
                                 f"{dest}; refusing to extract anything.")
    return posix.parts


def _refuse_link(archive: Path, kind: str, name: str, link: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: member {name!r} is a {kind} (-> {link!r}). No dataset of the course needs "
        "links and they can be chained to write outside the target folder, so archives with "
        "links are refused; nothing was extracted. Fix: check where the archive comes from; "
        "if you trust it, extract it by hand and pass the folder to the reader.")


def _check_tar_member(member: tarfile.TarInfo, dest: Path, archive: Path) -> tuple[str, ...]:
    parts = _member_parts(member.name, dest, archive)
    if member.issym():
        raise _refuse_link(archive, "symbolic link", member.name, member.linkname)
    if member.islnk():
        raise _refuse_link(archive, "hard link", member.name, member.linkname)
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device, fifo or other "
                                 "special file; refusing to extract anything.")
    reference = getattr(tarfile, "data_filter", None)  # Python >= 3.10.12 / 3.11.4
    if reference is not None:
        try:
            reference(member, str(dest))
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} refused by tarfile's "
                                     f"'data' filter ({exc}); nothing was extracted.") from exc
    return parts


# --------------------------------------------------------------------------- reading
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError,
                OSError, ValueError)


def _corrupt(archive: Path, exc: BaseException | str) -> CorruptArchiveError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return CorruptArchiveError(
        f"{archive} is damaged ({detail}); nothing was extracted. Fix: delete it and download "
        "it again; if a fresh download fails the same way, the source itself is broken.")


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn write failures (disk full, permissions) into a clear error naming ``target``."""
    try:
        yield
    except OSError as exc:
        raise DownloadError(f"Cannot write {target}: {exc.strerror or exc}. Fix: free disk "
                            "space, or pass another root folder.") from exc


def _open_stream(path: Path) -> BinaryIO:
    """The archive's decompressed bytes, as a seekable file (chosen from the magic bytes)."""
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _copy(source: BinaryIO, target: Path, budget: int, archive: Path) -> int:
    """Copy one member to ``target``, never more than ``budget`` bytes; return the bytes.

    Read errors (a failed checksum) propagate unchanged; write errors name ``target``.
    """
    written = 0
    with _writing(target):
        out = open(target, "wb")
    try:
        while block := source.read(_CHUNK):
            written += len(block)
            if written > budget:
                raise ArchiveLimitError(f"{archive}: a member holds more data than its header "
                                        "declares; refusing the archive.")
            with _writing(target):
                out.write(block)
    finally:
        with _writing(target):
            out.close()
    return written


def _over_limit(archive: Path, what: str, value: int, limit: int, name: str,
                at_least: bool = False) -> ArchiveLimitError:
    """The error for ``value`` over ``limit`` (``at_least``: counting stopped at ``value``)."""
    variable = "ADLIB_MAX_ARCHIVE_BYTES" if name == "max_bytes" else "ADLIB_MAX_ARCHIVE_MEMBERS"
    shown = (format_size(value), format_size(limit)) if name == "max_bytes" else (value, limit)
    return ArchiveLimitError(
        f"{archive}: {what} {'is at least ' if at_least else ''}{shown[0]}, more than the limit "
        f"of {shown[1]}; refusing to extract "
        f"it (a compression bomb, or the wrong file?). Fix: if the archive is genuine, raise the "
        f"limit with {name}=... (or the environment variable {variable}).")


def _check_space(archive: Path, dest: Path, total: int) -> None:
    free = shutil.disk_usage(dest.parent).free
    if total > free:
        raise ArchiveLimitError(
            f"{archive} unpacks to {format_size(total)}, but only {format_size(free)} is free "
            f"on the disk of {dest.parent}; nothing was extracted. Fix: free disk space, or "
            "pass another root folder.")


class _Recording:
    """A read-only stream wrapper that remembers the last block read (and where it started).

    ``tarfile`` stops at the header block it cannot use; this wrapper gives that block back
    without seeking backwards, which in a compressed stream would mean decompressing again.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.last, self.last_at = b"", -1

    def read(self, size: int = -1) -> bytes:
        at = self._stream.tell()
        data = self._stream.read(size)
        if data:
            self.last, self.last_at = data, at
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def _check_trailer(archive: Path, stream: _Recording, end: int) -> None:
    """Everything after the last member must be zero, and there must be an end marker.

    Reading to the end of the stream is also what makes gzip/xz/bzip2 verify their checksum.
    """
    tail = stream.last if stream.last_at == end else b""
    if stream.tell() != end + len(tail):  # pragma: no cover - tarfile read something else last
        stream.seek(end)
        tail = b""
    trailer = 0
    block = tail
    while True:
        if block.strip(b"\0"):
            raise _corrupt(archive, f"non-zero data after the end of the tar archive at byte "
                           f"{end + trailer}: a member header is damaged, and the members after "
                           "it would be silently dropped")
        trailer += len(block)
        block = stream.read(_CHUNK)
        if not block:
            break
    if trailer < _TAR_BLOCK:
        raise _corrupt(archive, "the tar archive has no end-of-archive marker (truncated)")


def _walk_tar(archive: Path, dest: Path, limits: _Limits, write_to: Path | None) -> int:
    """Check (and with ``write_to``, extract) every member; return the total size."""
    total, count = 0, 0
    with _open_stream(archive) as raw:
        stream = _Recording(raw)
        with tarfile.open(fileobj=stream, mode="r:") as tar:  # type: ignore[call-overload]
            for member in tar:
                count += 1
                if count > limits.max_members:
                    raise _over_limit(archive, "the number of members", count,
                                      limits.max_members, "max_members", at_least=True)
                parts = _check_tar_member(member, dest, archive)
                if member.isfile():
                    total += member.size
                if total > limits.max_bytes:
                    raise _over_limit(archive, "the uncompressed size", total,
                                      limits.max_bytes, "max_bytes", at_least=True)
                if write_to is None:
                    continue
                target = write_to.joinpath(*parts)
                if member.isdir():
                    with _writing(target):
                        target.mkdir(parents=True, exist_ok=True)
                    continue
                with _writing(target):
                    target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() guarantees a stream
                    raise _corrupt(archive, f"member {member.name!r} cannot be read")
                with source:
                    _copy(source, target, member.size, archive)
                with _writing(target):
                    os.chmod(target, (member.mode & 0o755) | stat.S_IRUSR | stat.S_IWUSR)
            end = tar.offset
        _check_trailer(archive, stream, end)
    return total


def _walk_zip(archive: Path, dest: Path, limits: _Limits, write_to: Path | None) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise _over_limit(archive, "the number of members", len(infos),
                              limits.max_members, "max_members")
        total = 0
        for info in infos:
            _member_parts(info.filename, dest, archive)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind == stat.S_IFLNK:
                raise _refuse_link(archive, "symbolic link", info.filename, "?")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a special "
                                         "file; refusing to extract anything.")
            if info.flag_bits & 0x1:
                raise DownloadError(f"{archive}: member {info.filename!r} is encrypted; adlib "
                                    "cannot extract password-protected archives.")
            total += info.file_size
        if total > limits.max_bytes:
            raise _over_limit(archive, "the uncompressed size", total, limits.max_bytes,
                              "max_bytes")
        if write_to is None:
            return total
        _check_space(archive, write_to, total)
        for info in infos:
            parts = _member_parts(info.filename, dest, archive)
            target = write_to.joinpath(*parts)
            with _writing(target):
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source:  # read to the end: checks the member's CRC-32
                _copy(source, target, info.file_size, archive)
    return total


def _archive_kind(path: Path) -> str:
    if not path.is_file():
        raise DownloadError(f"Archive {path} does not exist.")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00":
        return "tar"  # compressed: only tar archives are compressed this way
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise _corrupt(path, "neither a zip nor a tar archive (wrong file, or an error page?)")


def safe_extract(
    archive: Path | str,
    dest: Path | str,
    *,
    max_bytes: int | None = None,
    max_members: int | None = None,
) -> Path:
    """Extract a tar (.tar, .tar.gz, .tar.bz2, .tar.xz) or zip archive into ``dest``, safely.

    Every member is checked before anything is written (see the module docstring): escaping
    names, links and special files raise :class:`UnsafeArchiveError`, a damaged archive
    :class:`CorruptArchiveError`, an archive over the limits :class:`ArchiveLimitError`; in
    every case nothing is left behind. The content goes to a temporary folder next to ``dest``
    and is renamed to ``dest`` at the end, so ``dest`` never holds a partial extraction.

    Args:
        archive: the archive file.
        dest: folder to create; must not exist yet.
        max_bytes: cap on the total uncompressed size (default :data:`DEFAULT_MAX_BYTES`).
        max_members: cap on the number of members (default :data:`DEFAULT_MAX_MEMBERS`).

    Returns:
        ``dest``.

    Raises:
        UnsafeArchiveError: a member could leave ``dest``, is a link or a special file.
        CorruptArchiveError: a checksum failed, or the archive is truncated or damaged.
        ArchiveLimitError: too large, too many members, or not enough disk space.
        DownloadError: ``dest`` exists, or a file cannot be written.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() or dest.is_symlink():
        raise DownloadError(f"{dest} already exists; remove it or extract elsewhere.")
    limits = _limits(max_bytes, max_members)
    kind = _archive_kind(archive)
    walk: Callable[[Path, Path, _Limits, Path | None], int] = (
        _walk_zip if kind == "zip" else _walk_tar)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "tar":  # first pass: headers, limits and checksums, nothing written
            _check_space(archive, dest, walk(archive, dest, limits, None))
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    except _READ_ERRORS as exc:
        if isinstance(exc, DownloadError):
            raise
        raise _corrupt(archive, exc) from exc
    try:
        try:
            walk(archive, dest, limits, tmp)
        except _READ_ERRORS as exc:
            if isinstance(exc, DownloadError):
                raise
            raise _corrupt(archive, exc) from exc
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
