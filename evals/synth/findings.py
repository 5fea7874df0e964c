"""Findings planted in the CT: each is a small declarative spec (vocabulary key, region, builder).

Anatomical findings edit the half-resolution HU volume inside the right structures of the label map
(lobes for consolidation, the dependent lung base for effusion, the heart for cardiomegaly, a named rib for a
fracture...) and return the *projection of the edit* (a delta of line integrals), so rendering a finding is
``base + delta``. Support devices are 3-D polylines that follow the real anatomy (trachea, esophagus,
brachiocephalic veins, SVC, stomach, heart) and are projected analytically as tubes or wires.
Lung-volume findings move the diaphragm (a vertical warp, which commutes with the AP projection).

To add a finding: write ``def _my_finding(ctx: EditContext, attrs: dict[str, str]) -> Effect`` and register
it in :data:`FINDING_SPECS` with its default attributes (the vocabulary key must exist in
``tools.vocabulary.PLANTABLE_FINDINGS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evals.synth.volume import BONE_PREFIXES, PreparedVolume, hu_to_mu
from tools.domain import InputError
from tools.vocabulary import PLANTABLE_FINDINGS, describe_finding


class PlantedFinding(BaseModel):
    """A finding to plant: a vocabulary key and its attributes (validated against the vocabulary)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    finding: str = Field(description="Vocabulary key, e.g. 'pleural_effusion'.")
    attributes: dict[str, str] = Field(default_factory=dict, description="e.g. {'side': 'right', 'size': 'moderate'}")

    @field_validator("finding")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PLANTABLE_FINDINGS:
            raise InputError(f"unknown finding {value!r}; known: {', '.join(sorted(PLANTABLE_FINDINGS))}")
        if value not in FINDING_SPECS:
            raise InputError(f"finding {value!r} cannot be planted by SynthCXR")
        return value

    @model_validator(mode="after")
    def _valid_attributes(self) -> PlantedFinding:
        allowed = PLANTABLE_FINDINGS[self.finding].attributes
        for name, val in self.attributes.items():
            if name not in allowed:
                raise InputError(
                    f"finding {self.finding!r}: unknown attribute {name!r} (allowed: {', '.join(allowed) or 'none'})"
                )
            if val not in allowed[name]:
                raise InputError(
                    f"finding {self.finding!r}: impossible {name} {val!r} (allowed: {', '.join(allowed[name])})"
                )
        return self

    def resolved(self) -> PlantedFinding:
        """The same finding with every missing attribute filled with the spec's default."""
        attrs = dict(FINDING_SPECS[self.finding].defaults)
        attrs.update(self.attributes)
        return PlantedFinding(finding=self.finding, attributes=attrs)

    @property
    def phrase(self) -> str:
        """Clinical phrase, e.g. 'moderate right pleural effusion'."""
        return describe_finding(self.finding, self.resolved().attributes)

    def cache_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Hashable identity of the resolved finding."""
        return (self.finding, tuple(sorted(self.resolved().attributes.items())))


@dataclass
class Effect:
    """What a finding does to the image, in the canonical plane.

    ``soft``/``bone``: deltas of line integrals at the half-resolution plane ``(nz, nx2)`` (upsampled by the
    renderer); ``device``: added attenuation drawn at the canonical plane; ``region``: canonical-plane mask of
    where the finding is; ``diaphragm_mm``: downward shift of the diaphragm (negative = up).
    """

    region: np.ndarray
    soft: np.ndarray | None = None
    bone: np.ndarray | None = None
    device: np.ndarray | None = None
    diaphragm_mm: float = 0.0


@dataclass
class EditContext:
    """The prepared volume plus the canonical plane geometry and a seeded generator for this variant."""

    vol: PreparedVolume
    rows: int
    cols: int
    rng: np.random.Generator
    cache: dict[str, np.ndarray] = field(default_factory=dict)

    # ---- geometry helpers
    @property
    def nz(self) -> int:
        """Number of slices."""
        return self.vol.shape[2]

    def to_plane(self, pts: np.ndarray) -> np.ndarray:
        """Half-res voxel points (N, 3) -> canonical plane (row, col) (N, 2)."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        col = (pts[:, 0] + 0.5) * (self.cols / self.vol.shape[0]) - 0.5
        row = (self.nz - 1 - pts[:, 2]) * (self.rows - 1) / (self.nz - 1)
        return np.stack([row, col], axis=1)

    def mm(self) -> np.ndarray:
        """Voxel spacing (x, y, z) in mm of the editable volume."""
        return np.asarray(self.vol.spacing)

    def project(self, delta_soft: np.ndarray, delta_bone: np.ndarray, box: tuple[slice, slice, slice]) -> Effect:
        """Project a local 3-D delta of mu (inside ``box``) to a half-res plane effect with its region."""
        nx, _ny, nz = self.vol.shape
        dy = self.vol.spacing[1]
        soft = np.zeros((nx, nz), np.float32)
        bone = np.zeros((nx, nz), np.float32)
        soft[box[0], box[2]] = delta_soft.sum(axis=1) * dy
        bone[box[0], box[2]] = delta_bone.sum(axis=1) * dy
        soft_img = soft[:, ::-1].T.copy()
        bone_img = bone[:, ::-1].T.copy()
        support = (np.abs(soft_img) + np.abs(bone_img)) > 0.02
        return Effect(region=self.upsample_mask(support), soft=soft_img, bone=bone_img)

    def upsample_mask(self, mask: np.ndarray) -> np.ndarray:
        """Half-res plane mask (nz, nx2) -> canonical plane mask (rows, cols)."""
        r = np.clip(np.round(np.arange(self.rows) * (mask.shape[0] - 1) / (self.rows - 1)).astype(int), 0, None)
        c = np.clip((np.arange(self.cols) * mask.shape[1]) // self.cols, 0, mask.shape[1] - 1)
        return mask[np.ix_(r, c)]

    def edit(self, box: tuple[slice, slice, slice], new_hu: np.ndarray) -> Effect:
        """Replace the HU inside ``box`` with ``new_hu`` and return the projected effect."""
        old = self.vol.hu[box].astype(np.float32)
        s0, b0 = hu_to_mu(old)
        s1, b1 = hu_to_mu(new_hu)
        return self.project(s1 - s0, b1 - b0, box)


def _bbox(mask: np.ndarray, pad: int = 2) -> tuple[slice, slice, slice]:
    pts = np.argwhere(mask)
    if len(pts) == 0:
        raise InputError("empty region in the label map")
    lo = np.maximum(pts.min(0) - pad, 0)
    hi = np.minimum(pts.max(0) + pad + 1, mask.shape)
    return (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])), slice(int(lo[2]), int(hi[2])))


