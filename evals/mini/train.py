"""Train ``mini-cxr-clip`` on SynthCXR: sigmoid image-sentence loss over a bank of finding statements.

Every image is paired with every statement of :func:`tools.phrasing.statement_bank` (present findings with
attribute subsets, and "no X" for absent ones); a statement's truth for an image comes from the planted
findings, so wrong-side or wrong-tip sentences are explicit negatives and negations are learned. Each step
draws one phrasing per statement, so the model sees the vocabulary's many wordings. MiniLM is frozen: its
sentence features are computed once.
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

from evals.mini.data import ImagePool, Truth, build_pool, training_recipes
from tools.backends.mini import CONFIG_FILE, DEFAULT_CONFIG, WEIGHTS_FILE, build_mini_modules, preprocess_images
from tools.phrasing import Statement, statement_bank

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored next to the weights)."""

    seed: int = 0
    n_images: int = 4000
    steps: int = 1400
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_pos_weight: float = 10.0
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


def _augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small shifts, contrast/brightness jitter and noise on preprocessed (B, 1, H, W) images."""
    out = np.empty_like(batch)
    size = batch.shape[-1]
    for i in range(len(batch)):
        dy, dx = rng.integers(-size // 24, size // 24 + 1, size=2)
        img = np.roll(batch[i, 0], (int(dy), int(dx)), axis=(0, 1))
        img = img * rng.uniform(0.85, 1.15) + rng.uniform(-0.25, 0.25)
        out[i, 0] = img + rng.normal(0, 0.05, img.shape).astype(np.float32)
    return out


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

    from tools.text_encoder import load_minilm

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    size = int(config.model["image_size"])
    recipes = training_recipes(config.n_images, config.seed)
    with tqdm(total=len(recipes), desc="render SynthCXR", disable=not progress, unit="img") as bar:
        pool: ImagePool = build_pool(recipes, size, cache_dir, "train", progress=bar.update)
    render_s = time.perf_counter() - started
    statements = statement_bank()
    truths = truth_matrix(pool.truths, statements)
    sentences = [s.sentences() for s in statements]
    flat = sorted({t for group in sentences for t in group})
    features = load_minilm("cpu").encode(flat)
    index = {t: i for i, t in enumerate(flat)}
    sentence_ids = [np.array([index[t] for t in group]) for group in sentences]
    feats = torch.from_numpy(features)
    positives = (truths == 1).sum(axis=0).astype(np.float32)
    negatives = (truths == 0).sum(axis=0).astype(np.float32)
    pos_weight = torch.from_numpy(np.clip(negatives / np.maximum(positives, 1.0), 1.0, config.max_pos_weight))
    pixels = preprocess_images(list(pool.images), size)

    module = build_mini_modules(config.model)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.1
    )
    module.train()
    history = []
    t_train = time.perf_counter()
    with tqdm(range(config.steps), desc="train mini-cxr-clip", disable=not progress) as steps:
        for step in steps:
            idx = rng.choice(len(pixels), size=config.batch_size, replace=False)
            batch = torch.from_numpy(_augment(pixels[idx], rng))
            chosen = [int(ids[rng.integers(len(ids))]) for ids in sentence_ids]
            text = module.encode_text(feats[chosen])  # type: ignore[operator]
            image = module.encode_image(batch)  # type: ignore[operator]
            logits = module.logits(image, text)  # type: ignore[operator]
            target = torch.from_numpy(truths[idx].astype(np.float32))
            # balanced per statement: a rare finding's positives weigh as much as its many negatives
            weight = torch.where(target > 0.5, pos_weight, torch.ones_like(target)) * (target >= 0)
            losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.clamp(min=0), reduction="none")
            loss = (losses * weight).sum() / weight.sum()
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
    record = {
        "model": config.model,
        "training": {
            **asdict(config),
            "render_seconds": round(render_s, 1),
            "train_seconds": round(train_s, 1),
            "final_loss": float(np.mean(history[-50:])),
            "statements": len(statements),
            "sentences": len(flat),
        },
    }
    config_path = out_dir / CONFIG_FILE
    previous = json.loads(config_path.read_text()) if config_path.is_file() else {}
    previous.update(record)
    config_path.write_text(json.dumps(previous, indent=2) + "\n")
    log.info("trained in %.0f s (render %.0f s), final loss %.4f", train_s, render_s, record["training"]["final_loss"])
    return record
