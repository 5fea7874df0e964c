"""The mini model's quality gate, measured on SynthCXR images rendered with seeds never used in training.

Figures: zero-shot AUROC of "finding present" vs absent per finding at mild / moderate / severe (single
prompt and contrast pair), attribute discrimination (effusion side, consolidation lobe, tube tip
positions), negation ("no pleural effusion" below "pleural effusion" on effusion images), describer
per-finding F1 (macro) at moderate severity, and CPU throughput. Calibration (the describer thresholds)
uses its own seed range, apart from both training and evaluation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evals.mini.data import (
    CALIBRATION_SEED_BASE,
    EVAL_SEED_BASE,
    Truth,
    build_pool,
    plantable_findings,
    random_attributes,
    random_mix,
)
from tools.describers.mini import DescriberCalibration, MiniDescriber
from tools.reports.phrasing import Statement
from tools.scorers.mini import CONFIG_FILE, MiniCXRClip
from tools.vocabulary import PLANTABLE_FINDINGS

log = logging.getLogger(__name__)

# the quality gate's targets (issue 5): presence at moderate severity, attribute discrimination, negation, describer
PRESENCE_TARGET = 0.90
ATTRIBUTE_TARGET = 0.85
NEGATION_TARGET = 0.90
DESCRIBER_F1_TARGET = 0.80
LEVEL_ATTRIBUTE = {"size": ("small", "moderate", "large"), "severity": ("mild", "moderate", "severe")}
LEVEL_NAMES = ("mild", "moderate", "severe")
ATTRIBUTE_TASKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "effusion side": ("pleural_effusion", "side", ("left", "right")),
    "consolidation lobe": ("consolidation", "lobe", ("RUL", "RML", "RLL", "LUL", "LLL")),
    "ETT tip": ("endotracheal_tube", "tip", ("above_carina", "right_main_bronchus")),
    "enteric tube tip": ("enteric_tube", "tip", ("stomach", "esophagus_coiled", "bronchus")),
    "CVC tip": ("central_venous_catheter", "tip", ("low_svc", "cavoatrial_junction", "too_high")),
    "PICC tip": ("picc", "tip", ("low_svc", "cavoatrial_junction", "too_high")),
}


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of ``scores`` for ``positive`` (the scoring engine's rank-based AUROC; NaN without both classes)."""
    from tools.scoring.statistics import auroc_statistics

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(auroc_statistics(np.asarray(scores, dtype=np.float64)[None, :], positive).auroc[0])


def _level_attrs(finding: str, level: int, rng: np.random.Generator) -> dict[str, str]:
    attrs = random_attributes(rng, finding)
    for name, values in LEVEL_ATTRIBUTE.items():
        if name in PLANTABLE_FINDINGS[finding].attributes:
            attrs[name] = values[level]
    return attrs


def _has_levels(finding: str) -> bool:
    return any(name in PLANTABLE_FINDINGS[finding].attributes for name in LEVEL_ATTRIBUTE)


