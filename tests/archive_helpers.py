"""Helpers for the download tests: a loopback HTTP server and tiny archives built in tmp_path.

Nothing here contacts any address other than 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path


class LoopbackServer:
    """Serves ``folder`` on 127.0.0.1 and counts GET requests per path."""

    def __init__(self, folder: Path) -> None:
        counts: dict[str, int] = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):  # noqa: N802 - http.server API
                counts[self.path] = counts.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args):  # keep test output quiet
                pass

        self.counts = counts
        self.folder = folder
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        """The URL of ``folder/name``."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


def sha256(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mvtec_files(category: str = "bottle") -> dict[str, bytes]:
    """A minimal MVTec-like archive content (the bytes are not real images)."""
    return {
        f"{category}/train/good/000.png": b"png-bytes-0",
        f"{category}/test/good/000.png": b"png-bytes-1",
        f"{category}/test/broken/000.png": b"png-bytes-2",
        f"{category}/ground_truth/broken/000_mask.png": b"mask-bytes",
        "license.txt": b"CC BY-NC-SA 4.0",
    }


def tar_archive(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None,
                mode: str = "w:gz", **kwargs) -> Path:
    """Write a tar archive of ``files`` (then the members in ``extra``, without data).

    ``kwargs`` go to :func:`tarfile.open` (e.g. ``compresslevel``).
    """
    with tarfile.open(path, mode, **kwargs) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return path


def zip_archive(path: Path, files: dict[str, bytes],
                compression: int = zipfile.ZIP_STORED) -> Path:
    """Write a zip archive of ``files``."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def tree(folder: Path) -> set[str]:
    """Every path under ``folder``, relative, as posix strings."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}
