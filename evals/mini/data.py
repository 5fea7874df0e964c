"""Training and evaluation images for the mini model: random SynthCXR finding mixes, rendered and cached.

Seeds are split by range so evaluation never sees a training patient: training uses seeds from
:data:`TRAIN_SEED_BASE`, calibration from :data:`CALIBRATION_SEED_BASE`, evaluation from
:data:`EVAL_SEED_BASE`. Rendered pools are cached as ``.npz`` (written atomically) keyed by their recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.vocabulary import PLANTABLE_FINDINGS

log = logging.getLogger(__name__)

TRAIN_SEED_BASE = 1_000_000
CALIBRATION_SEED_BASE = 5_000_000
EVAL_SEED_BASE = 9_000_000
POOL_VERSION = "pool-v1"
MASK_SIZE = 48  # finding masks are stored block-max pooled to MASK_SIZE x MASK_SIZE (for crop labels)
EXCLUSIVE = ({"low_lung_volumes", "hyperinflation"},)
COUNT_PROBABILITIES = (0.2, 0.4, 0.25, 0.15)

Truth = dict[str, dict[str, str]]


@dataclass
class ImagePool:
    """Rendered images (uint8, N x H x W), their planted findings and metadata.

    ``masks`` (only when the pool was built ``with_masks``): ``(N, F, MASK_SIZE, MASK_SIZE)`` bool, where each
    planted finding shows in the image, in vocabulary order (:data:`tools.vocabulary.PLANTABLE_FINDINGS`).
    """

    images: np.ndarray
    truths: list[Truth]
    metadata: list[dict[str, str]]
    seeds: list[int]
    masks: np.ndarray | None = None


def random_attributes(rng: np.random.Generator, finding: str) -> dict[str, str]:
    """Draw every attribute of ``finding`` uniformly from the vocabulary's allowed values."""
    return {name: str(rng.choice(values)) for name, values in PLANTABLE_FINDINGS[finding].attributes.items()}


def random_mix(rng: np.random.Generator, plantable: list[str], exclude: set[str] | None = None) -> Truth:
    """A random mix of 0-3 findings with random attributes (no contradictory pair, nothing in ``exclude``)."""
    count = int(rng.choice(len(COUNT_PROBABILITIES), p=COUNT_PROBABILITIES))
    choices = [f for f in plantable if f not in (exclude or set())]
    mix: Truth = {}
    for key in rng.permutation(choices)[: count * 2]:
        if len(mix) >= count:
            break
        if any(key in group and group & set(mix) for group in EXCLUSIVE):
            continue
        mix[str(key)] = random_attributes(rng, str(key))
    return mix


def plantable_findings() -> list[str]:
    """Vocabulary findings that SynthCXR can plant."""
    from evals.synth.findings import FINDING_SPECS

    return [key for key in PLANTABLE_FINDINGS if key in FINDING_SPECS]


def _render_with_masks(truth: Truth, seed: int, size: int) -> tuple[np.ndarray, dict[str, str], np.ndarray]:
    """Render one image; also returns its (F, MASK_SIZE, MASK_SIZE) finding masks (block-max pooled)."""
    from evals.synth.findings import PlantedFinding
    from evals.synth.render import render_sample

    planted = [PlantedFinding(finding=k, attributes=v) for k, v in truth.items()]
    sample = render_sample(planted, seed=seed, size=size, with_report=False)
    meta = {k: str(v) for k, v in sample.metadata.items() if k in ("view_position", "sex", "age")}
    masks = np.zeros((len(PLANTABLE_FINDINGS), MASK_SIZE, MASK_SIZE), dtype=bool)
    for j, key in enumerate(PLANTABLE_FINDINGS):
        if key in sample.region_masks:
            masks[j] = pool_mask(sample.region_masks[key], MASK_SIZE)
    return sample.image, meta, masks


