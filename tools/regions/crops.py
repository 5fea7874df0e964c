"""High-resolution crops of a named region (or an explicit box), for zooming in: one image or many files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tools.data.images import load_image
from tools.domain import InputError, SkippedItem
from tools.regions.anatomy import DEFAULT_CROP_SIZE, DEFAULT_MARGIN, Anatomy, Box, Method, locate_anatomy
from tools.regions.boxes import region_box
from tools.vocabulary import REGIONS


def _pixel_box(box: Box, shape: tuple[int, int], margin: float, square: bool) -> tuple[int, int, int, int]:
    """Normalised box + margin -> integer pixel box inside the image (squared out when ``square``)."""
    h, w = shape
    y0, x0, y1, x1 = box
    y0, y1 = (y0 - margin) * h, (y1 + margin) * h
    x0, x1 = (x0 - margin) * w, (x1 + margin) * w
    if square:
        side = min(max(y1 - y0, x1 - x0), float(min(h, w)))
        cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
        y0, y1 = cy - side / 2.0, cy + side / 2.0
        x0, x1 = cx - side / 2.0, cx + side / 2.0
        # shift (not shrink) a square that sticks out of the frame
        dy = max(0.0, -y0) - max(0.0, y1 - h)
        dx = max(0.0, -x0) - max(0.0, x1 - w)
        y0, y1, x0, x1 = y0 + dy, y1 + dy, x0 + dx, x1 + dx
    r0, r1 = int(np.floor(max(y0, 0.0))), int(np.ceil(min(y1, float(h))))
    c0, c1 = int(np.floor(max(x0, 0.0))), int(np.ceil(min(x1, float(w))))
    return r0, c0, max(r1, r0 + 1), max(c1, c0 + 1)


def crop_region(
    image: np.ndarray,
    region: str | Sequence[float],
    out_size: int = DEFAULT_CROP_SIZE,
    *,
    anatomy: Anatomy | None = None,
    margin: float = DEFAULT_MARGIN,
    square: bool = True,
) -> np.ndarray:
    """Crop a named region (or explicit normalised box) from the full-resolution ``image``, resized so that
    its long side is ``out_size`` (square crops: ``out_size x out_size``), float32 in [0, 1].

    The box is widened by ``margin`` (fraction of the frame) and, when ``square``, to a square around its
    centre so the anatomy keeps its aspect ratio. ``anatomy`` is located on the image when not given.
    """
    from PIL import Image

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise InputError(f"image of shape {arr.shape}: expected a 2-D grayscale image")
    if out_size < 8:
        raise InputError(f"out_size {out_size}: must be at least 8 pixels")
    if isinstance(region, str) and anatomy is None:
        anatomy = locate_anatomy(arr)
    box = region_box(anatomy, region)
    r0, c0, r1, c1 = _pixel_box(box, (arr.shape[0], arr.shape[1]), margin, square)
    patch = arr[r0:r1, c0:c1]
    ph, pw = patch.shape
    if square:
        size = (out_size, out_size)  # the pixel box is square up to rounding
    else:
        scale = out_size / max(ph, pw)
        size = (max(int(round(pw * scale)), 1), max(int(round(ph * scale)), 1))
    resized = Image.fromarray(patch, mode="F").resize(size, Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


@dataclass(frozen=True)
class RegionCrop:
    """One region crop: where it came from, the crop, its normalised box and how the anatomy was found."""

    path: Path
    image: np.ndarray = field(repr=False)
    box: Box
    method: Method


def crop_paths(
    paths: Sequence[Path | str],
    region: str | Sequence[float],
    out_size: int = DEFAULT_CROP_SIZE,
    *,
    margin: float = DEFAULT_MARGIN,
    allow_fallback: bool = True,
) -> tuple[list[RegionCrop], list[SkippedItem]]:
    """Crop ``region`` from every image file; unreadable images and images whose region cannot be found
    (anatomy fell back to frame fractions while ``allow_fallback`` is False) are skipped and reported."""
    region_box(None, region) if not isinstance(region, str) else _check_region_name(region)
    crops: list[RegionCrop] = []
    skipped: list[SkippedItem] = []
    for raw in paths:
        path = Path(raw)
        try:
            image = load_image(path)
            anatomy = locate_anatomy(image) if isinstance(region, str) else None
        except InputError as exc:
            skipped.append(SkippedItem(item=str(path), reason=str(exc)))
            continue
        method: Method = anatomy.method if anatomy is not None else "detected"
        if anatomy is not None and anatomy.method == "fallback" and not allow_fallback:
            skipped.append(SkippedItem(item=str(path), reason=f"region {region!r} not found: anatomy not detected"))
            continue
        box = region_box(anatomy, region)
        crop = crop_region(image, box, out_size, margin=margin)
        crops.append(RegionCrop(path=path, image=crop, box=box, method=method))
    return crops, skipped


def _check_region_name(region: str) -> None:
    if region.strip().lower() not in REGIONS:
        raise InputError(f"unknown region {region!r}; known: {', '.join(REGIONS)}")
