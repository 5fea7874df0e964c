"""The scoring engine: how well each hypothesis tells group A from group B, for all hypotheses at once.

Every image is scored against every hypothesis in one matrix product (cosine similarity, or, when a
hypothesis carries a contrast prompt such as "no pleural effusion", CheXzero's softmax over the pair); the
statistics of the scores are :mod:`tools.scoring.statistics`'. :func:`score_texts` embeds the hypotheses'
texts (and contrast prompts, :mod:`tools.scoring.contrast`) with an image-text model first.

Bad input (NaN or infinite embeddings, mismatched dimensions, an empty group, a zero vector) raises
:class:`~tools.domain.InputError` with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tools.domain import Hypothesis, HypothesisScore, InputError
from tools.scoring.contrast import contrast_for
from tools.scoring.statistics import (
    CI_LEVEL,
    AurocStatistics,
    as_groups,
    auroc_statistics,
    evidence_indices,
    group_moments,
)

if TYPE_CHECKING:
    from tools.embeddings.cache import EmbeddingCache
    from tools.scorers.base import ImageTextModel

# ---------------------------------------------------------------- input checks


def _as_matrix(name: str, array: object, dim: int | None = None) -> np.ndarray:
    """Validate an embedding array: 2-D (a 1-D array is one row), finite, non-zero rows, float32."""
    try:
        mat = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: not a numeric array ({exc})") from None
    if mat.ndim == 1:
        mat = mat[None, :]
    if mat.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array (rows, dim), got shape {mat.shape}")
    if mat.shape[1] == 0:
        raise InputError(f"{name}: embedding dimension is 0")
    if dim is not None and mat.shape[1] != dim:
        raise InputError(f"{name}: dimension {mat.shape[1]} does not match the image embeddings' {dim}")
    finite = np.isfinite(mat).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(f"{name}: row {bad[0]} has NaN or infinite values ({len(bad)} rows in all)")
    return np.ascontiguousarray(mat)


def _row_norms(name: str, mat: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", mat, mat, dtype=np.float64))
    zero = norms <= 0.0
    if zero.any():
        raise InputError(f"{name}: row {np.flatnonzero(zero)[0]} is a zero vector (cosine undefined)")
    return norms


# ---------------------------------------------------------------- scores


def score_matrix(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    contrast_embeddings: np.ndarray | None = None,
    *,
    temperature: float = 1.0,
) -> np.ndarray:
    """Scores of every image for every hypothesis, shape (H, N) float32 (hypotheses are rows).

    Without contrast: cosine similarity. With contrast (same shape as ``text_embeddings``): CheXzero's
    zero-shot softmax over the pair, ``exp(c_pos/T) / (exp(c_pos/T) + exp(c_neg/T))`` of the cosines,
    i.e. ``sigmoid((c_pos - c_neg) / T)``; CheXzero uses ``T = 1`` (raw cosines).
    """
    diff = _margin_matrix(image_embeddings, text_embeddings, contrast_embeddings)
    if contrast_embeddings is None:
        return diff
    return _sigmoid(diff, temperature)


def _sigmoid(diff: np.ndarray, temperature: float) -> np.ndarray:
    if not temperature > 0:
        raise InputError(f"temperature: must be > 0, got {temperature}")
    out = np.multiply(diff, np.float32(-1.0 / temperature))
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _margin_matrix(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, contrast_embeddings: np.ndarray | None
) -> np.ndarray:
    """Cosine (H, N), or the cosine margin ``c_pos - c_neg`` when contrast embeddings are given.

    The margin orders images exactly as the pair softmax does, without its saturation in float32.
    """
    img = _as_matrix("image_embeddings", image_embeddings)
    txt = _as_matrix("text_embeddings", text_embeddings, img.shape[1])
    img_norm = _row_norms("image_embeddings", img)
    txt_norm = _row_norms("text_embeddings", txt)
    if contrast_embeddings is not None:
        con = _as_matrix("contrast_embeddings", contrast_embeddings, img.shape[1])
        if con.shape[0] != txt.shape[0]:
            raise InputError(
                f"contrast_embeddings: {con.shape[0]} rows but text_embeddings has {txt.shape[0]} (one per hypothesis)"
            )
        con_norm = _row_norms("contrast_embeddings", con)
        txt = txt / txt_norm[:, None].astype(np.float32) - con / con_norm[:, None].astype(np.float32)
        txt_norm = np.ones(txt.shape[0])
    scores = txt @ img.T  # (H, N): rows are contiguous per hypothesis, which the ranking wants
    inv_img = (1.0 / img_norm).astype(np.float32)
    if not (np.allclose(img_norm, 1.0, atol=1e-6) and np.allclose(txt_norm, 1.0, atol=1e-6)):
        scores *= inv_img[None, :]
        scores *= (1.0 / txt_norm).astype(np.float32)[:, None]
    return scores


# ---------------------------------------------------------------- public API


def score_hypotheses(
    image_embeddings: np.ndarray,
    in_group_a: np.ndarray,
    text_embeddings: np.ndarray,
    *,
    contrast_embeddings: np.ndarray | None = None,
    temperature: float = 1.0,
    ci_level: float = CI_LEVEL,
) -> list[HypothesisScore]:
    """Score every hypothesis (rows of ``text_embeddings``) on every image; one record per hypothesis.

    ``image_embeddings`` (N, D), ``in_group_a`` boolean (N,), ``text_embeddings`` (H, D); with
    ``contrast_embeddings`` (H, D) each hypothesis is scored by the softmax of the (prompt, contrast) pair.
    Records are :class:`~tools.domain.HypothesisScore` in hypothesis order: AUROC of the score for "in
    group A", its DeLong CI, Mann-Whitney p, BH q across these hypotheses, group means and Cohen's d.
    """
    margins = _margin_matrix(image_embeddings, text_embeddings, contrast_embeddings)
    groups = as_groups(in_group_a, margins.shape[1])
    return _statistics(margins, groups, contrast_embeddings is not None, temperature, ci_level).records()


def _statistics(
    margins: np.ndarray, groups: np.ndarray, contrast: bool, temperature: float, ci_level: float
) -> AurocStatistics:
    stats = auroc_statistics(margins, groups, ci_level=ci_level)
    if not contrast:
        return stats
    # The pair softmax is a monotone transform of the margin: same AUROC, CI and p; the means differ.
    mean_a, mean_b, effect = group_moments(_sigmoid(margins, temperature), groups)
    return AurocStatistics(
        stats.auroc,
        stats.ci_low,
        stats.ci_high,
        stats.p_value,
        stats.q_value,
        mean_a,
        mean_b,
        effect,
        stats.n_a,
        stats.n_b,
    )


@dataclass(frozen=True)
class TextScoring:
    """What :func:`score_texts` found: records, the (H, N) score matrix and evidence indices per hypothesis."""

    scores: list[HypothesisScore]
    matrix: np.ndarray
    evidence: list[tuple[list[int], list[int]]]
    contrasts: list[str | None]


def score_texts(
    model: ImageTextModel,
    image_embeddings: np.ndarray,
    in_group_a: np.ndarray,
    hypotheses: Sequence[Hypothesis | str],
    *,
    negation_aware: bool = True,
    cache: EmbeddingCache | None = None,
    temperature: float = 1.0,
    evidence_k: int = 4,
) -> TextScoring:
    """Embed the hypotheses (and their contrast prompts) with ``model`` and score them on the images.

    ``negation_aware`` scores each hypothesis by the softmax of (prompt, contrast prompt); otherwise by the
    cosine with the prompt alone. Text embeddings go through ``cache`` when given.
    """
    if not hypotheses:
        return TextScoring([], np.zeros((0, len(in_group_a)), dtype=np.float32), [], [])
    texts = [h if isinstance(h, str) else h.text for h in hypotheses]
    contrasts: list[str | None] = [contrast_for(h) for h in hypotheses] if negation_aware else [None] * len(texts)
    wanted = texts + [c for c in contrasts if c is not None]
    if cache is not None:
        table = cache.text_embeddings(model, wanted)
    else:
        unique = list(dict.fromkeys(wanted))
        table = dict(zip(unique, model.encode_texts(unique), strict=True))
    txt = np.stack([table[t] for t in texts])
    con = np.stack([table[c] for c in contrasts if c is not None]) if negation_aware else None
    margins = _margin_matrix(image_embeddings, txt, con)
    groups = as_groups(in_group_a, margins.shape[1])
    records = _statistics(margins, groups, con is not None, temperature, CI_LEVEL).records()
    toward_a = np.array(
        [
            h.group == "A" if isinstance(h, Hypothesis) else r.auroc >= 0.5
            for h, r in zip(hypotheses, records, strict=True)
        ]
    )
    evidence = evidence_indices(margins, groups, k=evidence_k, toward_a=toward_a)
    matrix = _sigmoid(margins, temperature) if con is not None else margins
    return TextScoring(records, matrix, evidence, contrasts)
