"""RadDiff image grids: layout, numbering, A/B panels, deterministic sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.data.grids import BACKGROUND, GAP, PANEL_GAP, TITLE_HEIGHT, build_ab_grid, build_image_grid, sample_studies
from tools.domain import InputError, Study, StudySet


def flat(value: float, shape: tuple[int, int] = (40, 40)) -> np.ndarray:
    return np.full(shape, value, np.float32)


def tile_region(grid: Image.Image, index: int, cols: int, tile: int, x_offset: int = 0) -> np.ndarray:
    r, c = divmod(index, cols)
    x = x_offset + GAP + c * (tile + GAP)
    y = TITLE_HEIGHT + GAP + r * (tile + GAP)
    return np.asarray(grid)[y : y + tile, x : x + tile]


def test_grid_layout_tiles_and_numbers() -> None:
    tile = 48
    images = [flat(1.0)] * 3 + [flat(0.5, (30, 60))]
    grid = build_image_grid(images, rows=2, cols=3, tile=tile, label="A")
    assert grid.mode == "L"
    assert grid.size == (3 * tile + 4 * GAP, TITLE_HEIGHT + 2 * tile + 3 * GAP)
    first = tile_region(grid, 0, 3, tile)
    # the label box sits in the top-left corner; the rest of a white image's tile is white
    assert first[tile // 2 :, :].min() == 255
    assert (first[:14, :20] == 0).any()  # black label background
    # a wide image is letterboxed: black bars above and below, grey in the middle
    wide = tile_region(grid, 3, 3, tile)
    assert wide[-2, tile // 2] == 0 and abs(int(wide[tile // 2, tile // 2]) - 128) <= 1
    # empty cells show the canvas
    assert (tile_region(grid, 5, 3, tile) == BACKGROUND).all()


def test_grid_reads_paths_and_caps_at_rows_times_cols(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((20, 20), 200, np.uint8)).save(p)
        paths.append(p)
    grid = build_image_grid(paths, rows=1, cols=2, tile=32)
    assert grid.size == (2 * 32 + 3 * GAP, TITLE_HEIGHT + 32 + 2 * GAP)
    assert tile_region(grid, 1, 2, 32)[20:, :].min() >= 199
    with pytest.raises(InputError, match="missing.png"):
        build_image_grid([tmp_path / "missing.png"])


def test_ab_grid_puts_groups_side_by_side() -> None:
    tile = 32
    grid = build_ab_grid([flat(1.0)] * 4, [flat(0.0)] * 4, rows=2, cols=2, tile=tile)
    panel_w = 2 * tile + 3 * GAP
    assert grid.size == (2 * panel_w + PANEL_GAP, TITLE_HEIGHT + 2 * tile + 3 * GAP)
    assert tile_region(grid, 3, 2, tile)[tile // 2 :].min() == 255  # group A (white) on the left
    assert tile_region(grid, 3, 2, tile, x_offset=panel_w + PANEL_GAP)[tile // 2 :].max() == 0


def test_grid_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="no images"):
        build_image_grid([], label="B")
    with pytest.raises(InputError, match="rows and cols"):
        build_image_grid([flat(1.0)], rows=0)
    with pytest.raises(InputError, match="2-D"):
        build_image_grid([np.zeros((4, 4, 3, 2))])


def test_sample_studies_is_deterministic_and_order_free() -> None:
    studies = [Study(study_id=f"s{i:03d}", image_paths=[Path(f"/x/{i}.png")]) for i in range(50)]
    forward = StudySet(name="g", studies=studies)
    backward = StudySet(name="g", studies=list(reversed(studies)))
    a = sample_studies(forward, 20, seed=1)
    assert [s.study_id for s in a] == [s.study_id for s in sample_studies(backward, 20, seed=1)]
    assert len({s.study_id for s in a}) == 20
    assert [s.study_id for s in a] != [s.study_id for s in sample_studies(forward, 20, seed=2)]
    assert len(sample_studies(forward, 80, seed=1)) == 50
    with pytest.raises(InputError):
        sample_studies(forward, -1)
