"""Train ``mini-cxr-clip`` on SynthCXR: sigmoid image-sentence loss over a bank of finding statements.

Every image is paired with every statement of :func:`tools.reports.phrasing.statement_bank` (present findings with
attribute subsets, and "no X" for absent ones); a statement's truth for an image comes from the planted
findings, so wrong-side or wrong-tip sentences are explicit negatives and negations are learned. Each step
draws one phrasing per statement, so the model sees the vocabulary's many wordings. MiniLM is frozen: its
sentence features are computed once.

What makes it learn in minutes on two CPU cores:

- the loss is balanced per statement on both sides (a rare finding's few positives, and a negation's few
  negatives, weigh as much as the rest), and a statement that names the right finding with a wrong side, lobe
  or tip (a hard negative) weighs more;
- an auxiliary linear statement head reads the image tower's un-normalised output with the same loss: a
  direct supervised signal that the contrastive path (unit vectors, one temperature) gives only slowly;
- images are rendered at twice the model's input size, so a share of each batch is region crops at up to 2x
  magnification, labelled from the planted findings' masks (a finding mostly inside the crop is present, one
  outside it absent, one cut by the crop undecided): the model then also reads the zoomed crops that
  localize-and-zoom gives it;
- an auxiliary dense head maps, on the stride-16 grid, where each planted finding shows and where each device
  shows for each of its tip positions (from the findings' masks): a rib fracture or a tube tip is a few pixels of
  the frame, and an image-level label says only that it is somewhere. Measured at 500 steps against the same
  run without it: describer macro F1 0.54 -> 0.62; at 1500 steps enteric-tube tip 0.64 -> 0.96 (MODEL_CARD.md).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evals.mini.data import MASK_SIZE, ImagePool, Truth, build_pool, pool_mask, training_recipes
from tools.reports.phrasing import Statement, statement_bank
from tools.scorers.mini import (
    CONFIG_FILE,
    DEFAULT_CONFIG,
    DENSE_STRIDE,
    WEIGHTS_FILE,
    build_mini_modules,
    preprocess_images,
)
from tools.vocabulary import PLANTABLE_FINDINGS

log = logging.getLogger(__name__)

CROP_INSIDE = 0.5  # a finding with this share of its mask inside a crop is present in it...
CROP_INSIDE_DEVICE = 0.25  # ...a device with this share (tubes are long)...
CROP_COVERAGE = 0.1  # ...and a (non-device) finding covering this share of a crop is present in it


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored next to the weights)."""

    seed: int = 0
    n_images: int = 6000
    render_scale: int = 2  # training images are rendered at render_scale x the model's input size
    steps: int = 1500
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_class_weight: float = 10.0  # cap of the per-statement balancing weight (either side)
    hard_negative_share: float = 0.5  # share of an attribute statement's negative weight on the hard negatives
    head_loss_weight: float = 1.0  # auxiliary statement head on the un-normalised image features
    dense_loss_weight: float = 1.0  # auxiliary dense head: where each finding (and each device by tip) is
    dense_max_pos_weight: float = 30.0  # cap of a dense map's positive-pixel weight
    crop_fraction: float = 0.25  # share of each batch that is a region crop
    decimate_fraction: float = 0.5  # share of whole images decimated (aliased) instead of resized (smooth)
    crop_scale: tuple[float, float] = (0.3, 0.7)  # crop side, as a fraction of the frame (regions: 0.27-0.7)
    threads: int = 2
    model: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CONFIG))


def truth_matrix(truths: list[Truth], statements: list[Statement]) -> np.ndarray:
    """(N, S) int8: 1 true, 0 false, -1 undecidable, for each image and statement."""
    out = np.full((len(truths), len(statements)), -1, dtype=np.int8)
    for i, truth in enumerate(truths):
        for j, statement in enumerate(statements):
            value = statement.truth(truth)
            if value is not None:
                out[i, j] = 1 if value else 0
    return out


def hard_negative_matrix(truths: list[Truth], statements: list[Statement], truth: np.ndarray) -> np.ndarray:
    """(N, S) bool: false statements about a finding that *is* present (a wrong side, lobe, tip, size...)."""
    out = np.zeros(truth.shape, dtype=bool)
    for j, statement in enumerate(statements):
        if statement.present and statement.attributes:
            present = np.array([statement.finding in t for t in truths])
            out[:, j] = present & (truth[:, j] == 0)
    return out


