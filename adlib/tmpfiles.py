"""Remove temporary files (or folders) that an interrupted run left behind, and say so.

A run killed with SIGKILL (or a closed laptop, an out-of-memory kill) cannot clean up after
itself: a half-written download under ``downloads/tmpXXXXXXXX`` or a checkpoint written to
``*.pt.tmp`` stays on disk forever. :func:`clean_stale` is called at the start of the next run
(by :func:`adlib.data.download.fetch`, and for checkpoints by the training code); it removes
the leftovers that match a pattern and prints one line per removed item, with its size.

Example:
    >>> from adlib.tmpfiles import clean_stale                          # doctest: +SKIP
    >>> clean_stale(Path("checkpoints"), ["*.pt.tmp"], older_than_s=60)  # doctest: +SKIP
    adlib: removed stale temporary file checkpoints/ae.pt.tmp (14.2 MB, last written 3.1 h ago, ...)
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["clean_stale", "format_size"]


def format_size(n_bytes: int) -> str:
    """``1536`` -> ``"1.5 kB"`` (decimal units, as file managers show them)."""
    size = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _format_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size_and_mtime(path: Path) -> tuple[int, float]:
    """Total size and newest modification time of a file, or of everything in a folder.

    Symbolic links are measured themselves (``lstat``), never followed.
    """
    info = path.lstat()
    if not path.is_dir() or path.is_symlink():
        return info.st_size, info.st_mtime
    total, newest = 0, info.st_mtime
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                entry = Path(folder, name).lstat()
            except OSError:
                continue  # removed meanwhile
            newest = max(newest, entry.st_mtime)
            if name in files:
                total += entry.st_size
    return total, newest


def clean_stale(
    folder: Path | str,
    patterns: Sequence[str],
    *,
    older_than_s: float = 0,
    log: Callable[[str], None] | None = print,
) -> list[Path]:
    """Remove leftovers of interrupted runs in ``folder`` that match ``patterns``.

    Only direct children of ``folder`` are considered (``Path.glob`` patterns such as
    ``"tmp*"`` or ``"*.pt.tmp"``). A matching folder (an interrupted extraction) is removed
    with its content. An item is stale when neither it nor anything inside it was modified in
    the last ``older_than_s`` seconds, so a temporary file that another process is still
    writing survives when ``older_than_s`` is larger than the pauses between its writes.

    Args:
        folder: where the temporaries live; a missing folder means nothing to clean.
        patterns: glob patterns of temporary names, relative to ``folder``.
        older_than_s: minimum age (seconds since the last write) of an item to remove.
        log: called with one line per removed item (its path, size and age); ``None``: silent.

    Returns:
        The removed paths, sorted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = sorted({p for pattern in patterns for p in folder.glob(pattern)})
    removed: list[Path] = []
    now = time.time()
    for path in candidates:
        try:
            size, mtime = _size_and_mtime(path)
        except OSError:
            continue  # removed by someone else meanwhile
        age = now - mtime
        if age < older_than_s:
            continue
        kind = "folder" if path.is_dir() and not path.is_symlink() else "file"
        try:
            if kind == "folder":
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
        if log is not None:
            log(f"adlib: removed stale temporary {kind} {path} ({format_size(size)}, last "
                f"written {_format_age(max(age, 0.0))} ago, left by an interrupted run)")
    return removed
