"""Decode images and masks into numpy arrays, with clear errors.

Images become HxWxC ``uint8`` arrays (C = 1 or 3), masks HxW ``bool`` arrays.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from adlib.data.types import DataError, DataWarning

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File suffixes (lower case) the readers treat as images."""

_TIFF = (".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")
_PIL_CHANNELS = {"1": 1, "L": 1, "P": 3, "I": 1, "I;16": 1, "I;16B": 1, "I;16L": 1, "F": 1,
                 "LA": 1, "RGB": 3, "RGBA": 3, "RGBX": 3, "CMYK": 3, "YCbCr": 3, "PA": 3}

JPEG_MID_TONE_LIMIT = 0.05
"""A JPEG mask is rejected when more than this fraction of its pixels is mid-grey (64..191)."""

LOW_BIT_DEPTH_WARNING = 14
"""A 16-bit image whose values all fit in this many bits (or fewer) gets a :class:`DataWarning`:
it probably holds unscaled 10/12/14-bit camera values and is too dark when scaled by 65535."""

_warned_low_depth: set[Path] = set()  # folders already warned about (one warning per folder)


def is_image_file(path: Path) -> bool:
    """True for a regular file with an image suffix (case-insensitive), hidden files excluded."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def broken_link(path: Path) -> str | None:
    """``"dangling"`` or ``"loops"`` for a symbolic link that leads to no file, else ``None``."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except FileNotFoundError:
        return "dangling"
    except OSError as err:
        return "loops" if err.errno == getattr(errno, "ELOOP", -1) else f"unreadable ({err.strerror})"
    return None