def statement_weights(
    truth: np.ndarray, hard: np.ndarray, cap: float, hard_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Loss weights: ``(N, S)`` per training pair, and ``(2, S)`` per statement for a negative / positive pair
    (used for crops). Per statement, positives and negatives weigh the same in total (a pair's weight capped at
    ``cap`` times the other side's); among the negatives of an attribute statement, the hard ones (the finding
    is there, with another side, lobe or tip) get ``hard_share`` of the negatives' weight, since they are what
    teaches the attribute. Undecidable pairs weigh 0."""
    n = float(len(truth))
    out = np.zeros(truth.shape, dtype=np.float32)
    sides = np.zeros((2, truth.shape[1]), dtype=np.float32)
    for j in range(truth.shape[1]):
        pos = truth[:, j] == 1
        neg = truth[:, j] == 0
        n_pos, n_neg = max(int(pos.sum()), 1), max(int(neg.sum()), 1)
        w_pos = np.clip(n / (2 * n_pos), None, cap * n / (2 * n_neg))
        w_neg = np.clip(n / (2 * n_neg), None, cap * n / (2 * n_pos))
        out[pos, j] = w_pos
        out[neg, j] = w_neg
        sides[:, j] = (w_neg, w_pos)
        n_hard = int(hard[:, j].sum())
        if n_hard and n_hard < n_neg:
            easy = neg & ~hard[:, j]
            out[hard[:, j], j] = min(w_neg * n_neg * hard_share / n_hard, cap * w_neg)
            out[easy, j] = w_neg * n_neg * (1 - hard_share) / (n_neg - n_hard)
    scale = out[truth >= 0].mean()
    return out / scale, sides / scale


def crop_truth(
    masks: np.ndarray, truth_row: np.ndarray, statements: list[Statement], box: tuple[float, float, float, float]
) -> np.ndarray:
    """Statement truths for a region crop ``box`` (normalised ``y0, x0, y1, x1``) of an image.

    A planted finding with at least half of its mask inside the crop is present (a device with a quarter: tubes
    are long), and so is one that covers a tenth of the crop (part of a large effusion or consolidation fills a
    crop of the base); one entirely outside the crop is absent, one merely cut by it is undecided. Statements with a
    location (side, lobe, zone, tip, rib, direction) or a size are undecided on a crop: a crop does not show
    where it was taken from, and magnification changes apparent size.
    """
    y0, x0, y1, x1 = (int(round(v * MASK_SIZE)) for v in box)
    keys = list(PLANTABLE_FINDINGS)
    inside: dict[str, float] = {}
    covered: dict[str, float] = {}
    crop_area = max((y1 - y0) * (x1 - x0), 1)
    for j, key in enumerate(keys):
        mask = masks[j]
        total = mask.sum()
        if total:
            hits = float(mask[y0:y1, x0:x1].sum())
            inside[key] = hits / float(total)
            covered[key] = hits / crop_area
    out = np.full(len(statements), -1, dtype=np.int8)
    for s, statement in enumerate(statements):
        if statement.attributes:
            continue
        planted = (truth_row[s] == 1) == statement.present
        fraction = inside.get(statement.finding)
        if not planted:  # absent from the image, so from every crop of it
            out[s] = truth_row[s]
            continue
        if fraction is None:  # planted, but its mask is empty: where it is is unknown
            continue
        device = PLANTABLE_FINDINGS[statement.finding].category == "device"
        if fraction >= (CROP_INSIDE_DEVICE if device else CROP_INSIDE) or (
            not device and covered[statement.finding] >= CROP_COVERAGE
        ):
            present = True
        elif fraction == 0.0:
            present = False
        else:
            continue
        out[s] = 1 if present == statement.present else 0
    return out


def dense_map_names() -> list[str]:
    """The dense head's maps: one per finding (where it shows), then one per device tip position (where the
    device shows, when its tip is there), e.g. ``"enteric_tube:tip=stomach"``."""
    names = list(PLANTABLE_FINDINGS)
    for key, finding in PLANTABLE_FINDINGS.items():
        names += [f"{key}:tip={value}" for value in finding.attributes.get("tip", ())]
    return names


def dense_targets(masks: np.ndarray, truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """An image's dense-head targets from its finding masks ``(F, M, M)``: ``(C, M, M)`` bool maps in
    :func:`dense_map_names` order and ``(C,)`` bool validity (a planted finding with an empty mask is unknown)."""
    names = dense_map_names()
    out = np.zeros((len(names), *masks.shape[1:]), dtype=bool)
    valid = np.ones(len(names), dtype=bool)
    keys = list(PLANTABLE_FINDINGS)
    out[: len(keys)] = masks
    for j, key in enumerate(keys):
        if key in truth and not masks[j].any():
            valid[j] = False
    for c, name in enumerate(names[len(keys) :], start=len(keys)):
        key, value = name.split(":tip=")
        j = keys.index(key)
        valid[c] = valid[j]
        if truth.get(key, {}).get("tip") == value:
            out[c] = masks[j]
    return out, valid


def _random_box(
    masks: np.ndarray, rng: np.random.Generator, scale: tuple[float, float]
) -> tuple[float, float, float, float]:
    """A square crop box: around a random planted finding's pixel two times in three, else anywhere."""
    side = float(rng.uniform(*scale))
    planted = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
    if len(planted) and rng.random() < 2 / 3:
        cells = np.argwhere(masks[int(rng.choice(planted))])
        cy, cx = (cells[int(rng.integers(len(cells)))] + 0.5) / MASK_SIZE
        cy += rng.uniform(-side / 3, side / 3)
        cx += rng.uniform(-side / 3, side / 3)
    else:
        cy, cx = rng.uniform(side / 2, 1 - side / 2, size=2)
    y0 = float(np.clip(cy - side / 2, 0.0, 1.0 - side))
    x0 = float(np.clip(cx - side / 2, 0.0, 1.0 - side))
    return y0, x0, y0 + side, x0 + side


