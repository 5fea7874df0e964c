"""RadDiff-style image grids for a multimodal proposer: per-group grids of numbered tiles and A/B panels.

RadDiff shows a multimodal LLM a grid of sampled images per group (e.g. 4 x 5). :func:`build_image_grid`
lays out up to ``rows * cols`` images (canonical float arrays, or paths read with
:func:`tools.data.images.load_image`) as square tiles, each letterboxed to keep its aspect ratio and numbered
in its corner ("A1", "A2", ...), under a title bar. :func:`build_ab_grid` puts the two groups' grids side
by side as labelled panels "Group A" / "Group B". :func:`sample_studies` picks the studies to show,
deterministically from a seed. Text is drawn with PIL's default font (nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tools.data.images import load_image, to_uint8
from tools.domain import InputError, Study, StudySet

DEFAULT_TILE = 160
"""Default tile side, pixels."""
TITLE_HEIGHT = 22
GAP = 4
PANEL_GAP = 16
BACKGROUND = 40
"""Grey level of the grid canvas (and of empty cells)."""

ImageLike = np.ndarray | Path | str


def sample_studies(study_set: StudySet, n: int, seed: int = 0) -> list[Study]:
    """``n`` studies of the set drawn without replacement, deterministic for a seed (all when fewer).

    The draw depends only on the seed and the study ids (sorted), not on the order the set lists them.
    """
    if n < 0:
        raise InputError(f"sample size {n}: must be at least 0")
    studies = sorted(study_set.studies, key=lambda s: s.study_id)
    if n >= len(studies):
        return studies
    rng = np.random.default_rng(seed)
    index = sorted(rng.choice(len(studies), size=n, replace=False).tolist())
    return [studies[i] for i in index]


def _as_array(item: ImageLike) -> np.ndarray:
    if isinstance(item, (str, Path)):
        return load_image(item)
    arr = np.asarray(item)
    if arr.ndim != 2:
        raise InputError(f"grid image of shape {arr.shape}: expected a 2-D grayscale image")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.asarray(arr, dtype=np.float32)


def _tile(image: np.ndarray, tile: int) -> Image.Image:
    """Letterbox one image into a ``tile x tile`` black square, keeping its aspect ratio."""
    pil = Image.fromarray(to_uint8(image), mode="L")
    scale = tile / max(pil.size)
    size = (max(int(round(pil.size[0] * scale)), 1), max(int(round(pil.size[1] * scale)), 1))
    pil = pil.resize(size, Image.Resampling.LANCZOS)
    out = Image.new("L", (tile, tile), 0)
    out.paste(pil, ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return out


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str) -> None:
    """Draw ``text`` in white on a black box (readable on any tile)."""
    font = ImageFont.load_default()
    x0, y0, x1, y1 = draw.textbbox(xy, text, font=font)
    draw.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), fill=0)
    draw.text(xy, text, fill=255, font=font)


def build_image_grid(
    images: Sequence[ImageLike],
    rows: int = 4,
    cols: int = 5,
    tile: int = DEFAULT_TILE,
    label: str = "A",
    title: str | None = None,
) -> Image.Image:
    """A ``rows x cols`` grid of numbered tiles (``{label}1``, ``{label}2``, ... row by row) under a title.

    Takes the first ``rows * cols`` images (sample them first with :func:`sample_studies`); empty cells
    stay black. Returns an 8-bit grayscale PIL image.
    """
    if rows < 1 or cols < 1:
        raise InputError(f"grid of {rows}x{cols}: rows and cols must be at least 1")
    if tile < 16:
        raise InputError(f"tile size {tile}: must be at least 16 pixels")
    if not images:
        raise InputError(f"group {label!r}: no images for the grid")
    shown = list(images)[: rows * cols]
    width = cols * tile + (cols + 1) * GAP
    height = TITLE_HEIGHT + rows * tile + (rows + 1) * GAP
    canvas = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    _label(draw, (GAP + 2, 5), title if title is not None else f"Group {label} ({len(shown)} images)")
    for i, item in enumerate(shown):
        r, c = divmod(i, cols)
        x = GAP + c * (tile + GAP)
        y = TITLE_HEIGHT + GAP + r * (tile + GAP)
        canvas.paste(_tile(_as_array(item), tile), (x, y))
        _label(draw, (x + 4, y + 3), f"{label}{i + 1}")
    return canvas


def build_ab_grid(
    images_a: Sequence[ImageLike],
    images_b: Sequence[ImageLike],
    rows: int = 4,
    cols: int = 5,
    tile: int = DEFAULT_TILE,
    *,
    title_a: str = "Group A",
    title_b: str = "Group B",
) -> Image.Image:
    """Two labelled panels side by side: group A's grid (tiles A1...) left, group B's (B1...) right."""
    panel_a = build_image_grid(
        images_a, rows, cols, tile, label="A", title=f"{title_a} ({min(len(images_a), rows * cols)})"
    )
    panel_b = build_image_grid(
        images_b, rows, cols, tile, label="B", title=f"{title_b} ({min(len(images_b), rows * cols)})"
    )
    width = panel_a.width + PANEL_GAP + panel_b.width
    height = max(panel_a.height, panel_b.height)
    canvas = Image.new("L", (width, height), 255)
    canvas.paste(panel_a, (0, 0))
    canvas.paste(panel_b, (panel_a.width + PANEL_GAP, 0))
    return canvas


def study_images(studies: Sequence[Study]) -> list[Path]:
    """The primary image of each study (what a grid shows)."""
    return [s.primary_image for s in studies]
