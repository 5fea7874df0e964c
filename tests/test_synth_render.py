"""SynthCXR renderer: determinism, orientation, and each finding changing pixels only where it is planted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from evals.synth import FINDING_SPECS, PlantedFinding, render_sample
from tools.domain import InputError

SIZE = 128


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one directory per test session, shared by the synth test files (the volume is prepared once)
    return tmp_path_factory.getbasetemp() / "synth-cache"


def render(findings: list[PlantedFinding], seed: int, cache_dir: Path, **kw: object) -> object:
    return render_sample(findings, seed=seed, size=SIZE, view="PA", cache_dir=cache_dir, **kw)  # type: ignore[arg-type]


def test_deterministic_by_seed(cache_dir: Path) -> None:
    f = [PlantedFinding(finding="pleural_effusion", attributes={"side": "left", "size": "large"})]
    a = render_sample(f, seed=11, size=SIZE, cache_dir=cache_dir)
    b = render_sample(f, seed=11, size=SIZE, cache_dir=cache_dir)
    c = render_sample(f, seed=12, size=SIZE, cache_dir=cache_dir)
    assert a.image.dtype == np.uint8 and a.image.shape == (SIZE, SIZE)
    assert np.array_equal(a.image, b.image)
    assert a.report == b.report and a.metadata == b.metadata
    assert not np.array_equal(a.image, c.image)
    assert a.metadata["view_position"] in ("PA", "AP") and a.metadata["sex"] in ("F", "M")


def test_radiograph_look_and_orientation(cache_dir: Path) -> None:
    sample = render_sample([], seed=3, size=SIZE, view="PA", cache_dir=cache_dir)
    img = sample.image.astype(float)
    # lungs (left and right of the midline, upper-middle rows) are darker than the mediastinum between them
    rows = slice(SIZE // 4, SIZE // 2)
    right_lung = img[rows, int(SIZE * 0.25) : int(SIZE * 0.35)].mean()
    left_lung = img[rows, int(SIZE * 0.65) : int(SIZE * 0.75)].mean()
    mediastinum = img[rows, int(SIZE * 0.47) : int(SIZE * 0.53)].mean()
    assert mediastinum > right_lung + 30 and mediastinum > left_lung + 30
    # the heart (patient's left) is on the image's right; the upper abdomen at the bottom is bright
    heart = render_sample(
        [PlantedFinding(finding="cardiomegaly")], seed=3, size=SIZE, view="PA", cache_dir=cache_dir
    ).region_masks["cardiomegaly"]
    assert np.argwhere(heart)[:, 1].mean() > SIZE / 2
    assert img[-SIZE // 8 :, SIZE // 3 : 2 * SIZE // 3].mean() > right_lung + 40


def test_ap_view_magnifies(cache_dir: Path) -> None:
    pa = render_sample([], seed=4, size=SIZE, view="PA", cache_dir=cache_dir)
    ap = render_sample([], seed=4, size=SIZE, view="AP", cache_dir=cache_dir)
    assert ap.metadata["view_position"] == "AP" and pa.metadata["view_position"] == "PA"
    assert ap.metadata["patient"]["magnification"] > 1.0 == pa.metadata["patient"]["magnification"]


SIDED = {
    "pleural_effusion": "right",
    "pneumothorax": "right",
    "nodule": "right",
    "mass": "right",
    "rib_fracture": "right",
    "chest_tube": "right",
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5])
def test_each_finding_changes_pixels_only_in_its_region(cache_dir: Path, seed: int) -> None:
    base = render_sample([], seed=seed, size=SIZE, view="PA", cache_dir=cache_dir, with_report=False).image
    for key in FINDING_SPECS:
        sample = render_sample(
            [PlantedFinding(finding=key)], seed=seed, size=SIZE, view="PA", cache_dir=cache_dir, with_report=False
        )
        changed = np.abs(sample.image.astype(int) - base.astype(int)) > 10
        region = sample.region_masks[key]
        near = ndimage.binary_dilation(region, iterations=6)  # edge enhancement spreads a change a little
        assert changed.sum() >= 10, f"{key}: invisible ({changed.sum()} pixels changed)"
        assert (changed & ~near).sum() <= 0.02 * changed.sum(), f"{key}: changes outside its region"
        if key in SIDED:
            cols = np.argwhere(region)[:, 1]
            assert cols.mean() < SIZE / 2, f"{key}: right-sided finding not on the image's left"


def test_left_effusion_is_left_and_basal(cache_dir: Path) -> None:
    s = render_sample(
        [PlantedFinding(finding="pleural_effusion", attributes={"side": "left", "size": "moderate"})],
        seed=2,
        size=SIZE,
        view="PA",
        cache_dir=cache_dir,
    )
    pts = np.argwhere(s.region_masks["pleural_effusion"])
    assert pts[:, 1].mean() > SIZE / 2  # patient's left = image right
    assert pts[:, 0].mean() > SIZE / 2  # dependent: lower half
    assert s.region_box("pleural_effusion") is not None


def test_bad_inputs(cache_dir: Path) -> None:
    with pytest.raises(InputError, match="unknown finding"):
        PlantedFinding(finding="broken_heart")
    with pytest.raises(InputError, match="impossible size"):
        PlantedFinding(finding="pleural_effusion", attributes={"size": "huge"})
    with pytest.raises(InputError, match="unknown attribute"):
        PlantedFinding(finding="cardiomegaly", attributes={"side": "left"})
    with pytest.raises(InputError, match="twice"):
        render_sample(
            [PlantedFinding(finding="nodule"), PlantedFinding(finding="nodule")], seed=0, size=SIZE, cache_dir=cache_dir
        )
    with pytest.raises(InputError, match="view"):
        render_sample([], seed=0, size=SIZE, view="LATERAL", cache_dir=cache_dir)