def _grid(box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.meshgrid(
        np.arange(box[0].start, box[0].stop),
        np.arange(box[1].start, box[1].stop),
        np.arange(box[2].start, box[2].stop),
        indexing="ij",
    )


def _sides(attrs: dict[str, str], key: str = "side") -> list[str]:
    side = attrs.get(key, "right")
    return ["left", "right"] if side == "bilateral" else [side]


def _merge(effects: list[Effect]) -> Effect:
    out = effects[0]
    for e in effects[1:]:
        out = Effect(
            region=out.region | e.region,
            soft=_add(out.soft, e.soft),
            bone=_add(out.bone, e.bone),
            device=_add(out.device, e.device),
            diaphragm_mm=out.diaphragm_mm + e.diaphragm_mm,
        )
    return out


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


# ------------------------------------------------------------------ anatomical findings

EFFUSION_MM = {"small": 22.0, "moderate": 55.0, "large": 100.0}


def _effusion(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    effects = []
    dz = ctx.mm()[2]
    height = EFFUSION_MM[attrs["size"]] * (0.9 + 0.2 * ctx.rng.random())
    for side in _sides(attrs):
        lung = ctx.vol.lungs(side)
        box = _bbox(lung)
        sub = lung[box]
        ii, jj, kk = _grid(box)
        k_base = np.argwhere(sub)[:, 2].min() + box[2].start
        js = np.argwhere(sub)[:, 1] + box[1].start
        post = np.clip((js.max() - jj) / max(js.max() - js.min(), 1), 0, 1)
        xs = np.argwhere(sub)[:, 0] + box[0].start
        medial, lateral = (xs.max(), xs.min()) if side == "right" else (xs.min(), xs.max())
        lat = np.clip((ii - medial) / (lateral - medial), 0, 1)
        k_ref = max(float(np.percentile(np.argwhere(sub)[:, 2], 12)) + box[2].start, float(k_base))
        level = k_ref * dz + height * (0.2 + 0.9 * lat**2 + 0.5 * post)  # meniscus: higher laterally, posteriorly
        fluid = sub & (kk * dz < level)
        hu = ctx.vol.hu[box].astype(np.float32)
        new = np.where(fluid, 15.0, hu)
        effects.append(ctx.edit(box, new))
    return _merge(effects)


CARDIO_SCALE = {"mild": 1.14, "moderate": 1.34, "severe": 1.5}


def _cardiomegaly(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    heart = ctx.vol.label_mask("heart", "atrial_appendage_left")
    s = CARDIO_SCALE[attrs["severity"]] * (0.97 + 0.06 * ctx.rng.random())
    c = np.argwhere(heart).mean(0)
    pts = np.argwhere(heart)
    c[2] = pts[:, 2].min() + 0.3 * (pts[:, 2].max() - pts[:, 2].min())  # grow mostly up/out from the base
    ext = (pts.max(0) - pts.min(0)) * (s - 1) * 0.75 + 4
    lo = np.maximum(pts.min(0) - ext, 0).astype(int)
    hi = np.minimum(pts.max(0) + ext + 1, heart.shape).astype(int)
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    ii, jj, kk = _grid(box)
    sx = np.where(ii > c[0], s * 1.05, 1 + (s - 1) * 0.85)  # the left ventricle enlarges more (patient left = +i)
    src_i = np.clip(np.round(c[0] + (ii - c[0]) / sx), 0, heart.shape[0] - 1).astype(int)
    src_j = np.clip(np.round(c[1] + (jj - c[1]) / (1 + (s - 1) * 0.8)), 0, heart.shape[1] - 1).astype(int)
    src_k = np.clip(np.round(c[2] + (kk - c[2]) / (1 + (s - 1) * 0.5)), 0, heart.shape[2] - 1).astype(int)
    grown = heart[src_i, src_j, src_k]
    hu = ctx.vol.hu[box].astype(np.float32)
    bones = ctx.vol.label_mask(*[n for n in ctx.vol.names if n.startswith(("rib_", "vertebrae_", "sternum"))])[box]
    new = np.where(grown & ~bones & (hu < 30), 40.0, hu)
    return ctx.edit(box, new)


PTX_FRACTION = {"small": 0.86, "moderate": 0.72, "large": 0.55}


def _pneumothorax(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    from scipy import ndimage

    side = attrs["side"]
    lung = ctx.vol.lungs(side)
    box = _bbox(lung, pad=3)
    sub = lung[box]
    pts = np.argwhere(sub)
    # retract toward the hilum (medial, lower-middle): apical and lateral air first, as in an erect patient
    xs = pts[:, 0]
    hil = np.array(
        [
            np.percentile(xs, 80 if side == "right" else 20),
            np.percentile(pts[:, 1], 50),
            np.percentile(pts[:, 2], 30),
        ]
    )
    f = PTX_FRACTION[attrs["size"]] * (0.97 + 0.05 * ctx.rng.random())
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in sub.shape], indexing="ij")
    src = [
        np.clip(np.round(hil[a] + (g - hil[a]) / f), 0, sub.shape[a] - 1).astype(int)
        for a, g in enumerate((ii, jj, kk))
    ]
    inner = sub[src[0], src[1], src[2]] & sub
    rim = sub & ~inner
    shell = inner & ~ndimage.binary_erosion(inner)
    hu = ctx.vol.hu[box].astype(np.float32)
    new = np.where(rim, -1000.0, hu)
    new = np.where(inner, np.minimum(hu + 120.0, 40.0), new)  # the collapsed lung is denser
    new = np.where(shell & ~ndimage.binary_erosion(sub, iterations=2), 400.0, new)  # visceral pleural line
    eff = ctx.edit(box, new)
    return eff


LOBE_LABELS = {
    "RUL": "lung_upper_lobe_right",
    "RML": "lung_middle_lobe_right",
    "RLL": "lung_lower_lobe_right",
    "LUL": "lung_upper_lobe_left",
    "LLL": "lung_lower_lobe_left",
}


def _consolidation(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    lobe = ctx.vol.label_mask(LOBE_LABELS[attrs["lobe"]])
    box = _bbox(lobe)
    sub = lobe[box]
    field_ = _smooth_noise(ctx.rng, sub.shape, 5.0)
    # cover ~65% of the lobe with soft-edged airspace opacity
    thr = np.percentile(field_[sub], 35)
    w = np.clip((field_ - thr) * 1.5 + 0.5, 0, 1) * sub
    hu = ctx.vol.hu[box].astype(np.float32)
    new = hu + (25.0 - hu) * w * 0.95
    return ctx.edit(box, new)


NODULE_MM = {"small": 6.0, "moderate": 11.0, "large": 14.0}  # radius; diameters 12 / 22 / 28 mm
MASS_MM = {"small": 18.0, "moderate": 25.0, "large": 32.0}  # radius; diameters 36 / 50 / 64 mm
NODULE_HU = (500.0, 800.0)  # solid, often calcified granuloma: dense enough to read through the lung markings
MASS_HU = (160.0, 220.0)


def _lesion(
    ctx: EditContext, attrs: dict[str, str], radius_mm: float, lobulated: bool, hu_range: tuple[float, float]
) -> Effect:
    from scipy import ndimage

    side = attrs["side"]
    lung = ctx.vol.lungs(side)
    pts = np.argwhere(lung)
    k_lo, k_hi = pts[:, 2].min(), pts[:, 2].max()
    zone = {"upper": (0.62, 0.85), "mid": (0.4, 0.62), "lower": (0.18, 0.4)}[attrs["zone"]]
    r_vox = radius_mm / ctx.mm()
    key = f"eroded_{side}"
    if key not in ctx.cache:
        ctx.cache[key] = ndimage.binary_erosion(lung, iterations=4)
    inner = ctx.cache[key]
    depth_key = f"depth_{side}"
    if depth_key not in ctx.cache:
        ctx.cache[depth_key] = lung.sum(axis=1)  # (i, k): voxels of lung along the beam
    depth = ctx.cache[depth_key]
    cand = np.argwhere(inner)
    zf = (cand[:, 2] - k_lo) / (k_hi - k_lo)
    xs = pts[:, 0]
    xf = (cand[:, 0] - xs.min()) / (xs.max() - xs.min())
    lateral = xf < 0.5 if side == "right" else xf > 0.5  # keep clear of the mediastinum in projection
    cand = cand[(zf >= zone[0]) & (zf <= zone[1]) & lateral]
    if len(cand) == 0:
        raise InputError(f"no room for a {attrs['zone']} zone lesion in the {side} lung")
    # where the beam crosses much lung, so the lesion replaces air rather than heart or chest wall
    d_cand = depth[cand[:, 0], cand[:, 2]]
    cand = cand[d_cand >= np.percentile(d_cand, 50)]
    c = cand[ctx.rng.integers(len(cand))].astype(float)
    run = np.flatnonzero(lung[int(c[0]), :, int(c[2])])
    pieces = np.split(run, np.flatnonzero(np.diff(run) > 1) + 1)
    own = next(p for p in pieces if p[0] <= c[1] <= p[-1])
    c[1] = (own[0] + own[-1]) / 2.0  # the middle of the lung along the beam
    lo = np.maximum(np.floor(c - r_vox * 1.4) - 1, 0).astype(int)
    hi = np.minimum(np.ceil(c + r_vox * 1.4) + 2, lung.shape).astype(int)
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    ii, jj, kk = _grid(box)
    d = np.sqrt(((ii - c[0]) / r_vox[0]) ** 2 + ((jj - c[1]) / r_vox[1]) ** 2 + ((kk - c[2]) / r_vox[2]) ** 2)
    if lobulated:
        d = d * (1 + 0.1 * _smooth_noise(ctx.rng, d.shape, 1.5))
    w = np.clip((1.08 - d) / 0.16, 0, 1)  # a well-defined margin
    density = hu_range[0] + (hu_range[1] - hu_range[0]) * ctx.rng.random()
    hu = ctx.vol.hu[box].astype(np.float32)
    new = np.maximum(hu, hu + (density - hu) * w)
    return ctx.edit(box, new)


def _nodule(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    return _lesion(ctx, attrs, NODULE_MM[attrs["size"]], lobulated=False, hu_range=NODULE_HU)


def _mass(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    return _lesion(ctx, attrs, MASS_MM[attrs["size"]], lobulated=True, hu_range=MASS_HU)


EDEMA_HU = {"mild": 260.0, "moderate": 420.0, "severe": 600.0}


def _edema(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    lungs = ctx.vol.lungs("both")
    box = _bbox(lungs)
    sub = lungs[box]
    ii, jj, kk = _grid(box)
    mm = ctx.mm()
    w = np.zeros(sub.shape, np.float32)
    for side in ("left", "right"):
        pts = np.argwhere(ctx.vol.lungs(side))
        xs = pts[:, 0]
        hil = np.array(
            [np.percentile(xs, 88 if side == "right" else 12), pts[:, 1].mean(), np.percentile(pts[:, 2], 55)]
        )
        d2 = (((ii - hil[0]) * mm[0]) ** 2 + ((jj - hil[1]) * mm[1]) ** 2 * 0.3 + ((kk - hil[2]) * mm[2]) ** 2) / (
            2 * 70.0**2
        )
        w = np.maximum(w, np.exp(-d2))
    texture = 0.75 + 0.25 * np.clip(_smooth_noise(ctx.rng, sub.shape, 1.2), -2, 2)
    hu = ctx.vol.hu[box].astype(np.float32)
    amount = EDEMA_HU[attrs["severity"]] * (0.9 + 0.2 * ctx.rng.random())
    new = np.where(sub, np.minimum(hu + amount * (0.25 + 0.75 * w) * texture, 40.0), hu)
    return ctx.edit(box, new)


def _atelectasis(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    effects = []
    pattern = attrs["pattern"]
    for side in _sides(attrs):
        lobe = ctx.vol.label_mask("lung_lower_lobe_left" if side == "left" else "lung_lower_lobe_right")
        lung = ctx.vol.lungs(side)
        box = _bbox(lobe)
        sub = lobe[box]
        ii, _jj, kk = _grid(box)
        pts = np.argwhere(lung)
        k_lo, k_hi = pts[:, 2].min(), pts[:, 2].max()
        hu = ctx.vol.hu[box].astype(np.float32)
        if pattern == "basal":
            k_top = k_lo + 0.3 * (k_hi - k_lo)
            w = np.clip((k_top - kk) / 6.0, 0, 1) * sub
            new = hu + (-100.0 - hu) * w * 0.85
        else:
            thick = 1.0 if pattern == "linear" else 2.2
            xs = pts[:, 0]
            width = xs.max() - xs.min()
            x0 = xs.min() + width * (0.25 + 0.1 * ctx.rng.random())
            x1 = xs.max() - width * (0.2 + 0.1 * ctx.rng.random())
            k0 = k_lo + (0.33 + 0.1 * ctx.rng.random()) * (k_hi - k_lo)
            tilt = (ctx.rng.random() - 0.5) * 0.08
            kc = k0 + tilt * (ii - (x0 + x1) / 2)
            jc = np.percentile(pts[:, 1], 35 + 30 * ctx.rng.random())
            depth = (14.0 if pattern == "linear" else 24.0) / ctx.mm()[1]
            band = (np.abs(kk - kc) <= thick / 2 + 0.25) & (ii >= x0) & (ii <= x1) & sub & (np.abs(_jj - jc) < depth)
            ends = np.clip(np.minimum(ii - x0, x1 - ii) / 4.0, 0, 1)
            new = np.where(band, hu + (-350.0 - hu) * ends, hu)
        effects.append(ctx.edit(box, new))
    return _merge(effects)


def _lung_volume(ctx: EditContext, hu_shift: float, diaphragm_mm: float) -> Effect:
    lungs = ctx.vol.lungs("both")
    box = _bbox(lungs)
    hu = ctx.vol.hu[box].astype(np.float32)
    new = np.where(lungs[box], np.clip(hu + hu_shift, -1000.0, None), hu)
    eff = ctx.edit(box, new)
    # region: the band the diaphragm domes move through
    pts = np.argwhere(lungs)
    cols = ctx.to_plane(np.array([[pts[:, 0].min(), 0, 0], [pts[:, 0].max(), 0, 0]]))[:, 1]
    region = np.zeros((ctx.rows, ctx.cols), bool)
    # the whole lung height moves (apex fixed, dome shifted) and the abdomen below follows
    region[:, int(max(cols[0] - 25, 0)) : int(cols[1] + 25)] = True
    return Effect(region=region | eff.region, soft=eff.soft, bone=eff.bone, diaphragm_mm=diaphragm_mm)


def _low_lung_volumes(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    return _lung_volume(ctx, hu_shift=70.0, diaphragm_mm=-(24.0 + 8 * ctx.rng.random()))


def _hyperinflation(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    return _lung_volume(ctx, hu_shift=-70.0, diaphragm_mm=22.0 + 8 * ctx.rng.random())


MEDIASTINUM = (
    "heart",
    "aorta",
    "trachea",
    "esophagus",
    "superior_vena_cava",
    "pulmonary_vein",
    "atrial_appendage_left",
    "brachiocephalic_vein_left",
    "brachiocephalic_vein_right",
    "brachiocephalic_trunk",
    "common_carotid_artery_left",
    "common_carotid_artery_right",
)


def _mediastinum(ctx: EditContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mediastinum mask, dilated bone mask, per-slice "inside the thorax") of the volume, cached in ``ctx``."""
    if "med_mask" not in ctx.cache:
        from scipy import ndimage

        vol = ctx.vol
        lungs = vol.lungs("both")
        bones = vol.label_mask(*[n for n in vol.names if n.startswith(BONE_PREFIXES)])
        bones = ndimage.binary_dilation(bones, iterations=1)
        nx, ny, nz = vol.shape
        i_idx = np.arange(nx)[:, None, None]
        # the space between the lungs (per row j and slice k), in front of the vertebral bodies
        right_edge = np.where(vol.lungs("right"), i_idx, -1).max(axis=0)
        left_edge = np.where(vol.lungs("left"), i_idx, nx).min(axis=0)
        spine = vol.label_mask(*[n for n in vol.names if n.startswith("vertebrae_")])
        j_idx = np.arange(ny)[None, :, None]
        spine_front = np.where(spine, j_idx, -1).max(axis=1)  # (i, k) -> most anterior vertebral voxel
        spine_front_k = spine_front.max(axis=0)  # per slice
        between = (
            (i_idx > right_edge[None]) & (i_idx < left_edge[None]) & (right_edge >= 0)[None] & (left_edge < nx)[None]
        )
        between &= j_idx > spine_front_k[None, None, :]
        heart_lo = int(np.argwhere(vol.label_mask("heart"))[:, 2].min())
        between &= np.arange(nz)[None, None, :] >= heart_lo  # below the heart lie the liver and stomach
        labelled = vol.label_mask(*MEDIASTINUM)
        ids = [vol.names[n] for n in MEDIASTINUM]
        own = (vol.labels == 0) | np.isin(vol.labels, ids)  # never move the liver, stomach, thyroid...
        lab_i = np.where(labelled, i_idx, -1).max(axis=(0, 1)), np.where(labelled, i_idx, nx).min(axis=(0, 1))
        between &= (i_idx >= lab_i[1][None, None, :] - 6) & (i_idx <= lab_i[0][None, None, :] + 6)
        med = (between | ndimage.binary_dilation(labelled, iterations=1)) & own & ~lungs & ~bones & (vol.hu > -950)
        ctx.cache["med_mask"] = med
        ctx.cache["med_bones"] = bones
        ctx.cache["med_thorax"] = (between | lungs).any(axis=(0, 1))
    return ctx.cache["med_mask"], ctx.cache["med_bones"], ctx.cache["med_thorax"]


def _mediastinal_shift(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    """Move the mediastinum (heart, great vessels, trachea air column, mediastinal fat) sideways in 3-D.

    The content moves as one block, fully below the carina and tapering toward the neck (the trachea bends)
    and below the heart (the descending aorta bends back). Bones stay; the vacated space becomes lung, and
    the lung the mediastinum moves into is replaced by it, so no tissue is duplicated.
    """
    vol = ctx.vol
    med, bones, thorax_k = _mediastinum(ctx)
    nx, _ny, nz = vol.shape
    lungs = vol.lungs("both")
    heart_lo = int(np.argwhere(vol.label_mask("heart"))[:, 2].min())
    box = _bbox(med, pad=0)
    car = min(vol.centerline("trachea"))
    lung_lo = int(np.argwhere(lungs)[:, 2].min())
    shift_mm = 16.0 + 6 * ctx.rng.random()
    full = shift_mm / ctx.mm()[0] * (1 if attrs["direction"] == "left" else -1)
    pad = int(np.ceil(abs(full))) + 2
    box = (slice(max(box[0].start - pad, 0), min(box[0].stop + pad, nx)), box[1], box[2])
    hu = vol.hu[box].astype(np.float32)
    sub = med[box]
    keep = bones[box] | (hu <= -950)  # bones and the air outside the body never change
    thorax = thorax_k[box[2]]
    new = hu.copy()
    for n, k in enumerate(range(box[2].start, box[2].stop)):
        if k >= car:
            f = 1.0 - 0.7 * (k - car) / max(nz - 1 - car, 1)
        elif k < heart_lo:
            f = float(np.clip((k - lung_lo) / max(heart_lo - lung_lo, 1), 0, 1))
        else:
            f = 1.0
        step = int(round(full * f))
        src, moved_hu = sub[:, :, n], hu[:, :, n]
        if step == 0 or not src.any():
            continue
        dst = np.roll(src, step, axis=0)
        dst_hu = np.roll(moved_hu, step, axis=0)
        sl = new[:, :, n]
        # vacated: lung in the chest, soft tissue in the neck
        sl[src & ~dst & ~keep[:, :, n]] = -860.0 if thorax[n] else 40.0
        put = dst & ~keep[:, :, n]
        sl[put] = dst_hu[put]
    return ctx.edit(box, new)


def _rib_fracture(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    """A displaced fracture of the lateral arc of a named rib.

    A ~7 mm gap (bone replaced by soft tissue, the hematoma) and a fragment displaced ~7.5 mm down and
    ~5.5 mm toward the midline, so its end overrides the other end (a step-off). The half-resolution volume
    blurs the cortex (a rib averages ~270 HU, fainter than on a film), so the bone next to the break gets
    cortical density back, fading over ~2.5 cm on either side, which makes the break readable.
    """
    side, n = attrs["side"], attrs["rib"]
    rib = ctx.vol.label_mask(f"rib_{side}_{n}")
    box = _bbox(rib, pad=5)
    sub = rib[box]
    pts = np.argwhere(sub)
    mid = ctx.vol.shape[0] / 2 - box[0].start
    lat_dist = np.abs(pts[:, 0] - mid)
    j_lat = pts[np.argmax(lat_dist), 1]
    post = pts[pts[:, 1] <= j_lat]  # posterior-to-lateral arc
    d_post = np.abs(post[:, 0] - mid)
    frac = 0.68 + 0.14 * ctx.rng.random()
    cut = d_post.min() + frac * (d_post.max() - d_post.min())
    dist = np.abs(np.arange(sub.shape[0]) - mid)[:, None, None]
    jj = np.arange(sub.shape[1])[None, :, None]
    arc = sub & (jj <= j_lat)
    half_gap, fade = 2.5, 18.0
    gap = arc & (np.abs(dist - cut) <= half_gap)
    frag = arc & (dist > cut + half_gap) & (dist <= cut + 16)
    hu = ctx.vol.hu[box].astype(np.float32)
    boost = 750.0 * np.clip(1.0 - (np.abs(dist - cut) - half_gap) / fade, 0.0, 1.0)
    near = arc & (np.abs(dist - cut) <= half_gap + fade)
    dense = np.where(near, hu + boost, hu)  # cortical density near the break
    new = np.where(gap | frag, 40.0, dense)
    di = -4 if side == "left" else 4  # toward the midline
    shifted = np.roll(np.roll(np.where(frag, np.maximum(dense, 900.0), 40.0), -3, axis=2), di, axis=0)
    moved = np.roll(np.roll(frag, -3, axis=2), di, axis=0)
    new = np.where(moved, np.maximum(new, shifted), new)
    return ctx.edit(box, new)


# ------------------------------------------------------------------ devices


def _catmull(points: np.ndarray, n: int = 12) -> np.ndarray:
    """Smooth a polyline through its control points (Catmull-Rom)."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3:
        t = np.linspace(0, 1, n * len(p))[:, None]
        return p[0] + t * (p[-1] - p[0])
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        for t in np.linspace(0, 1, n, endpoint=False):
            out.append(
                0.5
                * (
                    2 * p1
                    + (-p0 + p2) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
                )
            )
    out.append(p[-1])
    return np.asarray(out)


def draw_tube(
    canvas: np.ndarray, path: np.ndarray, radius: float, wall: float, core: float, stripe: float = 0.0
) -> np.ndarray:
    """Add a tube along ``path`` ((N, 2) rows/cols, canonical plane) to ``canvas``; return its footprint mask.

    ``wall``: attenuation of a hollow tube wall (chord-length profile), ``core``: a solid radio-opaque
    wire, ``stripe``: a radio-opaque stripe offset inside the wall.
    """
    rows, cols = canvas.shape
    lo = np.maximum(np.floor(path.min(0) - radius - 3), 0).astype(int)
    hi = np.minimum(np.ceil(path.max(0) + radius + 4), [rows, cols]).astype(int)
    if hi[0] <= lo[0] or hi[1] <= lo[1]:
        return np.zeros_like(canvas, dtype=bool)
    rr, cc = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]].astype(np.float64)
    best = np.full(rr.shape, np.inf)
    for a, b in zip(path[:-1], path[1:], strict=True):
        ab = b - a
        denom = float(ab @ ab) or 1e-9
        t = np.clip(((rr - a[0]) * ab[0] + (cc - a[1]) * ab[1]) / denom, 0, 1)
        d = np.hypot(rr - (a[0] + t * ab[0]), cc - (a[1] + t * ab[1]))
        np.minimum(best, d, out=best)
    add = np.zeros(rr.shape)
    if wall:
        outer = np.sqrt(np.clip(radius**2 - best**2, 0, None))
        inner = np.sqrt(np.clip((radius * 0.7) ** 2 - best**2, 0, None))
        add += wall * (outer - inner)
    if core:
        add += core * np.clip(1.2 - best / max(radius, 0.8), 0, 1)
    if stripe:
        add += stripe * np.clip(1.0 - np.abs(best - radius * 0.45) / 0.9, 0, 1)
    canvas[lo[0] : hi[0], lo[1] : hi[1]] += add
    mask = np.zeros_like(canvas, dtype=bool)
    mask[lo[0] : hi[0], lo[1] : hi[1]] = best <= radius + 3
    return mask


def _device_effect(ctx: EditContext, tubes: list[tuple[np.ndarray, dict[str, float]]]) -> Effect:
    canvas = np.zeros((ctx.rows, ctx.cols), np.float32)
    region = np.zeros_like(canvas, dtype=bool)
    for pts3, style in tubes:
        path = _catmull(ctx.to_plane(pts3))
        region |= draw_tube(canvas, path, **style)
    return Effect(region=region, device=canvas)


def _carina(ctx: EditContext) -> np.ndarray:
    line = ctx.vol.centerline("trachea")
    k = min(line)
    return np.array([line[k][0], line[k][1], k], float)


def _trachea_path(ctx: EditContext, k_stop: float) -> list[np.ndarray]:
    line = ctx.vol.centerline("trachea")
    ks = sorted(line, reverse=True)
    top = line[ks[0]]
    pts = [np.array([top[0], top[1], ctx.nz + 4.0])]
    for k in ks[::3]:
        if k < k_stop:
            break
        pts.append(np.array([line[k][0], line[k][1], float(k)]))
    return pts


ETT_STYLE = {"radius": 6.0, "wall": 0.12, "core": 0.0, "stripe": 0.9}
WIRE_STYLE = {"radius": 1.8, "wall": 0.0, "core": 0.8, "stripe": 0.0}
NG_STYLE = {"radius": 2.8, "wall": 0.1, "core": 0.0, "stripe": 1.1}
LEAD_STYLE = {"radius": 1.6, "wall": 0.0, "core": 1.2, "stripe": 0.0}
CHEST_TUBE_STYLE = {"radius": 7.0, "wall": 0.12, "core": 0.0, "stripe": 1.1}


def _ett(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    car = _carina(ctx)
    mmz = ctx.mm()[2]
    if attrs["tip"] == "above_carina":
        tip_k = car[2] + (45.0 + 15 * ctx.rng.random()) / mmz
        pts = _trachea_path(ctx, tip_k)
        pts.append(np.array([pts[-1][0], pts[-1][1], tip_k]))
    else:
        pts = _trachea_path(ctx, car[2] + 2)
        pts.append(car + np.array([-4.0, 0, -2]))
        pts.append(car + np.array([-16.0 / ctx.mm()[0], 0, -22.0 / mmz]))
    return _device_effect(ctx, [(np.array(pts), ETT_STYLE)])


def _esophagus_path(ctx: EditContext, k_stop: float) -> list[np.ndarray]:
    line = ctx.vol.centerline("esophagus")
    ks = sorted(line, reverse=True)
    top = line[ks[0]]
    pts = [np.array([top[0], top[1], ctx.nz + 4.0])]
    for k in ks[::4]:
        if k < k_stop:
            break
        pts.append(np.array([line[k][0], line[k][1], float(k)]))
    return pts


def _enteric(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    tip = attrs["tip"]
    mm = ctx.mm()
    if tip == "stomach":
        line = ctx.vol.centerline("esophagus")
        pts = _esophagus_path(ctx, min(line) + 1)
        stomach = np.argwhere(ctx.vol.label_mask("stomach"))
        c = stomach.mean(0)
        pts.append(np.array([c[0] - 5, c[1], c[2] + 8]))
        pts.append(np.array([c[0] + 25.0 / mm[0], c[1], c[2] - 6.0 / mm[2]]))
    elif tip == "esophagus_coiled":
        line = ctx.vol.centerline("esophagus")
        k0 = float(np.percentile(list(line), 60))
        pts = _esophagus_path(ctx, k0)
        c = pts[-1]
        for t in np.linspace(0, 4 * np.pi, 14):
            pts.append(c + np.array([7.0 * np.sin(t) / mm[0], 0, (-6.0 * (1 - np.cos(t)) - 1.5 * t) / mm[2]]))
    else:  # bronchus: down the trachea, past the carina into the right lower lobe bronchus
        car = _carina(ctx)
        pts = _trachea_path(ctx, car[2] + 2)
        pts.append(car + np.array([-6.0 / mm[0], 0, -12.0 / mm[2]]))
        pts.append(car + np.array([-18.0 / mm[0], -4, -55.0 / mm[2]]))
    return _device_effect(ctx, [(np.array(pts), NG_STYLE)])


def _venous_path(ctx: EditContext, side: str, approach: str, tip: str) -> np.ndarray:
    mm = ctx.mm()
    svc = ctx.vol.centerline("superior_vena_cava")
    bcv = ctx.vol.centerline(f"brachiocephalic_vein_{side}")
    bk = sorted(bcv, reverse=True)
    pts: list[np.ndarray] = []
    if approach == "jugular":
        top = bcv[bk[0]]
        pts.append(np.array([top[0] + (-6 if side == "right" else 6), top[1], ctx.nz + 4.0]))
        pts.append(np.array([top[0], top[1], bk[0] + 2.0]))
    else:  # subclavian / arm: from lateral along under the clavicle
        clav = np.argwhere(ctx.vol.label_mask(f"clavicula_{side}"))
        edge = clav[:, 0].min() - 10 if side == "right" else clav[:, 0].max() + 10
        kc = clav[:, 2].mean()
        if approach == "arm":
            pts.append(np.array([edge - (20 if side == "right" else -20), clav[:, 1].mean(), kc - 20.0 / mm[2]]))
        pts.append(np.array([edge, clav[:, 1].mean(), kc - 12.0 / mm[2]]))
        pts.append(np.array([clav[:, 0].mean(), clav[:, 1].mean(), kc - 9.0 / mm[2]]))
    for k in bk[1::3]:
        pts.append(np.array([bcv[k][0], bcv[k][1], float(k)]))
    if tip == "too_high":
        return np.array(pts)
    sk = sorted(svc, reverse=True)
    stop = min(svc) + (6.0 if tip == "low_svc" else 0.0)
    for k in sk[::3]:
        if k < stop:
            break
        pts.append(np.array([svc[k][0], svc[k][1], float(k)]))
    last = svc[min(svc)]
    if tip == "cavoatrial_junction":
        pts.append(np.array([last[0] + 1, last[1], min(svc) - 1.0]))
    else:
        pts.append(np.array([svc[int(stop)][0] if int(stop) in svc else last[0], last[1], stop]))
    return np.array(pts)


def _cvc(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    side = "right" if ctx.rng.random() < 0.75 else "left"
    approach = "jugular" if ctx.rng.random() < 0.65 else "subclavian"
    path = _venous_path(ctx, side, approach, attrs["tip"])
    return _device_effect(ctx, [(path, {"radius": 2.6, "wall": 0.0, "core": 0.8, "stripe": 0.0})])


def _picc(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    side = "right" if ctx.rng.random() < 0.6 else "left"
    path = _venous_path(ctx, side, "arm", attrs["tip"])
    return _device_effect(ctx, [(path, WIRE_STYLE)])


def _chest_tube(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    side = attrs["side"]
    lung = np.argwhere(ctx.vol.lungs(side))
    mm = ctx.mm()
    k_lo, k_hi = lung[:, 2].min(), lung[:, 2].max()
    lateral = lung[:, 0].min() if side == "right" else lung[:, 0].max()
    sgn = -1 if side == "right" else 1
    kin = k_lo + 0.35 * (k_hi - k_lo)
    jm = lung[:, 1].mean()
    pts = [
        np.array([lateral + sgn * 30.0 / mm[0], jm, kin - 12.0 / mm[2]]),
        np.array([lateral + sgn * 2.0, jm, kin]),
        np.array([lateral - sgn * 22.0 / mm[0], jm, kin + 0.45 * (k_hi - kin)]),
        np.array([lateral - sgn * (45.0 + 10 * ctx.rng.random()) / mm[0], jm, k_hi - 25.0 / mm[2]]),
    ]
    return _device_effect(ctx, [(np.array(pts), CHEST_TUBE_STYLE)])


def _pacemaker(ctx: EditContext, attrs: dict[str, str]) -> Effect:
    mm = ctx.mm()
    side = "left" if ctx.rng.random() < 0.85 else "right"
    clav = np.argwhere(ctx.vol.label_mask(f"clavicula_{side}"))
    lateral = clav[:, 0].min() if side == "right" else clav[:, 0].max()
    gen = np.array([0.55 * lateral + 0.45 * clav[:, 0].mean(), clav[:, 1].max(), clav[:, 2].min() - 22.0 / mm[2]])
    heart = np.argwhere(ctx.vol.label_mask("heart"))
    hc = heart.mean(0)
    ra = np.array([np.percentile(heart[:, 0], 12), hc[1], np.percentile(heart[:, 2], 55)])
    rv = np.array([np.percentile(heart[:, 0], 70), np.percentile(heart[:, 1], 80), np.percentile(heart[:, 2], 8) + 3])
    cs = np.array([np.percentile(heart[:, 0], 85), np.percentile(heart[:, 1], 30), np.percentile(heart[:, 2], 40)])
    venous = _venous_path(ctx, side, "subclavian", "cavoatrial_junction")[1:]
    start = np.vstack([gen, gen + np.array([(10 if side == "right" else -10) / mm[0], 0, 8 / mm[2]])])
    leads = [np.vstack([start, venous, ra + np.array([2, 0, -3]), rv])]
    if int(attrs["leads"]) >= 2:
        leads.append(np.vstack([start, venous, ra + np.array([0, 0, -4]), ra + np.array([6, 0, 3])]))
    if int(attrs["leads"]) >= 3:
        leads.append(np.vstack([start, venous, ra + np.array([3, 0, -6]), cs]))
    tubes: list[tuple[np.ndarray, dict[str, float]]] = [(lead, LEAD_STYLE) for lead in leads]
    eff = _device_effect(ctx, tubes)
    assert eff.device is not None
    # the generator: a dense rounded box (~50 x 45 mm) with a lighter header
    row, col = ctx.to_plane(gen[None])[0]
    rr, cc = np.mgrid[0 : ctx.rows, 0 : ctx.cols]
    a, b = 25.0 / 0.703, 21.0 / 0.703
    d = ((np.abs(rr - row) / b) ** 4 + (np.abs(cc - col) / a) ** 4) ** 0.25
    can = np.clip((1.0 - d) * 25, 0, 1) * 3.0
    head = ((np.abs(rr - (row - b * 0.9)) / (b * 0.35)) ** 4 + (np.abs(cc - col) / (a * 0.6)) ** 4) ** 0.25
    can += np.clip((1.0 - head) * 20, 0, 1) * 0.6
    eff.device += can.astype(np.float32)
    eff.region |= d < 1.1
    return eff


@dataclass(frozen=True)
class FindingSpec:
    """Declarative spec of a plantable finding: its builder, default attributes and whether it is a device."""

    key: str
    build: Callable[[EditContext, dict[str, str]], Effect]
    defaults: dict[str, str]
    device: bool = False


FINDING_SPECS: dict[str, FindingSpec] = {
    s.key: s
    for s in (
        FindingSpec("pleural_effusion", _effusion, {"side": "right", "size": "moderate"}),
        FindingSpec("cardiomegaly", _cardiomegaly, {"severity": "moderate"}),
        FindingSpec("pneumothorax", _pneumothorax, {"side": "right", "size": "moderate"}),
        FindingSpec("consolidation", _consolidation, {"lobe": "RLL"}),
        FindingSpec("nodule", _nodule, {"side": "right", "zone": "upper", "size": "moderate"}),
        FindingSpec("mass", _mass, {"side": "right", "zone": "upper", "size": "moderate"}),
        FindingSpec("pulmonary_edema", _edema, {"severity": "moderate"}),
        FindingSpec("atelectasis", _atelectasis, {"side": "bilateral", "pattern": "plate-like"}),
        FindingSpec("low_lung_volumes", _low_lung_volumes, {}),
        FindingSpec("hyperinflation", _hyperinflation, {}),
        FindingSpec("mediastinal_shift", _mediastinal_shift, {"direction": "right"}),
        FindingSpec("rib_fracture", _rib_fracture, {"side": "right", "rib": "6"}),
        FindingSpec("endotracheal_tube", _ett, {"tip": "above_carina"}, device=True),
        FindingSpec("enteric_tube", _enteric, {"tip": "stomach"}, device=True),
        FindingSpec("central_venous_catheter", _cvc, {"tip": "low_svc"}, device=True),
        FindingSpec("picc", _picc, {"tip": "low_svc"}, device=True),
        FindingSpec("chest_tube", _chest_tube, {"side": "right"}, device=True),
        FindingSpec("pacemaker", _pacemaker, {"leads": "2"}, device=True),
    )
}
