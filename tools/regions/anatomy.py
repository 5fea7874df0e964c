"""Per-image anatomy of a frontal chest radiograph: lung fields, midline, trachea, domes, heart.

:func:`locate_anatomy` finds, on each image, the two lung fields, the midline and mediastinum, the
trachea and carina, the hemidiaphragm domes and costophrenic angles, the cardiac silhouette and the
upper abdomen, with classical image processing on a 256-pixel working copy:

1. smooth, normalise by percentiles; the column profile of the mid-thorax rows gives the midline (the
   bright spine and mediastinum between two dark valleys, the lungs);
2. dark pixels (Otsu threshold inside the body) minus a strip along the midline (which cuts off the
   trachea), opened, hole-filled; the connected component that holds each side's valley is that lung;
3. from each lung mask: apex row, lateral and medial edges, the costophrenic angle (the lowest point of
   the lateral part of the lung) and the dome (the highest point of the lung's lower border);
4. the trachea is tracked down the midline as a dark air column from the apices; where it stops being a
   valley is the carina (clamped to an anatomical range of the lung height);
5. the cardiac silhouette spans the medial lung edges of the lower lung; the upper abdomen lies below
   the left hemidiaphragm.

Each lung detection is checked for plausibility (size, position, side); a side that fails is mirrored
from the other side about the midline (``method == "partial"``), and when both fail, or the midline
cannot be found, anatomical fractions of the frame are used (``method == "fallback"``). The radiograph
convention holds throughout: the patient's *right* is on the image's *left*, so ``lung_right`` has the
smaller column coordinates. Coordinates are normalised to ``[0, 1]`` (row / height, column / width) and
boxes are ``(y0, x0, y1, x1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tools.domain import InputError

Box = tuple[float, float, float, float]
"""A normalised box ``(y0, x0, y1, x1)``: rows then columns, each in ``[0, 1]``, ends exclusive."""

WORK_SIZE = 256
"""Long side of the working copy on which anatomy is located."""
DEFAULT_CROP_SIZE = 384
"""Default side of a region crop, pixels."""
CARINA_FRACTION = 0.45
"""Carina row below the apices, as a fraction of the apex-to-costophrenic lung height."""
DEFAULT_MARGIN = 0.04
"""Default margin added around a region box, as a fraction of the frame."""

Method = Literal["detected", "partial", "fallback"]


@dataclass(frozen=True)
class LungField:
    """One lung field in normalised coordinates; ``lateral``/``medial`` are columns, the rest rows."""

    apex: float
    dome: float
    cp_row: float
    cp_col: float
    lateral: float
    medial: float
    mid_medial: float
    low_medial: float

    @property
    def height(self) -> float:
        """Apex to costophrenic angle, normalised rows."""
        return max(self.cp_row - self.apex, 1e-3)

    @property
    def box(self) -> Box:
        """Bounding box of the lung field (apex to costophrenic angle, lateral to medial edge)."""
        x0, x1 = sorted((self.lateral, self.medial))
        return (self.apex, x0, self.cp_row, x1)


@dataclass(frozen=True)
class Anatomy:
    """Landmarks of one frontal chest radiograph (normalised coordinates) and how they were found.

    ``lung_right`` is the patient's right lung (image left), ``lung_left`` the patient's left (image right).
    ``method`` is ``"detected"`` (both lungs found on the image), ``"partial"`` (one side mirrored from the
    other) or ``"fallback"`` (anatomical fractions of the frame); ``notes`` say what was estimated.
    """

    shape: tuple[int, int]
    lung_right: LungField
    lung_left: LungField
    midline: float
    trachea_col: float
    carina_row: float
    heart_box: Box
    method: Method
    notes: tuple[str, ...] = ()
    lung_mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def lung(self, side: str) -> LungField:
        """The lung field of the patient's ``side`` ("left" or "right")."""
        if side == "left":
            return self.lung_left
        if side == "right":
            return self.lung_right
        raise InputError(f"side {side!r} must be 'left' or 'right'")

    @property
    def lung_height(self) -> float:
        """Mean apex-to-costophrenic height of the two lungs, normalised rows."""
        return (self.lung_left.height + self.lung_right.height) / 2.0