def pool_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Block-max pool a boolean ``(..., H, W)`` mask to ``(..., size, size)`` (any pixel of a block counts); the
    mask must be at least ``size`` a side."""
    if min(mask.shape[-2:]) < size:
        raise ValueError(f"mask of shape {mask.shape} is smaller than the pooled size {size}")
    rows = np.linspace(0, mask.shape[-2], size + 1).astype(int)
    cols = np.linspace(0, mask.shape[-1], size + 1).astype(int)
    return np.logical_or.reduceat(np.logical_or.reduceat(mask, rows[:-1], axis=-2), cols[:-1], axis=-1)


def _render_chunk(args: tuple[list[tuple[Truth, int]], int]) -> list[tuple[np.ndarray, dict[str, str], np.ndarray]]:
    recipes, size = args
    return [_render_with_masks(truth, seed, size) for truth, seed in recipes]


def renderer_fingerprint() -> str:
    """Hash of SynthCXR's source files: a changed renderer never reuses images rendered by an older one."""
    import evals.synth

    digest = hashlib.sha256()
    for path in sorted(Path(evals.synth.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _pool_path(cache_dir: Path, recipe: dict[str, object]) -> Path:
    recipe = {**recipe, "renderer": renderer_fingerprint()}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / "mini" / f"pool-{digest}.npz"


def build_pool(
    recipes: list[tuple[Truth, int]],
    size: int,
    cache_dir: Path,
    name: str,
    progress: Callable[[int], None] | None = None,
    *,
    with_masks: bool = False,
    workers: int = 1,
) -> ImagePool:
    """Render (truth, seed) recipes at ``size`` px, or load them from the cache when rendered before.

    ``with_masks`` also keeps each finding's image mask (for region-crop labels); ``workers`` > 1 renders in
    that many processes (the result does not depend on it).
    """
    recipe_key: dict[str, object] = {
        "version": POOL_VERSION,
        "name": name,
        "size": size,
        "recipes": [[t, s] for t, s in recipes],
    }
    if with_masks:
        recipe_key["masks"] = MASK_SIZE
    path = _pool_path(cache_dir, recipe_key)
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            log.info("loaded %d cached images from %s", len(recipes), path)
            masks = None
            if with_masks:
                flat = np.unpackbits(data["masks"], count=len(recipes) * len(PLANTABLE_FINDINGS) * MASK_SIZE**2)
                masks = flat.reshape(len(recipes), len(PLANTABLE_FINDINGS), MASK_SIZE, MASK_SIZE).astype(bool)
            return ImagePool(data["images"], meta["truths"], meta["metadata"], meta["seeds"], masks)
    images = np.zeros((len(recipes), size, size), dtype=np.uint8)
    masks = np.zeros((len(recipes), len(PLANTABLE_FINDINGS), MASK_SIZE, MASK_SIZE), dtype=bool)
    metadata: list[dict[str, str]] = []
    chunk = 25
    jobs = [(recipes[i : i + chunk], size) for i in range(0, len(recipes), chunk)]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold torch threads and open caches
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = executor.map(_render_chunk, jobs)
    else:
        executor = None
        results = map(_render_chunk, jobs)
    i = 0
    try:
        for rendered in results:
            for image, meta, mask in rendered:
                images[i], masks[i] = image, mask
                metadata.append(meta)
                i += 1
            if progress is not None:
                progress(len(rendered))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    payload = json.dumps({"truths": [t for t, _ in recipes], "metadata": metadata, "seeds": [s for _, s in recipes]})
    arrays: dict[str, np.ndarray] = {"images": images, "meta": np.array(payload)}
    if with_masks:
        arrays["masks"] = np.packbits(masks.ravel())
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)
    return ImagePool(images, [t for t, _ in recipes], metadata, [s for _, s in recipes], masks if with_masks else None)


def training_recipes(n: int, seed: int = 0) -> list[tuple[Truth, int]]:
    """``n`` random finding mixes with training seeds; balanced so every finding appears often."""
    rng = np.random.default_rng(seed)
    plantable = plantable_findings()
    recipes = []
    for i in range(n):
        recipes.append((random_mix(rng, plantable), TRAIN_SEED_BASE + seed * 100_000 + i))
    return recipes
