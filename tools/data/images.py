"""Image reading: PNG/JPEG (8 and 16 bit) and DICOM, all to one canonical grayscale array.

The canonical array is ``float32``, two-dimensional (rows, columns), values in ``[0, 1]``, where higher
means brighter on the display (bone and fluid bright, air dark), whatever the source's photometric
interpretation. Every failure raises :class:`~tools.domain.InputError` with the file name and the problem.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tools.domain import InputError

MIN_IMAGE_SIDE = 8
"""Images narrower or shorter than this (pixels) are refused: 1x1 placeholders, icons and broken exports carry
nothing a model can read (real radiographs have hundreds of pixels a side)."""
MAX_IMAGE_PIXELS = 64_000_000
"""Images with more pixels than this (8000 x 8000) are refused before decoding (decompression bombs)."""
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES


def is_image_path(path: Path) -> bool:
    """True when the file name has an image suffix this project reads."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes: the cache key of an image (its content, not its path)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _check_size(width: int, height: int, path: Path) -> None:
    """Refuse images too small to be a study or too large to decode safely (before the pixels are read)."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f"{path}: image too small ({width}x{height} pixels; at least {MIN_IMAGE_SIDE} per side)")
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{path}: image too large ({width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} in all)")


def _depth_scale(max_value: float) -> float:
    """The full-scale value of integer pixel data: the smallest of 8, 10, 12, 14 or 16 bits holding its maximum.

    A 16-bit container often holds 10-, 12- or 14-bit detector data; dividing 12-bit values by 65535 would
    read them as near-black. Data over 16 bits is scaled by its own maximum.
    """
    for bits in (8, 10, 12, 14, 16):
        if max_value <= (1 << bits) - 1:
            return float((1 << bits) - 1)
    return float(max_value)


def _normalise(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or min(array.shape) < 2:
        raise InputError(f"{path}: not a 2-D image (shape {array.shape})")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{path}: image has non-finite pixel values")
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array)
    return (array - low) / (high - low)


def _has_image_signature(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(8)
    return head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8")


def _read_raster(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            _check_size(img.width, img.height, path)
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.clip(np.asarray(img, dtype=np.float32), 0.0, None)
                return np.clip(array / _depth_scale(float(array.max())), 0.0, 1.0)
            if mode == "F":
                return _normalise(np.asarray(img), path)
            gray = img if mode in ("L", "1") else img.convert("L")
            return np.asarray(gray, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image too large (more than {MAX_IMAGE_PIXELS:,} pixels; refused unread)") from None
    except UnidentifiedImageError:
        if _has_image_signature(path):
            raise InputError(f"{path}: corrupt image (unreadable header)") from None
        raise InputError(f"{path}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"{path}: corrupt image ({str(exc).splitlines()[0] if str(exc) else 'decode error'})"
        ) from None


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError as exc:  # pragma: no cover - pydicom is a core dependency
        raise InputError(f"{path}: reading DICOM needs pydicom (pip install pydicom): {exc}") from None
    try:
        ds = pydicom.dcmread(path)
        if "Rows" in ds and "Columns" in ds:
            _check_size(int(ds.Columns), int(ds.Rows), path)
        pixels = ds.pixel_array
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except InvalidDicomError:
        raise InputError(f"{path}: not a DICOM file") from None
    except (AttributeError, ValueError, RuntimeError, OSError, TypeError) as exc:
        raise InputError(
            f"{path}: corrupt DICOM ({str(exc).splitlines()[0] if str(exc) else 'no pixel data'})"
        ) from None
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[-1] not in (3, 4) else pixels[..., :3].mean(axis=-1)
    array = apply_modality_lut(pixels, ds)
    array = apply_voi_lut(np.asarray(array), ds, index=0)
    array = _normalise(np.asarray(array), path)
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        array = 1.0 - array
    return array


def load_image(path: Path | str) -> np.ndarray:
    """Read an image file into the canonical grayscale ``float32`` array in ``[0, 1]``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return _read_dicom(path)
    if suffix in RASTER_SUFFIXES:
        return _read_raster(path)
    with open(path, "rb") as handle:
        head = handle.read(132)
    if head[128:132] == b"DICM":
        return _read_dicom(path)
    raise InputError(f"{path}: not an image file (suffix {suffix or 'none'}; expected PNG, JPEG or DICOM)")


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Canonical float image -> ``uint8`` (0-255) for display, grids and 8-bit models."""
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_pil(array: np.ndarray) -> Image.Image:
    """Canonical float image -> 8-bit grayscale PIL image."""
    return Image.fromarray(to_uint8(array), mode="L")