# ---------------------------------------------------------------- detection helpers


def _working_copy(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Image -> smoothed, percentile-normalised float32 copy with a long side of WORK_SIZE."""
    from scipy import ndimage

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=-1)
    if arr.ndim != 2 or min(arr.shape) < 16:
        raise InputError(f"image of shape {arr.shape}: expected a 2-D grayscale image of at least 16x16 pixels")
    if not np.all(np.isfinite(arr)):
        raise InputError("image has non-finite pixel values")
    factor = WORK_SIZE / max(arr.shape)
    if factor < 1.0:
        # area-average first so thin bright lines (wires, tubes) do not alias
        sigma = 0.5 / factor
        arr = ndimage.zoom(ndimage.gaussian_filter(arr, sigma), factor, order=1)
    work = ndimage.gaussian_filter(arr, 1.5)
    lo, hi = np.percentile(work, [1.0, 99.0])
    if hi - lo < 1e-4:
        return np.zeros_like(work), factor
    return np.clip((work - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), factor


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1]."""
    hist, edges = np.histogram(values, bins=128, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1e-9)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-9)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between))])


def _find_midline(work: np.ndarray) -> tuple[int, int | None, int | None] | None:
    """Column of the mediastinum and of each lung's valley (None where a side has no clear valley)."""
    from scipy import ndimage

    h, w = work.shape
    band = work[int(0.25 * h) : int(0.55 * h)]
    profile = ndimage.gaussian_filter1d(band.mean(axis=0), 2.0)
    c0, c1 = int(0.33 * w), int(0.67 * w)
    mid = c0 + int(np.argmax(profile[c0:c1]))
    left_lo, right_hi = int(0.03 * w), int(0.97 * w)
    gap = int(0.08 * w)
    if mid - gap - left_lo < 8 or right_hi - mid - gap < 8:
        return None
    peak = float(profile[mid])
    valleys: list[int | None] = []
    for lo, hi in ((left_lo, (left_lo + mid) // 2), ((mid + right_hi) // 2, right_hi)):
        # the chest wall is the brightest column of the outer half of each side; the lung valley lies
        # between it and the mediastinum (outside the chest wall is the dark background, not lung)
        wall = lo + int(np.argmax(profile[lo:hi]))
        a, b = sorted((wall, mid))
        a, b = a + 2, b - 2
        if b - a < 6:
            valleys.append(None)
            continue
        valley = a + int(np.argmin(profile[a:b]))
        depth = min(peak, float(profile[wall])) - float(profile[valley])
        valleys.append(valley if depth > 0.1 else None)
    if valleys[0] is None and valleys[1] is None:
        return None
    return mid, valleys[0], valleys[1]


def _leaks(m: np.ndarray, band: int) -> bool:
    """True when a lung candidate reaches the top or bottom of the frame, or runs along a side edge.

    A magnified (AP) lung may touch a side edge at its base for a short run; the dark background
    outside the body runs along the side edges for much of the frame's height.
    """
    h = m.shape[0]
    if m[:band].any() or m[-band:].any():
        return True
    run = max(int(m[:, :band].any(axis=1).sum()), int(m[:, -band:].any(axis=1).sum()))
    return run > 0.3 * h


def _detach_from_border(comp: np.ndarray, seed: tuple[int, int], max_iter: int = 10) -> np.ndarray | None:
    """Cut a lung candidate off the background or abdominal gas it joins through a bridge.

    Erode until the part holding the seed no longer leaks (:func:`_leaks`), keep that part and grow it
    back by as many steps inside the original component (opening by bounded reconstruction).
    """
    from scipy import ndimage

    if not _leaks(comp, 3):
        return comp
    for k in range(1, max_iter + 1):
        core = ndimage.binary_erosion(comp, iterations=k)
        labels, n = ndimage.label(core)
        if n == 0:
            return None
        ids = labels[max(seed[0] - 15, 0) : seed[0] + 16, max(seed[1] - 8, 0) : seed[1] + 9]
        ids = ids[ids > 0]
        if len(ids) == 0:
            return None
        part = labels == np.bincount(ids).argmax()
        grown = np.asarray(ndimage.binary_dilation(part, iterations=k + 1, mask=comp))
        if not _leaks(grown, 3):
            return grown
    return None


def _lung_component(dark: np.ndarray, seed_row: int, seed_col: int) -> np.ndarray | None:
    """The connected component of ``dark`` that fills most of a small window around the seed."""
    from scipy import ndimage

    labels, n = ndimage.label(dark)
    if n == 0:
        return None
    h, w = dark.shape
    r0, r1 = max(seed_row - 12, 0), min(seed_row + 13, h)
    c0, c1 = max(seed_col - 6, 0), min(seed_col + 7, w)
    window = labels[r0:r1, c0:c1]
    ids = window[window > 0]
    if len(ids) == 0:
        return None
    return np.asarray(labels == np.bincount(ids).argmax())


def _lung_field(mask: np.ndarray, side: str) -> LungField | None:
    """Landmarks of one lung mask (working resolution) in normalised coordinates, or None if implausible."""
    h, w = mask.shape
    area = float(mask.mean())
    if area < 0.025 or area > 0.4:
        return None
    rows = np.flatnonzero(mask.sum(axis=1) >= 3)
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) < 0.2 * h or len(cols) < 0.08 * w:
        return None
    apex, bottom = int(rows[0]), int(rows[-1])
    col_lo, col_hi = int(cols[0]), int(cols[-1])
    # robust lateral/medial edges: percentiles of the per-row extents
    lo_per_row = np.array([np.flatnonzero(mask[r])[0] for r in rows])
    hi_per_row = np.array([np.flatnonzero(mask[r])[-1] for r in rows])
    if side == "right":  # image left: lateral = small columns
        lateral = float(np.percentile(lo_per_row, 3))
        medial_per_row = hi_per_row
    else:
        lateral = float(np.percentile(hi_per_row, 97))
        medial_per_row = lo_per_row
    n = len(rows)
    medial = float(np.percentile(medial_per_row, 97 if side == "right" else 3))
    mid_medial = float(np.median(medial_per_row[int(0.3 * n) : int(0.6 * n) + 1]))
    low_medial = float(np.median(medial_per_row[int(0.65 * n) : int(0.9 * n) + 1]))
    # lower border per column: costophrenic angle = lowest point of the lateral part; dome = highest point
    # of the lower border over the middle of the lung
    width = col_hi - col_lo + 1
    bottoms = np.full(w, -1, dtype=np.int64)
    for c in range(col_lo, col_hi + 1):
        nz = np.flatnonzero(mask[:, c])
        if len(nz):
            bottoms[c] = nz[-1]
    # the dome is measured lateral to the heart: 25-60% of the width from the lateral edge
    if side == "right":
        lat_cols = np.arange(col_lo, col_lo + max(int(0.4 * width), 1))
        mid_cols = np.arange(col_lo + int(0.25 * width), col_lo + int(0.6 * width) + 1)
    else:
        lat_cols = np.arange(col_hi - max(int(0.4 * width), 1) + 1, col_hi + 1)
        mid_cols = np.arange(col_hi - int(0.6 * width), col_hi - int(0.25 * width) + 1)
    lat_b = bottoms[lat_cols]
    cp_idx = int(np.argmax(lat_b))
    cp_row, cp_col = int(lat_b[cp_idx]), int(lat_cols[cp_idx])
    mid_b = bottoms[mid_cols]
    mid_b = mid_b[mid_b >= 0]
    dome = int(np.median(mid_b)) if len(mid_b) else bottom
    cp_row = max(cp_row, dome)
    if (cp_row - apex) < 0.2 * h:
        return None
    return LungField(
        apex=apex / h,
        dome=dome / h,
        cp_row=(cp_row + 1) / h,
        cp_col=cp_col / w,
        lateral=lateral / w,
        medial=(medial + 1) / w if side == "right" else medial / w,
        mid_medial=(mid_medial + 1) / w if side == "right" else mid_medial / w,
        low_medial=(low_medial + 1) / w if side == "right" else low_medial / w,
    )


def _mirror(lung: LungField, midline: float) -> LungField:
    """The other side's lung field, mirrored about ``midline``."""

    def flip(x: float) -> float:
        return float(np.clip(2.0 * midline - x, 0.0, 1.0))

    return LungField(
        apex=lung.apex,
        dome=lung.dome,
        cp_row=lung.cp_row,
        cp_col=flip(lung.cp_col),
        lateral=flip(lung.lateral),
        medial=flip(lung.medial),
        mid_medial=flip(lung.mid_medial),
        low_medial=flip(lung.low_medial),
    )


def _fallback_lungs(midline: float = 0.5) -> tuple[LungField, LungField]:
    """Lung fields at typical fractions of a frontal chest radiograph frame."""
    right = LungField(
        apex=0.10,
        dome=0.50,
        cp_row=0.62,
        cp_col=midline - 0.36,
        lateral=midline - 0.38,
        medial=midline - 0.06,
        mid_medial=midline - 0.07,
        low_medial=midline - 0.10,
    )
    return right, _mirror(right, midline)


def _trachea_column(work: np.ndarray, mid: int, apex_row: int, lung_h: int) -> int | None:
    """Column of the tracheal air column: the darkest column of the upper mediastinum near the midline."""
    from scipy import ndimage

    h, w = work.shape
    r0, r1 = max(apex_row - int(0.05 * lung_h), 0), min(apex_row + int(0.3 * lung_h), h)
    half = max(int(0.06 * w), 3)
    c0, c1 = max(mid - half, 0), min(mid + half + 1, w)
    if r1 - r0 < 4 or c1 - c0 < 5:
        return None
    profile = ndimage.gaussian_filter1d(work[r0:r1, c0:c1].mean(axis=0), 1.5)
    j = int(np.argmin(profile))
    # a real air column is a valley: darker than both sides of the window
    if j in (0, len(profile) - 1) or min(profile[:j].max(), profile[j + 1 :].max()) - profile[j] < 0.02:
        return None
    return c0 + j


# ---------------------------------------------------------------- locate


def locate_anatomy(image: np.ndarray) -> Anatomy:
    """Locate the lungs, mediastinum, trachea/carina, heart, diaphragm and upper abdomen on one image.

    ``image`` is the canonical grayscale array of :mod:`tools.data.images` (any size; bright = dense). The
    returned :class:`Anatomy` is in normalised coordinates; ``method`` says whether it was detected on
    the image or fell back to anatomical fractions of the frame.
    """
    from scipy import ndimage

    work, _ = _working_copy(image)
    h, w = work.shape
    shape = (int(np.asarray(image).shape[0]), int(np.asarray(image).shape[1]))
    notes: list[str] = []
    found = _find_midline(work)
    if found is None:
        right, left = _fallback_lungs()
        notes.append("midline and lung valleys not found: anatomical fractions of the frame")
        return _assemble(shape, right, left, 0.5, None, "fallback", notes, None)
    mid, valley_r, valley_l = found
    # dark = below Otsu threshold of the body's central part
    body = work[int(0.05 * h) : int(0.9 * h), int(0.05 * w) : int(0.95 * w)]
    thr = _otsu(body.ravel())
    dark = work < thr
    # the background outside the body is darker than lung: remove what joins a side edge below a lower
    # threshold, with a rim of a few pixels
    exterior_seed = work < 0.45 * thr
    labels, n = ndimage.label(exterior_seed)
    if n:
        edge_ids = np.unique(np.concatenate([labels[:, :2].ravel(), labels[:, -2:].ravel()]))
        exterior = np.isin(labels, edge_ids[edge_ids > 0])
        dark &= ~ndimage.binary_dilation(exterior, iterations=3)
    strip = max(int(0.02 * w), 2)
    dark[:, max(mid - strip, 0) : mid + strip + 1] = False
    dark = ndimage.binary_opening(dark, structure=np.ones((3, 3), bool), iterations=2)
    seed_row = int(0.4 * h)
    masks: dict[str, np.ndarray | None] = {}
    for side, seed_col, lo, hi in (("right", valley_r, 0, mid), ("left", valley_l, mid + 1, w)):
        masks[side] = None
        if seed_col is None:
            continue
        half = np.zeros_like(dark)
        half[:, lo:hi] = dark[:, lo:hi]
        comp = _lung_component(half, seed_row, seed_col)
        if comp is not None:
            comp = _detach_from_border(comp, (seed_row, seed_col))
        if comp is not None:
            comp = ndimage.binary_fill_holes(ndimage.binary_closing(comp, np.ones((5, 5), bool), iterations=2))
            comp &= (np.arange(w)[None, :] >= lo) & (np.arange(w)[None, :] < hi)
        masks[side] = comp
    fields: dict[str, LungField | None] = {
        side: (_lung_field(m, side) if m is not None else None) for side, m in masks.items()
    }
    midline = mid / w
    found_r, found_l = fields["right"], fields["left"]
    if found_r is not None and found_l is not None:
        # consistency: similar apex height, lungs on their own sides
        if abs(found_r.apex - found_l.apex) > 0.2 or found_r.medial > midline + 0.02 or found_l.medial < midline - 0.02:
            notes.append("lung fields inconsistent between sides")
            found_r = found_l = None
    method: Method
    if found_r is not None and found_l is not None:
        right, left = found_r, found_l
        method = "detected"
    elif found_r is not None:
        right, left = found_r, _mirror(found_r, midline)
        method = "partial"
        notes.append("left lung not found: mirrored from the right lung")
    elif found_l is not None:
        right, left = _mirror(found_l, midline), found_l
        method = "partial"
        notes.append("right lung not found: mirrored from the left lung")
    else:
        right, left = _fallback_lungs(midline)
        notes.append("lung fields not found: anatomical fractions of the frame around the detected midline")
        method = "fallback"
    lung_mask = np.zeros((h, w), bool)
    for m in masks.values():
        if m is not None:
            lung_mask |= m
    apex_row = int(min(right.apex, left.apex) * h)
    lung_h = int(((right.height + left.height) / 2.0) * h)
    trachea = _trachea_column(work, mid, apex_row, lung_h) if method != "fallback" else None
    return _assemble(shape, right, left, midline, None if trachea is None else trachea / w, method, notes, lung_mask)


def _assemble(
    shape: tuple[int, int],
    right: LungField,
    left: LungField,
    midline: float,
    trachea_col: float | None,
    method: Method,
    notes: list[str],
    lung_mask: np.ndarray | None,
) -> Anatomy:
    """Derive carina and heart from the lung fields and build the :class:`Anatomy`."""
    apex = min(right.apex, left.apex)
    height = (right.height + left.height) / 2.0
    # the carina is not a visible edge at this scale; it sits at about 45% of the lung height
    carina_row = apex + CARINA_FRACTION * height
    if trachea_col is None:
        trachea_col = midline
        notes.append("tracheal air column not found: trachea on the midline")
    heart_top = apex + 0.45 * height
    heart_bottom = max(right.dome, left.dome) + 0.06 * height
    heart_x0 = min(right.low_medial, midline - 0.05) - 0.02
    heart_x1 = max(left.low_medial, midline + 0.08) + 0.02
    heart_box = clip_box((heart_top, heart_x0, heart_bottom, heart_x1))
    return Anatomy(
        shape=shape,
        lung_right=right,
        lung_left=left,
        midline=midline,
        trachea_col=trachea_col,
        carina_row=carina_row,
        heart_box=heart_box,
        method=method,
        notes=tuple(notes),
        lung_mask=lung_mask,
    )


def clip_box(box: Box) -> Box:
    """``box`` clipped to the frame, with its corners ordered."""
    y0, x0, y1, x1 = (float(np.clip(v, 0.0, 1.0)) for v in box)
    return (min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1))