def _crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    h, w = image.shape
    y0, x0, y1, x1 = box
    return image[int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1), int(x0 * w) : max(int(x1 * w), int(x0 * w) + 1)]


def _decimate(image: np.ndarray, scale: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Full-size uint8 image -> preprocessed model-size frame by plain decimation with a random phase: what an
    image rendered (or acquired) at the model's size looks like (thin lines aliased, noise not averaged away),
    unlike the anti-aliased resize of the stored frames."""
    dy, dx = (int(v) for v in rng.integers(0, scale, size=2))
    return preprocess_images([image[dy::scale, dx::scale]], size)[0]


def _augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small shifts, contrast/brightness jitter, blur/sharpen and noise on preprocessed (B, 1, H, W) images."""
    out = np.empty_like(batch)
    size = batch.shape[-1]
    for i in range(len(batch)):
        dy, dx = rng.integers(-size // 24, size // 24 + 1, size=2)
        img = np.roll(batch[i, 0], (int(dy), int(dx)), axis=(0, 1))
        img = img * rng.uniform(0.85, 1.15) + rng.uniform(-0.25, 0.25)
        out[i, 0] = img + rng.normal(0, rng.uniform(0.0, 0.08), img.shape).astype(np.float32)
    return out


@dataclass
class Batch:
    """One training batch."""

    pixels: np.ndarray  # (B, 1, S, S) float32
    truth: np.ndarray  # (B, S) int8 statement truths (-1 undecidable)
    weights: np.ndarray  # (B, S) float32 loss weight of each pair
    dense: np.ndarray  # (B, C, D, D) float32 dense-head targets
    dense_valid: np.ndarray  # (B, C) bool: which dense maps are known


@dataclass
class _Batches:
    """The training set in memory: model-size frames, full-size images and masks, statement truths."""

    frames: np.ndarray  # (N, 1, S, S) float32: whole images, preprocessed to the model's input
    images: np.ndarray  # (N, R, R) uint8: the full-size renders, for crops
    masks: np.ndarray  # (N, F, M, M) bool
    truths: list[Truth]  # planted findings of each image
    truth: np.ndarray  # (N, S) int8
    weights: np.ndarray  # (N, S) float32 loss weight of each pair
    side_weights: np.ndarray  # (2, S) weight of a negative / positive pair, for crops
    statements: list[Statement]
    size: int

    @property
    def dense_size(self) -> int:
        """Side of the dense head's grid."""
        return self.size // DENSE_STRIDE

    def dense_pos_weight(self, cap: float, n: int = 500) -> np.ndarray:
        """``(C,)`` weight of a positive dense cell, per map: sqrt(negatives / positives) over the valid maps of
        the first ``n`` images (capped), so thin tubes and small fractures are not drowned by background."""
        pos = np.zeros(len(dense_map_names()))
        total = np.zeros_like(pos)
        for i in range(min(n, len(self.frames))):
            maps, valid = dense_targets(self.masks[i], self.truths[i])
            pooled = pool_mask(maps, self.dense_size)
            pos += np.where(valid, pooled.sum(axis=(1, 2)), 0)
            total += np.where(valid, pooled[0].size, 0)
        fraction = np.clip(pos / np.maximum(total, 1), 1e-6, 1.0)
        return np.asarray(np.minimum(np.sqrt((1 - fraction) / fraction), cap), dtype=np.float32)

    def sample(self, config: TrainConfig, rng: np.random.Generator) -> Batch:
        """One batch; a share of the images are region crops.

        Dense targets ignore the augmentation's small shifts (under half a dense cell); on a crop, the per-tip
        device maps are unknown (a crop does not show where the tube ends relative to the anatomy)."""
        idx = rng.choice(len(self.frames), size=config.batch_size, replace=False)
        pixels = self.frames[idx].copy()
        if config.render_scale > 1:
            for row in np.flatnonzero(rng.random(len(idx)) < config.decimate_fraction):
                pixels[row] = _decimate(self.images[int(idx[row])], config.render_scale, self.size, rng)
        truth = self.truth[idx].copy()
        weights = self.weights[idx].copy()
        n_maps, d = len(dense_map_names()), self.dense_size
        dense = np.zeros((len(idx), n_maps, d, d), dtype=np.float32)
        dense_valid = np.zeros((len(idx), n_maps), dtype=bool)
        n_crops = int(round(config.crop_fraction * config.batch_size))
        for b, i in enumerate(idx.tolist()):
            maps, valid = dense_targets(self.masks[i], self.truths[i])
            if b < n_crops:
                box = _random_box(self.masks[i], rng, config.crop_scale)
                pixels[b] = preprocess_images([_crop(self.images[i], box)], self.size)[0]
                truth[b] = crop_truth(self.masks[i], self.truth[i], self.statements, box)
                weights[b] = np.where(
                    truth[b] >= 0, self.side_weights[truth[b].clip(0, 1), np.arange(truth.shape[1])], 0
                )
                y0, x0, y1, x1 = (int(round(v * MASK_SIZE)) for v in box)
                maps = maps[:, y0:y1, x0:x1]
                valid[len(PLANTABLE_FINDINGS) :] = False
                if min(maps.shape[1:]) < d:
                    continue
            dense[b] = pool_mask(maps, d)
            dense_valid[b] = valid
        return Batch(_augment(pixels, rng), truth, weights, dense, dense_valid)


def _prepare(pool: ImagePool, size: int, statements: list[Statement], config: TrainConfig) -> _Batches:
    if pool.masks is None:
        raise ValueError("the training pool needs finding masks (build_pool(..., with_masks=True))")
    truth = truth_matrix(pool.truths, statements)
    hard = hard_negative_matrix(pool.truths, statements, truth)
    weights, side_weights = statement_weights(truth, hard, config.max_class_weight, config.hard_negative_share)
    frames = np.concatenate(
        [preprocess_images(list(pool.images[i : i + 256]), size) for i in range(0, len(pool.images), 256)]
    )
    return _Batches(frames, pool.images, pool.masks, pool.truths, truth, weights, side_weights, statements, size)


def train_mini(
    out_dir: Path,
    config: TrainConfig,
    cache_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Render the training pool, train, and write ``mini-cxr-clip.safetensors`` + its JSON into ``out_dir``."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from tools.embeddings.text_encoder import load_minilm

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    size = int(config.model["image_size"])
    recipes = training_recipes(config.n_images, config.seed)
    with tqdm(total=len(recipes), desc="render SynthCXR", disable=not progress, unit="img") as bar:
        pool = build_pool(
            recipes, size * config.render_scale, cache_dir, "train", bar.update, with_masks=True, workers=config.threads
        )
    render_s = time.perf_counter() - started
    statements = statement_bank()
    data = _prepare(pool, size, statements, config)
    sentences = [s.sentences() for s in statements]
    flat = sorted({t for group in sentences for t in group})
    features = load_minilm("cpu").encode(flat)
    index = {t: i for i, t in enumerate(flat)}
    sentence_ids = [np.array([index[t] for t in group]) for group in sentences]
    feats = torch.from_numpy(features)

    config.model["n_statements"] = len(statements) if config.head_loss_weight > 0 else 0
    config.model["dense_channels"] = len(dense_map_names()) if config.dense_loss_weight > 0 else 0
    module = build_mini_modules(config.model)
    pos_weight = torch.from_numpy(data.dense_pos_weight(config.dense_max_pos_weight))[:, None, None]
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1
    )
    module.train()
    history = []
    t_train = time.perf_counter()
    with tqdm(range(config.steps), desc="train mini-cxr-clip", disable=not progress) as steps:
        for step in steps:
            batch = data.sample(config, rng)
            chosen = [int(ids[rng.integers(len(ids))]) for ids in sentence_ids]
            text = module.encode_text(feats[chosen])  # type: ignore[operator]
            pixels = torch.from_numpy(batch.pixels)
            tower: Any = module.image_tower
            if config.dense_loss_weight > 0:
                features_img, dense_logits = tower.forward_dense(pixels)
            else:
                features_img, dense_logits = tower(pixels), None
            image = torch.nn.functional.normalize(features_img, dim=-1)
            labels = torch.from_numpy(batch.truth.clip(0, 1).astype(np.float32))
            weight = torch.from_numpy(batch.weights)
            logits = module.logits(image, text)  # type: ignore[operator]
            bce = torch.nn.functional.binary_cross_entropy_with_logits
            loss = (bce(logits, labels, reduction="none") * weight).sum() / weight.sum()
            if module.statement_head is not None:
                head_logits = module.statement_head(features_img)  # type: ignore[operator]
                head_loss = (bce(head_logits, labels, reduction="none") * weight).sum() / weight.sum()
                loss = loss + config.head_loss_weight * head_loss
            if dense_logits is not None:
                valid = torch.from_numpy(batch.dense_valid.astype(np.float32))
                per_map = bce(
                    dense_logits, torch.from_numpy(batch.dense), pos_weight=pos_weight, reduction="none"
                ).mean(dim=(2, 3))
                loss = loss + config.dense_loss_weight * (per_map * valid).sum() / valid.sum().clamp(min=1.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.append(float(loss.item()))
            if step % 10 == 0:
                steps.set_postfix(loss=f"{np.mean(history[-10:]):.4f}")
    train_s = time.perf_counter() - t_train
    module.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    tmp = out_dir / f".{WEIGHTS_FILE}.tmp{os.getpid()}"
    save_file(state, str(tmp))
    os.replace(tmp, out_dir / WEIGHTS_FILE)
    training: dict[str, Any] = {
        **asdict(config),
        "render_seconds": round(render_s, 1),
        "train_seconds": round(train_s, 1),
        "final_loss": float(np.mean(history[-50:])),
        "statements": len(statements),
        "sentences": len(flat),
    }
    record: dict[str, Any] = {
        "model": config.model,
        "statements": [st.to_record() for st in statements] if module.statement_head is not None else [],
        "dense_maps": dense_map_names() if config.dense_loss_weight > 0 else [],
        "training": training,
    }
    config_path = out_dir / CONFIG_FILE
    previous = json.loads(config_path.read_text()) if config_path.is_file() else {}
    previous.update(record)
    config_path.write_text(json.dumps(previous, indent=2) + "\n")
    log.info("trained in %.0f s (render %.0f s), final loss %.4f", train_s, render_s, training["final_loss"])
    return record