def eval_recipes(per_group: int, n_background: int) -> dict[str, list[tuple[Truth, int]]]:
    """Named recipe lists: a background pool, positives per (finding, level) and per attribute value."""
    rng = np.random.default_rng(EVAL_SEED_BASE)
    plantable = plantable_findings()
    seed = EVAL_SEED_BASE
    groups: dict[str, list[tuple[Truth, int]]] = {"background": []}
    for _ in range(n_background):
        seed += 1
        groups["background"].append((random_mix(rng, plantable), seed))
    for finding in plantable:
        for level in range(3) if _has_levels(finding) else (1,):
            name = f"{finding}|{LEVEL_NAMES[level]}"
            groups[name] = []
            for _ in range(per_group):
                seed += 1
                mix = random_mix(rng, plantable, exclude={finding})
                mix.pop("hyperinflation" if finding == "low_lung_volumes" else "low_lung_volumes", None)
                mix[finding] = _level_attrs(finding, level, rng)
                groups[name].append((mix, seed))
    for task, (finding, attribute, values) in ATTRIBUTE_TASKS.items():
        for value in values:
            name = f"{task}|{value}"
            groups[name] = []
            for _ in range(max(per_group // 2, 10)):
                seed += 1
                mix = random_mix(rng, plantable, exclude={finding})
                attrs = _level_attrs(finding, 1, rng)
                attrs[attribute] = value
                mix[finding] = attrs
                groups[name].append((mix, seed))
    return groups


def calibration_recipes(n: int) -> list[tuple[Truth, int]]:
    """Random mixes with calibration seeds, plus one moderate case of each finding per 20 images."""
    rng = np.random.default_rng(CALIBRATION_SEED_BASE)
    plantable = plantable_findings()
    out = []
    for i in range(n):
        mix = random_mix(rng, plantable)
        if i % 2 == 0:
            finding = plantable[(i // 2) % len(plantable)]
            mix = {k: v for k, v in mix.items() if k not in ("low_lung_volumes", "hyperinflation")}
            mix[finding] = _level_attrs(finding, 1, rng)
        out.append((mix, CALIBRATION_SEED_BASE + i))
    return out


def calibrate_describer(model: MiniCXRClip, images: np.ndarray, truths: list[Truth]) -> DescriberCalibration:
    """The describer's calibration on the calibration images: the mean and sd of each decision component per
    finding (when the model has a dense head), then per-finding thresholds on the fused decision score."""
    describer = MiniDescriber(model)
    contrast, dense, _ = describer.component_scores(list(images))
    fusion = DescriberCalibration.fusion_statistics(contrast, dense, describer.keys) if dense is not None else None
    scores = DescriberCalibration(fusion=fusion).fuse(contrast, dense, describer.keys)
    return DescriberCalibration(calibrate_thresholds(scores, describer.keys, truths), fusion)


def calibrate_thresholds(scores: np.ndarray, keys: list[str], truths: list[Truth]) -> dict[str, float]:
    """Per-finding threshold on the decision score that maximises F1 on the calibration images, among thresholds
    that call the finding in at most twice its prevalence (+5%): a finding the model cannot see is then rarely
    reported, instead of on every image (which is what maximising F1 alone does for an undetectable finding)."""
    thresholds = {}
    for j, key in enumerate(keys):
        truth = np.array([key in t for t in truths])
        if truth.sum() == 0:
            continue
        ceiling = min(1.0, 2.0 * truth.mean() + 0.05)
        candidates = [
            c
            for c in np.unique(np.quantile(scores[:, j], np.linspace(0.02, 0.995, 120)))
            if np.mean(scores[:, j] > c) <= ceiling
        ]
        best = max(candidates, key=lambda c: _f1(scores[:, j] > c, truth))
        thresholds[key] = float(best)
    return thresholds


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float(np.sum(pred & truth))
    fp = float(np.sum(pred & ~truth))
    fn = float(np.sum(~pred & truth))
    return 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0


def measure(
    model: MiniCXRClip,
    describer: MiniDescriber,
    cache_dir: Path,
    size: int,
    per_group: int = 30,
    n_background: int = 200,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compute every figure of the quality gate; returns a JSON-able dict."""
    groups = eval_recipes(per_group, n_background)
    pools = {name: build_pool(recipes, size, cache_dir, f"eval-{name}", progress) for name, recipes in groups.items()}
    t0 = time.perf_counter()
    emb = {name: model.encode_images(list(pool.images)) for name, pool in pools.items()}
    n_images = sum(len(p.images) for p in pools.values())
    embed_ips = n_images / max(time.perf_counter() - t0, 1e-9)

    def text(statement: Statement) -> np.ndarray:
        return model.encode_texts([statement.phrase()])[0]

    prompts = {f: (text(Statement(f, True)), text(Statement(f, False))) for f in plantable_findings()}
    background, bg_truths = emb["background"], pools["background"].truths
    presence: dict[str, dict[str, dict[str, float]]] = {}
    for finding, prompt in prompts.items():
        neg_rows = np.array([finding not in t for t in bg_truths])
        negatives = background[neg_rows]
        for level in LEVEL_NAMES:
            name = f"{finding}|{level}"
            if name not in emb:
                continue
            presence.setdefault(finding, {})[level] = presence_aurocs(emb[name], negatives, prompt, model.logit_scale)
    confusion = presence_confusions(emb, {n: p.truths for n, p in pools.items()}, prompts, model.logit_scale)
    attributes: dict[str, float] = {}
    for task, (finding, attribute, values) in ATTRIBUTE_TASKS.items():
        per_value = []
        for value in values:
            t = text(Statement(finding, True, ((attribute, value),)))
            scores = np.concatenate([emb[f"{task}|{v}"] @ t for v in values])
            label = np.concatenate([np.full(len(emb[f"{task}|{v}"]), v == value) for v in values])
            per_value.append(auroc(scores, label))
        attributes[task] = round(float(np.mean(per_value)), 4)
    eff = np.concatenate([emb["pleural_effusion|moderate"], emb["effusion side|left"], emb["effusion side|right"]])
    negation = float(
        np.mean(eff @ text(Statement("pleural_effusion", False)) < eff @ text(Statement("pleural_effusion")))
    )
    # describer F1 at moderate severity: moderate positives of every finding + background
    names = [f"{f}|moderate" for f in plantable_findings()]
    images = np.concatenate([pools[n].images for n in names] + [pools["background"].images])
    truths = [t for n in names for t in pools[n].truths] + list(bg_truths)
    t0 = time.perf_counter()
    calls = describer.findings(list(images))
    describe_ips = len(images) / max(time.perf_counter() - t0, 1e-9)
    f1 = {}
    for key in plantable_findings():
        pred = np.array([key in c for c in calls])
        truth = np.array([key in t for t in truths])
        f1[key] = round(_f1(pred, truth), 4)
    return {
        "presence_auroc": presence,
        "presence_confusion": confusion,
        "attribute_auroc": attributes,
        "negation_rate": round(negation, 4),
        "describer_f1": f1,
        "describer_macro_f1": round(float(np.mean(list(f1.values()))), 4),
        "embed_images_per_s_cpu": round(embed_ips, 1),
        "describe_images_per_s_cpu": round(describe_ips, 1),
        "n_eval_images": n_images,
    }


def presence_aurocs(
    positives: np.ndarray, negatives: np.ndarray, prompt: tuple[np.ndarray, np.ndarray], logit_scale: float
) -> dict[str, float]:
    """AUROC of positive against negative image embeddings for a finding's ``(present, absent)`` prompt pair:
    ``single`` scores the present prompt alone, ``contrast`` the difference of the pair."""
    pos_t, neg_t = prompt
    images = np.concatenate([positives, negatives])
    label = np.r_[np.ones(len(positives), bool), np.zeros(len(negatives), bool)]
    return {
        "single": round(auroc(images @ pos_t, label), 4),
        "contrast": round(auroc((images @ pos_t - images @ neg_t) * logit_scale, label), 4),
    }


def presence_confusions(
    embeddings: dict[str, np.ndarray],
    truths: dict[str, list[Truth]],
    prompts: dict[str, tuple[np.ndarray, np.ndarray]],
    logit_scale: float,
) -> dict[str, dict[str, float]]:
    """Per finding X and other finding Y: AUROC of X's presence score (the better of the single prompt and the
    contrast pair at moderate severity, as the gate reads it) on X's moderate images against the moderate images
    of Y that do not show X. A low value says which finding X's prompt mistakes for X (a rib fracture prompt
    that follows pneumothorax), which the single AUROC against a mixed background hides. ``prompts`` holds each
    finding's ``(present, absent)`` text embeddings."""
    findings = [f for f in prompts if f"{f}|moderate" in embeddings]
    out: dict[str, dict[str, float]] = {}
    for finding in findings:
        row: dict[str, float] = {}
        for other in findings:
            if other == finding:
                continue
            keep = np.array([finding not in t for t in truths[f"{other}|moderate"]])
            negatives = embeddings[f"{other}|moderate"][keep]
            scores = presence_aurocs(embeddings[f"{finding}|moderate"], negatives, prompts[finding], logit_scale)
            row[other] = max(scores.values())
        out[finding] = row
    return out


def gate(figures: dict[str, Any]) -> list[str]:
    """The quality gate's failures (empty list when every target is reached)."""
    failures = []
    for finding, levels in figures["presence_auroc"].items():
        best = max(levels["moderate"].values())
        if best < PRESENCE_TARGET:
            failures.append(f"presence {finding} moderate {best:.3f} < {PRESENCE_TARGET:.2f}")
    for task, value in figures["attribute_auroc"].items():
        if value < ATTRIBUTE_TARGET:
            failures.append(f"attribute {task} {value:.3f} < {ATTRIBUTE_TARGET:.2f}")
    if figures["negation_rate"] < NEGATION_TARGET:
        failures.append(f"negation {figures['negation_rate']:.3f} < {NEGATION_TARGET:.2f}")
    if figures["describer_macro_f1"] < DESCRIBER_F1_TARGET:
        failures.append(f"describer macro F1 {figures['describer_macro_f1']:.3f} < {DESCRIBER_F1_TARGET:.2f}")
    return failures


def write_figures(folder: Path, figures: dict[str, Any], calibration: DescriberCalibration | None = None) -> None:
    """Store figures (and the describer's calibration) in the weights' JSON file."""
    path = folder / CONFIG_FILE
    data = json.loads(path.read_text()) if path.is_file() else {}
    data["figures"] = figures
    if calibration is not None:
        data["describer"] = calibration.to_record()
    path.write_text(json.dumps(data, indent=2) + "\n")
