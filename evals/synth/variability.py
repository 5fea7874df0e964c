"""Patient variability: habitus, pose, breathing, soft tissue, exposure, noise, view; all drawn from one seed.

Most of it is applied as cheap 2-D operations after projection. Geometric changes that depend only on the
image-plane coordinates (scale, aspect, in-plane rotation, the diaphragm's vertical position, a smooth
elastic warp) commute with the anterior-posterior parallel projection, so warping the projection equals
projecting the warped volume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PatientParams:
    """Per-image appearance parameters."""

    sex: str
    age: int
    view_position: str  # "PA" or "AP"
    scale: float  # global size of the patient in the field of view
    aspect: float  # width / height multiplier (body habitus)
    rotation_deg: float  # in-plane rotation
    shift_x: float  # translation, fraction of the field of view
    shift_y: float
    elastic_px: float  # amplitude of the smooth elastic warp, canonical pixels
    elastic_seed: int
    breath_mm: float  # diaphragm shift from breathing (positive = deeper inspiration)
    soft_tissue: float  # extra soft-tissue line integral (thicker patient)
    bone_weight: float  # bone conspicuity (lower in older patients)
    exposure: float  # shifts the display window (positive = darker image)
    contrast: float  # display gamma
    noise: float  # detector noise standard deviation (display units)
    magnification: float  # AP magnification of the whole chest
    heart_magnification: float  # extra magnification of the (anterior) heart in AP

    def as_dict(self) -> dict[str, Any]:
        """The parameters as a plain dictionary (for metadata)."""
        return asdict(self)


def sample_patient(rng: np.random.Generator, view: str | None = None) -> PatientParams:
    """Draw one patient's appearance; ``view`` forces "PA" or "AP" (else 75% PA)."""
    sex = "F" if rng.random() < 0.5 else "M"
    age = int(np.clip(rng.normal(58, 16), 18, 95))
    view_position = view or ("PA" if rng.random() < 0.75 else "AP")
    ap = view_position == "AP"
    return PatientParams(
        sex=sex,
        age=age,
        view_position=view_position,
        scale=float(rng.uniform(0.92, 1.06) * (0.97 if sex == "F" else 1.0)),
        aspect=float(rng.uniform(0.92, 1.08)),
        rotation_deg=float(rng.normal(0, 2.0)),
        shift_x=float(rng.normal(0, 0.015)),
        shift_y=float(rng.normal(0, 0.015)),
        elastic_px=float(rng.uniform(2.0, 6.0)),
        elastic_seed=int(rng.integers(2**31)),
        breath_mm=float(rng.normal(-6.0 if ap else 0.0, 5.0)),
        soft_tissue=float(max(rng.normal(0.35, 0.25), 0.0)),
        bone_weight=float(np.clip(1.15 - 0.004 * (age - 20) + rng.normal(0, 0.06), 0.75, 1.3)),
        exposure=float(rng.normal(0, 0.05)),
        contrast=float(rng.uniform(0.85, 1.15)),
        noise=float(rng.uniform(0.006, 0.02) * (1.4 if ap else 1.0)),
        magnification=float(rng.uniform(1.05, 1.1) if ap else 1.0),
        heart_magnification=float(rng.uniform(1.06, 1.12) if ap else 1.0),
    )


def elastic_field(seed: int, shape: tuple[int, int], amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random displacement field (rows, cols) of about ``amplitude`` pixels, from a small grid."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((2, 5, 5)).astype(np.float32) * amplitude
    zoom = (shape[0] / 5, shape[1] / 5)
    dr = ndimage.zoom(coarse[0], zoom, order=3)[: shape[0], : shape[1]]
    dc = ndimage.zoom(coarse[1], zoom, order=3)[: shape[0], : shape[1]]
    return dr, dc


def breast_shadows(rows: int, cols: int, lung_box: tuple[float, float, float, float], size: float) -> np.ndarray:
    """Soft-tissue line integral of two breasts over the lower lungs (a sex-driven subtle appearance)."""
    r0, r1, c0, c1 = lung_box
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    out = np.zeros((rows, cols), np.float32)
    height = r1 - r0
    width = c1 - c0
    for frac in (0.22, 0.78):
        cr = r0 + 0.72 * height
        cw = c0 + frac * width
        ry, rx = 0.2 * height * size, 0.2 * width * size
        d = ((rr - cr) / ry) ** 2 + ((cc - cw) / rx) ** 2
        fade = np.clip(0.5 + (rr - cr) / ry, 0, 1)  # dense inferiorly, fading toward the upper margin
        out += np.sqrt(np.clip(1 - d, 0, None)) * fade * 0.45 * size
    return out
