"""Named-region boxes on a located anatomy (``right_lower_zone``, ``mediastinum``...) and explicit boxes.

Boxes are normalised ``(y0, x0, y1, x1)`` (rows then columns, each in ``[0, 1]``); the region names are the
vocabulary's :data:`~tools.vocabulary.REGIONS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tools.domain import InputError
from tools.regions.anatomy import Anatomy, Box, LungField, clip_box
from tools.vocabulary import REGIONS


def _union(*boxes: Box) -> Box:
    return clip_box(
        (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    )


def _lung_band(lung: LungField, top: float, bottom: float, *, medial_pad: float = 0.0) -> Box:
    """Horizontal band of one lung from fraction ``top`` to ``bottom`` of its height."""
    x0, x1 = sorted((lung.lateral, lung.medial))
    pad = 0.015
    if lung.lateral < lung.medial:  # patient right (image left)
        x0, x1 = x0 - pad, x1 + medial_pad
    else:
        x0, x1 = x0 - medial_pad, x1 + pad
    return clip_box((lung.apex + top * lung.height, x0, lung.apex + bottom * lung.height, x1))


def _single_region(anatomy: Anatomy, name: str) -> Box:
    a = anatomy
    hgt = a.lung_height
    if name.startswith(("apex_", "upper_zone_", "mid_zone_", "lower_zone_", "costophrenic_angle_", "hilum_")):
        side = name.rsplit("_", 1)[1]
        lung = a.lung(side)
        if name.startswith("apex_"):
            return _lung_band(lung, -0.08, 0.3)
        if name.startswith("upper_zone_"):
            return _lung_band(lung, -0.06, 0.42)
        if name.startswith("mid_zone_"):
            return _lung_band(lung, 0.3, 0.7)
        if name.startswith("lower_zone_"):
            return _lung_band(lung, 0.62, 1.12)
        if name.startswith("costophrenic_angle_"):
            width = abs(lung.medial - lung.lateral)
            sign = 1.0 if lung.lateral < lung.medial else -1.0
            x_out = lung.lateral - sign * 0.03
            x_in = lung.lateral + sign * 0.55 * width
            # fluid hides the angle and lifts the visible lung base: reach well below it
            return clip_box((lung.cp_row - 0.25 * lung.height, x_out, lung.cp_row + 0.2 * lung.height, x_in))
        # hilum: medial part of the lung at the carina-to-mid-zone level, reaching into the mediastinum
        width = abs(lung.medial - lung.lateral)
        sign = 1.0 if lung.lateral < lung.medial else -1.0
        x_med = lung.mid_medial + sign * 0.04
        x_lat = lung.mid_medial - sign * 0.4 * width
        y0 = max(a.carina_row - 0.1 * hgt, lung.apex + 0.2 * lung.height)
        return clip_box((y0, x_lat, lung.apex + 0.68 * lung.height, x_med))
    if name == "cardiac_silhouette":
        return a.heart_box
    if name == "mediastinum":
        apex = min(a.lung_right.apex, a.lung_left.apex)
        x0 = min(a.lung_right.mid_medial, a.midline - 0.04) - 0.03
        x1 = max(a.lung_left.mid_medial, a.midline + 0.04) + 0.03
        return _union(clip_box((apex - 0.05 * hgt, x0, a.heart_box[0] + 0.1 * hgt, x1)), a.heart_box)
    if name == "trachea_carina":
        apex = min(a.lung_right.apex, a.lung_left.apex)
        half = 0.12  # wide enough for both main bronchi
        return clip_box((apex - 0.1 * hgt, a.trachea_col - half, a.carina_row + 0.28 * hgt, a.trachea_col + half))
    if name == "diaphragm":
        top = min(a.lung_right.dome, a.lung_left.dome) - 0.1 * hgt
        bottom = max(a.lung_right.cp_row, a.lung_left.cp_row) + 0.1 * hgt
        return clip_box((top, a.lung_right.lateral - 0.03, bottom, a.lung_left.lateral + 0.03))
    if name == "upper_abdomen":
        lung = a.lung_left
        top = lung.dome - 0.05 * hgt
        return clip_box((top, a.midline - 0.1, lung.dome + 0.6 * hgt, lung.lateral + 0.03))
    raise InputError(f"unknown region {name!r}; known: {', '.join(REGIONS)}")


_PAIRS = {
    "apices": ("apex_right", "apex_left"),
    "lower_zones": ("lower_zone_right", "lower_zone_left"),
    "costophrenic_angles": ("costophrenic_angle_right", "costophrenic_angle_left"),
    "hila": ("hilum_right", "hilum_left"),
}


def parse_box(box: Sequence[float]) -> Box:
    """Validate an explicit normalised box ``(y0, x0, y1, x1)``; raises InputError when it is not one."""
    values = list(box)
    if len(values) != 4:
        raise InputError(f"box {tuple(values)}: expected 4 numbers (y0, x0, y1, x1)")
    try:
        y0, x0, y1, x1 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"box {tuple(values)}: not numbers") from None
    if not all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in (y0, x0, y1, x1)):
        raise InputError(f"box {(y0, x0, y1, x1)}: coordinates must be normalised to [0, 1]")
    if y1 <= y0 or x1 <= x0:
        raise InputError(f"box {(y0, x0, y1, x1)}: empty (need y0 < y1 and x0 < x1)")
    return (y0, x0, y1, x1)


def region_box(anatomy: Anatomy | None, region: str | Sequence[float]) -> Box:
    """Normalised box ``(y0, x0, y1, x1)`` of a named region of :data:`tools.vocabulary.REGIONS`, or ``region``
    itself when it is an explicit normalised box (then ``anatomy`` may be ``None``).

    "left"/"right" are the *patient's*: ``apex_left`` is on the image's right side.
    """
    if not isinstance(region, str):
        return parse_box(region)
    name = region.strip().lower()
    if name not in REGIONS:
        raise InputError(f"unknown region {region!r}; known: {', '.join(REGIONS)}")
    if anatomy is None:
        raise InputError(f"region {region!r}: needs the image's anatomy (locate_anatomy) to place it")
    if name in _PAIRS:
        return _union(*(_single_region(anatomy, part) for part in _PAIRS[name]))
    return _single_region(anatomy, name)
