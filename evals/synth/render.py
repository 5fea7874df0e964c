"""The SynthCXR renderer: base projection + finding deltas + devices -> patient warp -> radiograph display.

Pipeline for one image (all deterministic given ``seed``):

1. Line integrals in the *canonical plane* (0.70 mm square pixels, 473 x 512, head up, patient's right on
   the image's left): precomputed soft-tissue and bone projections of the cleaned CT, plus the cached
   projected deltas of each planted finding, plus devices, plus patient soft tissue (habitus, breasts).
2. One inverse coordinate map to the output grid: field of view, scale/aspect (habitus), rotation,
   translation, AP magnification (whole chest and, more, the anterior heart), a smooth elastic warp and the
   diaphragm position (breathing, low lung volumes, hyperinflation).
3. Display: the line integral *is* the log-transformed detector signal; a fixed window (shifted by the
   exposure), a gamma, unsharp-mask edge enhancement as in digital radiography, detector noise, 8 bit.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from evals.synth.findings import FINDING_SPECS, EditContext, Effect, PlantedFinding
from evals.synth.variability import PatientParams, breast_shadows, elastic_field, sample_patient
from evals.synth.volume import PreparedVolume, load_volume
from tools.domain import InputError

log = logging.getLogger(__name__)

CANON_ROWS = 473
CANON_COLS = 512
PIXEL_MM = 0.703125
FOV_PX = 440.0  # square field of view, canonical pixels (~328 mm)
N_VARIANTS = 6  # distinct 3-D shapes per (finding, attributes); the patient warp makes every image unique
WINDOW = (0.7, 6.2)


@dataclass
class SynthSample:
    """One rendered study: 8-bit image, report, planted findings, metadata and per-finding image masks."""

    image: np.ndarray
    report: str
    findings: list[PlantedFinding]
    metadata: dict[str, Any]
    region_masks: dict[str, np.ndarray] = field(default_factory=dict)

    def region_box(self, finding: str) -> tuple[int, int, int, int] | None:
        """Bounding box ``(row0, col0, row1, col1)`` (exclusive ends) of a finding's mask, or ``None``."""
        mask = self.region_masks.get(finding)
        if mask is None or not mask.any():
            return None
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _crc(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


class Renderer:
    """Holds the prepared volume, canonical base images and the cache of finding effects."""

    def __init__(self, volume: PreparedVolume) -> None:
        from scipy import ndimage

        self.vol = volume
        zoom = (CANON_ROWS / volume.base_soft.shape[0], CANON_COLS / volume.base_soft.shape[1])
        self.base_soft = np.clip(ndimage.zoom(volume.base_soft, zoom, order=3), 0, None).astype(np.float32)
        self.base_bone = np.clip(ndimage.zoom(volume.base_bone, zoom, order=3), 0, None).astype(np.float32)
        body = self.base_soft > 0.3
        self.body = ndimage.gaussian_filter(body.astype(np.float32), 6.0)
        ctx = self.context(0)
        lungs = np.argwhere(volume.lungs("both"))
        (r_top, c_lo), (r_bot, c_hi) = ctx.to_plane(
            np.array([[lungs[:, 0].min(), 0, lungs[:, 2].max()], [lungs[:, 0].max(), 0, lungs[:, 2].min()]])
        )
        self.lung_box = (float(r_top), float(r_bot), float(c_lo), float(c_hi))
        liver_top = np.argwhere(volume.label_mask("liver"))[:, 2].max()
        self.apex_row = float(r_top)
        self.dome_row = float(ctx.to_plane(np.array([[0, 0, liver_top]]))[0, 0])
        heart = np.argwhere(volume.label_mask("heart")).mean(0)
        self.heart_rc = ctx.to_plane(heart[None])[0]
        self.center_rc = np.array([(r_top + r_bot) / 2.0 + 10.0, (c_lo + c_hi) / 2.0])
        self._effects: dict[tuple[Any, ...], Effect] = {}
        self._ctx_cache: dict[str, np.ndarray] = {}

    def context(self, seed: int) -> EditContext:
        """An edit context with a generator seeded by ``seed``."""
        return EditContext(
            self.vol, CANON_ROWS, CANON_COLS, np.random.default_rng(seed), getattr(self, "_ctx_cache", {})
        )

    def effect(self, finding: PlantedFinding, variant: int) -> Effect:
        """The (cached) effect of one finding in one of :data:`N_VARIANTS` shapes."""
        key = (*finding.cache_key(), variant)
        if key not in self._effects:
            resolved = finding.resolved()
            spec = FINDING_SPECS[finding.finding]
            self._effects[key] = spec.build(self.context(_crc(key)), dict(resolved.attributes))
        return self._effects[key]

    # ------------------------------------------------------------------ geometry

    def _coords(self, p: PatientParams, size: int, diaphragm_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (row, col) sampled by each output pixel."""
        v, u = np.mgrid[0:size, 0:size].astype(np.float32)
        y = ((v + 0.5) / size - 0.5 - p.shift_y) * FOV_PX
        x = ((u + 0.5) / size - 0.5 - p.shift_x) * FOV_PX
        s = p.scale * p.magnification
        y /= s
        x /= s * p.aspect
        th = np.deg2rad(p.rotation_deg)
        cos, sin = np.cos(th), np.sin(th)
        row = self.center_rc[0] + cos * y + sin * x
        col = self.center_rc[1] - sin * y + cos * x
        if p.heart_magnification != 1.0:
            dr, dc = row - self.heart_rc[0], col - self.heart_rc[1]
            m = 1 + (p.heart_magnification - 1) * np.exp(-(dr**2 + dc**2) / (2 * 95.0**2))
            row = self.heart_rc[0] + dr / m
            col = self.heart_rc[1] + dc / m
        er, ec = elastic_field(p.elastic_seed, (size, size), p.elastic_px)
        row = row + er
        col = col + ec
        shift = diaphragm_mm / PIXEL_MM
        if shift:
            a, d = self.apex_row, self.dome_row

            def disp(r: np.ndarray) -> np.ndarray:
                up = np.clip((r - a) / (d - a), 0, 1)
                down = np.clip(1 - (r - d) / (CANON_ROWS + 60 - d), 0, 1)
                return shift * np.where(r <= d, up, down)

            src = row.copy()
            for _ in range(3):
                src = row - disp(src)
            row = src
        return row.astype(np.float32), col.astype(np.float32)

    # ------------------------------------------------------------------ render

    def render(
        self,
        findings: list[PlantedFinding],
        seed: int,
        size: int = 512,
        view: str | None = None,
        with_report: bool = True,
    ) -> SynthSample:
        """Render one study; see :func:`render_sample`."""
        from scipy import ndimage

        if size < 32 or size > 2048:
            raise InputError(f"image size {size} out of range (32..2048)")
        if view not in (None, "PA", "AP"):
            raise InputError(f"view {view!r} must be 'PA' or 'AP'")
        keys = [f.finding for f in findings]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise InputError(f"finding {dup[0]!r} planted twice in one study; use attributes (e.g. side=bilateral)")
        p = sample_patient(np.random.default_rng([seed, 0]), view)
        effects = {
            f.finding: self.effect(f, int(np.random.default_rng([seed, 2, _crc(f.finding)]).integers(N_VARIANTS)))
            for f in findings
        }
        half_soft = np.zeros_like(self.vol.base_soft[:, ::2])
        half_bone = np.zeros_like(half_soft)
        device = np.zeros((CANON_ROWS, CANON_COLS), np.float32)
        diaphragm = p.breath_mm
        touched = False
        for eff in effects.values():
            if eff.soft is not None:
                half_soft += eff.soft
                touched = True
            if eff.bone is not None:
                half_bone += eff.bone
                touched = True
            if eff.device is not None:
                device += eff.device
            diaphragm += eff.diaphragm_mm
        soft = self.base_soft
        bone = self.base_bone
        if touched:
            zoom = (CANON_ROWS / half_soft.shape[0], CANON_COLS / half_soft.shape[1])
            soft = soft + ndimage.zoom(half_soft, zoom, order=1)
            bone = bone + ndimage.zoom(half_bone, zoom, order=1)
        line = np.clip(soft, 0, None) + p.bone_weight * np.clip(bone, 0, None) + device
        line = line + p.soft_tissue * self.body
        if p.sex == "F":
            line = line + breast_shadows(CANON_ROWS, CANON_COLS, self.lung_box, 0.8 + 0.4 * (p.elastic_px - 2) / 4)
        row, col = self._coords(p, size, diaphragm)
        coords = np.stack([row, col])
        img = ndimage.map_coordinates(line, coords, order=1, mode="nearest")
        lo, hi = WINDOW
        lo += p.exposure * 2 + 0.25 * p.soft_tissue
        hi += p.exposure * 2 + 0.6 * p.soft_tissue
        t = np.clip((img - lo) / (hi - lo), 0, None)
        y = np.clip((1 - np.exp(-2.5 * t)) / (1 - np.exp(-2.5)), 0, 1) ** (1.65 * p.contrast)
        sigma = 10.0 * size / 512
        y = y + 0.5 * (y - ndimage.gaussian_filter(y, sigma))
        y = y + np.random.default_rng([seed, 1]).standard_normal((size, size)).astype(np.float32) * p.noise
        image = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)
        masks = {
            key: ndimage.map_coordinates(eff.region.astype(np.float32), coords, order=1, mode="constant") > 0.25
            for key, eff in effects.items()
        }
        metadata: dict[str, Any] = {
            "seed": seed,
            "sex": p.sex,
            "age": p.age,
            "view_position": p.view_position,
            "size": size,
            "findings": [f.resolved().model_dump() for f in findings],
            "patient": p.as_dict(),
        }
        report = ""
        if with_report:
            from evals.synth.reports import write_report

            report = write_report(findings, np.random.default_rng([seed, 3]), view_position=p.view_position)
        return SynthSample(image=image, report=report, findings=list(findings), metadata=metadata, region_masks=masks)


@lru_cache(maxsize=2)
def _renderer_for(path: str) -> Renderer:
    return Renderer(load_volume(Path(path)))


def get_renderer(cache_dir: Path | None = None) -> Renderer:
    """The renderer for ``cache_dir`` (default: the settings' cache dir), built once per process."""
    if cache_dir is None:
        from tools.settings import Settings

        cache_dir = Settings().cache_dir
    return _renderer_for(str(cache_dir))


def render_sample(
    findings: list[PlantedFinding] | None = None,
    seed: int = 0,
    size: int = 512,
    view: str | None = None,
    *,
    cache_dir: Path | None = None,
    with_report: bool = True,
) -> SynthSample:
    """Render one synthetic chest radiograph with ``findings`` planted; deterministic by ``seed``.

    ``view`` forces "PA" or "AP" (else drawn from the seed). Severity is set through each finding's
    attributes (size/severity). ``cache_dir`` defaults to the settings' cache dir (prepared volume on disk).
    """
    return get_renderer(cache_dir).render(list(findings or []), seed, size, view, with_report=with_report)
