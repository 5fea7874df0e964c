"""Per-image anatomy, region boxes, crops and the zoom experiment, checked against SynthCXR's planted masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evals.bench.components.bench_regions import Case, run_cases
from evals.bench.components.bench_zoom import zoom_experiment
from evals.synth import PlantedFinding, render_sample
from tests.conftest import requires_mini_weights
from tools.domain import InputError
from tools.regions.anatomy import locate_anatomy
from tools.regions.boxes import region_box
from tools.regions.crops import crop_paths, crop_region
from tools.vocabulary import REGIONS

SIZE = 256


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # shared with the synth test files: the volume is prepared once per session
    return tmp_path_factory.getbasetemp() / "synth-cache"


def image(seed: int, view: str, cache_dir: Path, findings: list[PlantedFinding] | None = None) -> np.ndarray:
    sample = render_sample(findings or [], seed=seed, size=SIZE, view=view, cache_dir=cache_dir, with_report=False)
    return sample.image.astype(np.float32) / 255.0


@pytest.mark.parametrize("view", ["PA", "AP"])
def test_every_region_gives_a_valid_box_on_the_correct_side(view: str, cache_dir: Path) -> None:
    anatomy = locate_anatomy(image(7, view, cache_dir))
    assert anatomy.method == "detected", anatomy.notes
    for name in REGIONS:
        y0, x0, y1, x1 = region_box(anatomy, name)
        assert 0.0 <= y0 < y1 <= 1.0 and 0.0 <= x0 < x1 <= 1.0, name
        assert (y1 - y0) * (x1 - x0) > 0.005, name
    # patient's left is on the image's right
    for left, right in [
        ("apex_left", "apex_right"),
        ("lower_zone_left", "lower_zone_right"),
        ("hilum_left", "hilum_right"),
    ]:
        lb, rb = region_box(anatomy, left), region_box(anatomy, right)
        assert (lb[1] + lb[3]) / 2 > anatomy.midline > (rb[1] + rb[3]) / 2, (left, right)
    # zones go down the lung; the abdomen is below the diaphragm's top; the pair covers both sides
    upper, mid, lower = (region_box(anatomy, f"{z}_zone_right") for z in ("upper", "mid", "lower"))
    assert upper[0] < mid[0] < lower[0]
    assert region_box(anatomy, "upper_abdomen")[0] > region_box(anatomy, "apex_left")[2]
    both = region_box(anatomy, "apices")
    assert both[1] <= region_box(anatomy, "apex_right")[1] and both[3] >= region_box(anatomy, "apex_left")[3]


def test_lung_fields_detected_on_many_seeds_pa_and_ap(cache_dir: Path) -> None:
    for seed in range(8):
        for view in ("PA", "AP"):
            a = locate_anatomy(image(100 + seed, view, cache_dir))
            assert a.method == "detected", (seed, view, a.notes)
            r, lft = a.lung_right, a.lung_left
            assert r.lateral < r.medial <= a.midline + 0.02 < lft.medial + 0.04 and lft.medial < lft.lateral
            for lung in (r, lft):
                assert 0.0 <= lung.apex < 0.35 and 0.45 < lung.cp_row <= 1.0, (seed, view, lung)
                assert lung.apex < lung.dome <= lung.cp_row
                assert 0.15 < abs(lung.lateral - lung.medial) < 0.5


@pytest.mark.slow
def test_planted_findings_fall_inside_their_region_boxes(cache_dir: Path) -> None:
    cases = [
        Case(
            "nodule R lower",
            "nodule",
            {"side": "right", "zone": "lower", "size": "small"},
            "lower_zone_right",
            "fraction",
            "lower_zone_left",
        ),
        Case(
            "nodule L upper",
            "nodule",
            {"side": "left", "zone": "upper", "size": "small"},
            "upper_zone_left",
            "fraction",
            "upper_zone_right",
        ),
        Case(
            "effusion R",
            "pleural_effusion",
            {"side": "right", "size": "small"},
            "costophrenic_angle_right",
            "meniscus",
            "costophrenic_angle_left",
        ),
        Case(
            "pneumothorax L", "pneumothorax", {"side": "left", "size": "small"}, "apex_left", "top_rows", "apex_right"
        ),
        Case("ETT bronchus", "endotracheal_tube", {"tip": "right_main_bronchus"}, "trachea_carina", "tip"),
        Case("NG stomach", "enteric_tube", {"tip": "stomach"}, "upper_abdomen", "tip"),
    ]
    records = run_cases(cases, range(3), size=SIZE, cache_dir=cache_dir)
    assert len(records) == len(cases) * 3 * 2
    hit_rate = np.mean([bool(r["hit"]) for r in records])
    assert hit_rate >= 0.85, [r for r in records if not r["hit"]]
    # a finding is never placed in the other side's box
    assert not any(r["wrong_side"] for r in records if r["wrong_side"] is not None)


def test_unknown_region_and_bad_boxes_raise_input_error(cache_dir: Path) -> None:
    anatomy = locate_anatomy(image(1, "PA", cache_dir))
    with pytest.raises(InputError, match="unknown region 'left_knee'.*apex_left"):
        region_box(anatomy, "left_knee")
    assert region_box(None, (0.1, 0.2, 0.5, 0.6)) == (0.1, 0.2, 0.5, 0.6)
    for bad in [(0.5, 0.2, 0.4, 0.6), (0.1, 0.2, 1.5, 0.6), (0.1, 0.2, 0.5)]:
        with pytest.raises(InputError, match="box"):
            region_box(anatomy, bad)
    with pytest.raises(InputError, match="anatomy"):
        region_box(None, "apex_left")


def test_blank_image_falls_back_to_frame_fractions() -> None:
    anatomy = locate_anatomy(np.full((300, 240), 0.5, np.float32))
    assert anatomy.method == "fallback" and anatomy.notes
    y0, x0, y1, x1 = region_box(anatomy, "apex_left")
    assert x0 > 0.5 and y1 < 0.5  # still the patient's left apex: image right, top


def test_crop_comes_from_the_full_resolution_original() -> None:
    # a fine checkerboard (period 2 px) survives a crop taken from the original but not a downsample
    rng = np.random.default_rng(0)
    img = rng.uniform(0.3, 0.4, (1024, 1024)).astype(np.float32)
    img[100:164, 600:664] = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    crop = crop_region(img, (100 / 1024, 600 / 1024, 164 / 1024, 664 / 1024), out_size=128, margin=0.0)
    assert crop.shape == (128, 128) and crop.dtype == np.float32
    assert crop.std() > 0.15  # the checkerboard is still resolved
    # ...whereas it averages away on a 4x downsampled copy
    assert img[100:164, 600:664].reshape(16, 4, 16, 4).mean(axis=(1, 3)).std() < 0.01
    crop2 = crop_region(img, "apex_left", out_size=96)
    assert crop2.shape == (96, 96)


def test_crop_paths_skips_unreadable_and_unlocatable_images(tmp_path: Path, cache_dir: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray((image(2, "PA", cache_dir) * 255).astype(np.uint8)).save(good)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((128, 128), 128, np.uint8)).save(blank)
    crops, skipped = crop_paths(
        [good, corrupt, tmp_path / "missing.png", blank], "hilum_right", out_size=64, allow_fallback=False
    )
    assert [c.path for c in crops] == [good] and crops[0].image.shape == (64, 64)
    assert crops[0].method == "detected"
    assert sorted(Path(s.item).name for s in skipped) == ["blank.png", "corrupt.png", "missing.png"]
    assert all(s.reason for s in skipped)
    with pytest.raises(InputError, match="unknown region"):
        crop_paths([good], "elbow")


def test_zoom_experiment_matches_sklearn_auroc() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    a = [rng.uniform(0, 1, (64, 64)).astype(np.float32) for _ in range(6)]
    b = [rng.uniform(0, 1, (64, 64)).astype(np.float32) * 0.9 for _ in range(5)]

    def embed(images: list[np.ndarray]) -> np.ndarray:
        return np.array([[float(im.mean()), 0.3] for im in images], np.float32)

    text = np.array([1.0, 0.0], np.float32)
    full, zoomed = zoom_experiment(embed, text, a, b, (0.0, 0.0, 0.5, 0.5), out_size=32)
    labels = [1] * 6 + [0] * 5
    assert full == pytest.approx(roc_auc_score(labels, [im.mean() for im in a + b]))
    crops = [crop_region(im, (0.0, 0.0, 0.5, 0.5), 32) for im in a + b]
    assert zoomed == pytest.approx(roc_auc_score(labels, [c.mean() for c in crops]))
    # the crops can be scored with their own wording (here the opposite direction)
    same_full, flipped = zoom_experiment(
        embed, text, a, b, (0.0, 0.0, 0.5, 0.5), out_size=32, crop_text_embedding=-text
    )
    assert same_full == pytest.approx(full) and flipped == pytest.approx(1.0 - zoomed)


@pytest.mark.slow
def test_zooming_into_a_small_nodule_raises_its_auroc(cache_dir: Path) -> None:
    from evals.bench.components.bench_zoom import (
        LOCAL_CONTRAST_TEXT,
        default_cases,
        local_contrast_embed,
        render_groups,
    )

    case = default_cases()[0]
    assert case.finding_a[1] == {"side": "right", "zone": "upper", "size": "small"}
    images_a, images_b = render_groups(case, 20, SIZE, cache_dir=cache_dir)
    full, zoomed = zoom_experiment(local_contrast_embed, LOCAL_CONTRAST_TEXT, images_a, images_b, case.region)
    # on the whole frame the nodule is lost among ribs and vessels; in its zone's crop it stands out
    assert full < 0.6
    assert zoomed > full + 0.15 and zoomed > 0.65


@pytest.mark.slow
@requires_mini_weights
def test_the_mini_model_reads_the_enteric_tube_tip_on_the_upper_abdomen_crop(cache_dir: Path) -> None:
    from evals.bench.components.bench_zoom import contrast_directions, default_cases, render_groups
    from tools.scorers.mini import load_mini

    case = next(c for c in default_cases() if c.region == "upper_abdomen")
    images_a, images_b = render_groups(case, 16, 384, cache_dir=cache_dir)
    model = load_mini()
    text, crop_text = contrast_directions(model)(case.hypothesis())
    full, zoomed = zoom_experiment(
        model.encode_images, text, images_a, images_b, case.region, crop_text_embedding=crop_text
    )
    # the crop shows the tip (below the diaphragm, or coiled above it) at 2-3x: the model, trained on crops, reads
    # it there as well as on the whole frame (weights before the dense head: 0.39 on the frame, 0.83 on the crop)
    assert zoomed > 0.9 and zoomed >= full - 0.05