def check_links(entries: list[Path], what: str = "image") -> None:
    """Raise a :class:`DataError` listing every broken symbolic link among ``entries``.

    A broken link would otherwise be skipped without a word (``Path.is_file()`` is False for
    it), silently shrinking the dataset.
    """
    broken = [(p, state) for p in entries if (state := broken_link(p)) is not None]
    if not broken:
        return
    listed = "\n  - ".join(f"{p} -> {os.readlink(p)} ({state})" for p, state in broken[:20])
    more = f"\n  ... and {len(broken) - 20} more" if len(broken) > 20 else ""
    raise DataError(f"{len(broken)} {what} link(s) in {broken[0][0].parent} point to nothing:"
                    f"\n  - {listed}{more}\nFix: restore the files they point to (a data disk "
                    "that is not mounted?) or delete the links.")


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        DataError: a symbolic link with an image suffix is dangling or loops.
    """
    entries = sorted(Path(folder).iterdir())
    check_links([p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES
                 and not p.name.startswith(".")])
    return [p for p in entries if is_image_file(p)]


def _unreadable(path: Path, err: Exception) -> DataError:
    return DataError(
        f"Cannot decode {path}: {type(err).__name__}: {err}. The file is corrupt, truncated or "
        "not an image. Fix: re-download or re-extract the dataset, or delete this file."
    )


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path; raises DataError naming it when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Image file not found: {path}. Fix: check the dataset folder.")
    return path


def _decode_raw(path: Path) -> np.ndarray:
    """Decode a file to a numpy array in its stored dtype (2D, or HxWxC)."""
    path = _existing_file(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            try:
                with tifffile.TiffFile(path) as tif:
                    series = tif.series[0]
                    arr, axes = np.asarray(series.asarray()), series.axes
            except Exception:  # noqa: BLE001 - some TIFF flavours only PIL reads
                with Image.open(path) as im:
                    return _pil_to_array(im)
            if arr.ndim == 3 and axes[0] in "CS" and axes[1:] == "YX":
                arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
            return arr
        with Image.open(path) as im:
            return _pil_to_array(im)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure is a data problem
        raise _unreadable(path, err) from err


def _pil_to_array(im: Image.Image) -> np.ndarray:
    im.load()
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
    elif im.mode in ("CMYK", "YCbCr", "RGBX"):
        im = im.convert("RGB")
    return np.array(im)  # a writable copy


def _warn_low_depth(path: Path, peak: int) -> None:
    """Warn (once per folder) that a 16-bit image uses only the low bits."""
    folder = path.parent.resolve()
    if folder in _warned_low_depth:
        return
    _warned_low_depth.add(folder)
    bits = max(int(peak).bit_length(), 1)
    warnings.warn(
        f"{path} is a 16-bit image whose values all fit in {bits} bits (max {peak} of 65535): "
        f"probably unscaled {bits}-bit camera data. Scaled by the 16-bit range it becomes "
        f"{65535 / max(2**bits - 1, 1):.0f}x too dark. Fix: if the camera has {bits} bits, pass "
        f"bit_depth={bits} to read_image, or convert the files to 8 bit (e.g. arr >> "
        f"{max(bits - 8, 0)}); ignore this if the images are genuinely that dark. (Warned once "
        "for this folder.)", DataWarning, stacklevel=4)


def _to_uint8(arr: np.ndarray, path: Path, bit_depth: int | None = None) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
        peak = int(arr.max(initial=0))
        if bit_depth is not None:
            top = float(2**bit_depth - 1)
            if peak > top:
                raise DataError(f"{path} holds the value {peak}, more than {bit_depth} bits "
                                f"allow (max {top:.0f}). Fix: pass the right bit_depth.")
        elif peak <= 65535:
            top = 65535.0
            if 0 < peak < 2**LOW_BIT_DEPTH_WARNING:
                _warn_low_depth(path, peak)
        else:
            top = float(peak)
        return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(arr) * scale), 0, 255).astype(np.uint8)
    raise DataError(f"Unsupported pixel type {arr.dtype} in {path}. Fix: convert it to 8-bit PNG.")


def _to_hwc(arr: np.ndarray, path: Path) -> np.ndarray:
    """Bring an array to HxWxC with C in {1, 3} (alpha dropped)."""
    if arr.ndim == 2:
        return arr[:, :, None]
    if arr.ndim == 3:
        c = arr.shape[2]
        if c in (1, 3):
            return arr
        if c == 2:  # grey + alpha
            return arr[:, :, :1]
        if c == 4:  # RGBA
            return arr[:, :, :3]
    raise DataError(
        f"Unexpected image shape {arr.shape} in {path}: expected HxW (grey) or HxWx3 (RGB). "
        "Fix: convert the file to 8-bit grey or RGB."
    )


def read_image(
    path: str | Path, channels: int | None = None, *, bit_depth: int | None = None
) -> np.ndarray:
    """Read an image as an HxWxC ``uint8`` array.

    16-bit and float images are scaled to 0..255 (by the dtype's full range), an alpha channel
    is dropped, grey images get one channel. A 16-bit image whose values all fit in
    :data:`LOW_BIT_DEPTH_WARNING` bits or fewer (e.g. a 12-bit camera's values stored unscaled)
    gets a :class:`~adlib.data.types.DataWarning` naming it, once per folder.

    Args:
        path: image file (PNG, JPEG, BMP or TIFF).
        channels: ``None`` keeps the stored channels; 3 converts grey to RGB; 1 converts RGB to
            grey (ITU-R 601 luma).
        bit_depth: bits actually used by a 16-bit image (e.g. 12): scale by ``2**bit_depth - 1``
            instead of 65535.

    Raises:
        DataError: the file is missing, undecodable or has an unexpected shape, or a value does
            not fit in ``bit_depth``.
    """
    path = Path(path)
    if bit_depth is not None and not 1 <= bit_depth <= 16:
        raise DataError(f"bit_depth must be 1..16, got {bit_depth} (reading {path}).")
    arr = _to_uint8(_decode_raw(path), path, bit_depth)
    return convert_channels(_to_hwc(arr, path), channels, path)


def convert_channels(arr: np.ndarray, channels: int | None, path: str | Path = "<array>") -> np.ndarray:
    """Convert an HxWxC uint8 array to ``channels`` (None: unchanged; 3: grey -> RGB; 1: RGB -> luma).

    Raises:
        DataError: when the conversion is not one of these.
    """
    if channels is None or arr.shape[2] == channels:
        return np.ascontiguousarray(arr)
    if channels == 3 and arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 1 and arr.shape[2] == 3:
        luma = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None]
    raise DataError(f"Cannot convert {path} ({arr.shape[2]} channels) to {channels} channels; "
                    "channels must be None, 1 or 3.")


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary ground-truth mask as an HxW ``bool`` array.

    Accepted values: {0, 255} or {0, 1} (or {0, max} for 16-bit files). JPEG masks (RSDDs) are
    thresholded at 128, unless more than :data:`JPEG_MID_TONE_LIMIT` of their pixels are
    mid-grey, which means the file is a photo, not a mask.

    Args:
        path: mask file.
        shape: expected (H, W) of the matching image; a mismatch raises.

    Raises:
        DataError: missing/corrupt file, colour or non-binary content, or size mismatch.
    """
    path = Path(path)
    arr = _decode_raw(path)
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # drop alpha
            arr = arr[:, :, : arr.shape[2] - 1]
        if arr.shape[2] > 1 and not all(np.array_equal(arr[:, :, 0], arr[:, :, i])
                                        for i in range(1, arr.shape[2])):
            raise DataError(f"Mask {path} has colour content; a mask must be grey/binary "
                            "(0 = good, 255 or 1 = defect). Fix: check that this file is a mask.")
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise DataError(f"Unexpected mask shape {arr.shape} in {path}: expected HxW.")
    if shape is not None and tuple(arr.shape) != tuple(shape[:2]):
        raise DataError(
            f"Mask {path} is {arr.shape[0]}x{arr.shape[1]} (HxW) but its image is "
            f"{shape[0]}x{shape[1]}. Fix: the mask must have the size of its image (check that "
            "it belongs to this image, or re-extract the dataset)."
        )
    if path.suffix.lower() in _JPEG:
        gray = _to_uint8(arr, path)
        mid = np.count_nonzero((gray >= 64) & (gray < 192)) / max(gray.size, 1)
        if mid > JPEG_MID_TONE_LIMIT:
            raise DataError(
                f"{path} does not look like a mask: {mid:.0%} of its pixels are mid-grey "
                f"(limit {JPEG_MID_TONE_LIMIT:.0%}). Fix: check that the ground-truth folder "
                "holds masks, not images."
            )
        return gray >= 128
    values = (np.flatnonzero(np.bincount(arr.ravel(), minlength=256)) if arr.dtype == np.uint8
              else np.unique(arr))
    top = {np.uint16: 65535}.get(arr.dtype.type, 255)
    if set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1} or \
            set(values.tolist()) <= {0, top}:
        return arr > 0
    shown = ", ".join(str(v) for v in values[:8]) + (" ..." if len(values) > 8 else "")
    raise DataError(
        f"Mask {path} is not binary: values {shown}. Expected {{0, 255}} or {{0, 1}}. "
        "Fix: threshold the mask (e.g. mask > 127) and save it as PNG."
    )


def probe_image(path: str | Path) -> tuple[int, int, int]:
    """(H, W, C) of an image from its header only (no pixel decoding where the format allows).

    Raises:
        DataError: the file is missing or not a readable image.
    """
    path = _existing_file(path)
    try:
        if path.suffix.lower() in _TIFF:
            import tifffile

            try:
                with tifffile.TiffFile(path) as tif:
                    page = tif.pages[0]
                    h, w = int(page.imagelength), int(page.imagewidth)
                    spp = int(page.samplesperpixel)
                return h, w, 1 if spp in (1, 2) else 3
            except Exception:  # noqa: BLE001 - fall back to PIL
                pass
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
        if mode not in _PIL_CHANNELS:
            raise DataError(f"Unsupported image mode {mode!r} in {path}. Fix: convert it to "
                            "8-bit grey or RGB PNG.")
        return h, w, _PIL_CHANNELS[mode]
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001
        raise _unreadable(path, err) from err


def find_child(parent: Path, name: str) -> Path | None:
    """The entry of ``parent`` called ``name``, compared case-insensitively (exact match first)."""
    parent = Path(parent)
    exact = parent / name
    if exact.exists():
        return exact
    if not parent.is_dir():
        return None
    for child in parent.iterdir():
        if child.name.lower() == name.lower():
            return child
    return None


def require_dir(path: Path, what: str, layout: str, fix: str) -> Path:
    """Return ``path`` if it is a folder, else raise a :class:`DataError` naming the layout and fix."""
    path = Path(path)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"{what} {path} {state}.\nExpected layout:\n{layout}\nFix: {fix}")
    return path


def require_images(folder: Path, what: str, layout: str, fix: str) -> list[Path]:
    """Image files of an existing folder; raise a :class:`DataError` when there are none."""
    images = list_images(require_dir(folder, what, layout, fix))
    if not images:
        raise DataError(f"{what} {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})."
                        f"\nExpected layout:\n{layout}\nFix: {fix}")
    return images
