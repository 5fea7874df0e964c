"""AUROC statistics for many hypotheses at once: rank AUROC, DeLong 95% CI, Mann-Whitney p, BH q-values.

The AUROC of each hypothesis' scores for "in group A" is computed from ranks for all hypotheses together
(ties counted as half), with a DeLong 95% confidence interval, a two-sided Mann-Whitney p-value (exact for
tiny tie-free groups, else the normal approximation with tie and continuity correction, as
``scipy.stats.mannwhitneyu``), Benjamini-Hochberg q-values across the hypotheses of the run, the mean score
of each group and Cohen's d; and the evidence studies of each hypothesis.

Conventions for degenerate input (defined results, not crashes):

* all scores identical -> AUROC 0.5, CI [0.5, 0.5], p = 1;
* a group of one study -> the DeLong variance is undefined, so the CI is the whole [0, 1];
* perfect separation -> DeLong's variance is 0 (its CI would collapse onto the AUROC, as in pROC), so
  Newcombe's score interval is reported instead (non-degenerate, reflects the group sizes);
* Cohen's d is 0 when the pooled standard deviation is 0 or undefined.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from tools.domain import HypothesisScore, InputError

CI_LEVEL = 0.95
EXACT_P_MAX_SMALL_GROUP = 8
"""A group up to this size (and no ties) gets an exact Mann-Whitney p-value, as scipy's 'auto' does..."""
EXACT_P_MAX_TOTAL = 2000
"""...but only while the whole sample is at most this big (the exact distribution is costly beyond)."""
ROW_BLOCK = 16
"""Hypotheses ranked together in one block (keeps the working set in cache)."""


@dataclass(frozen=True)
class AurocStatistics:
    """Per-hypothesis statistics as arrays of shape (H,), before they become records."""

    auroc: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    mean_a: np.ndarray
    mean_b: np.ndarray
    effect_size: np.ndarray
    n_a: int
    n_b: int

    def records(self) -> list[HypothesisScore]:
        """One :class:`~tools.domain.HypothesisScore` per hypothesis, in hypothesis order."""
        return [
            HypothesisScore(
                auroc=float(self.auroc[h]),
                ci_low=float(self.ci_low[h]),
                ci_high=float(self.ci_high[h]),
                p_value=float(self.p_value[h]),
                q_value=float(self.q_value[h]),
                mean_a=float(self.mean_a[h]),
                mean_b=float(self.mean_b[h]),
                effect_size=float(self.effect_size[h]),
                n_a=self.n_a,
                n_b=self.n_b,
            )
            for h in range(len(self.auroc))
        ]


# ---------------------------------------------------------------- input checks


def as_groups(in_group_a: object, n: int) -> np.ndarray:
    """``in_group_a`` checked as a boolean mask of ``n`` entries with both groups non-empty (one-line errors)."""
    groups = np.asarray(in_group_a)
    if groups.ndim != 1 or groups.shape[0] != n:
        raise InputError(f"in_group_a: expected {n} entries (one per image), got shape {groups.shape}")
    if groups.dtype != np.bool_:
        if groups.dtype.kind not in "iuf" or not np.isin(groups, (0, 1)).all():
            raise InputError("in_group_a: must be boolean (True = group A, False = group B)")
        groups = groups.astype(bool)
    n_a = int(groups.sum())
    if n_a == 0:
        raise InputError("in_group_a: group A is empty (no True entries)")
    if n_a == n:
        raise InputError("in_group_a: group B is empty (no False entries)")
    return groups


# ---------------------------------------------------------------- statistics


def benjamini_hochberg(p_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values (monotone step-up, capped at 1), in the input's order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise InputError(f"p_values: expected a 1-D array, got shape {p.shape}")
    if p.size == 0:
        return p.copy()
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise InputError("p_values: must be finite and in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(ranked, 1.0)
    return q


def auroc_statistics(
    scores: np.ndarray, in_group_a: np.ndarray, *, ci_level: float = CI_LEVEL, workers: int | None = None
) -> AurocStatistics:
    """AUROC, DeLong CI, Mann-Whitney p, BH q, group means and Cohen's d for every row of ``scores`` (H, N).

    Ranks come from one sort per row (rows are processed in blocks, on ``workers`` threads; default: the
    CPU count, at most 4); tie blocks are found from the sorted values and counted as half.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise InputError(f"scores: expected a 2-D array (hypotheses, images), got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise InputError("scores: contain NaN or infinite values")
    if not 0.0 < ci_level < 1.0:
        raise InputError(f"ci_level: must be between 0 and 1, got {ci_level}")
    n_hyp, n = scores.shape
    groups = as_groups(in_group_a, n)
    n_a = int(groups.sum())
    n_b = n - n_a
    if n_hyp == 0:
        empty = np.zeros(0)
        return AurocStatistics(empty, empty, empty, empty, empty, empty, empty, empty, n_a, n_b)

    auroc = np.empty(n_hyp)
    var10 = np.empty(n_hyp)
    var01 = np.empty(n_hyp)
    tie_term = np.zeros(n_hyp)
    has_ties = np.zeros(n_hyp, dtype=bool)
    moments = np.empty((n_hyp, 4))

    def run(start: int) -> None:
        stop = min(start + ROW_BLOCK, n_hyp)
        out = _rank_block(scores[start:stop], groups, n_a, n_b)
        auroc[start:stop], var10[start:stop], var01[start:stop], tie_term[start:stop], has_ties[start:stop] = out[:5]
        moments[start:stop] = out[5]

    starts = range(0, n_hyp, ROW_BLOCK)
    n_workers = min(workers or min(os.cpu_count() or 1, 4), len(starts))
    if n_workers <= 1 or scores.size < 200_000:
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(run, starts))  # numpy sorts and reductions release the GIL

    variance = var10 / n_a + var01 / n_b
    z_crit = float(ndtri(0.5 + ci_level / 2.0))
    half = z_crit * np.sqrt(np.maximum(variance, 0.0))
    ci_low = np.clip(auroc - half, 0.0, 1.0)
    ci_high = np.clip(auroc + half, 0.0, 1.0)
    # Perfect separation makes DeLong's variance 0 and its CI collapse onto the AUROC, which overstates
    # certainty for small groups: use Newcombe's score interval (his Method 5) there instead.
    separated = (variance <= 1e-12) & (np.abs(auroc - 0.5) > 1e-9)
    if separated.any() and min(n_a, n_b) >= 1:
        ci_low[separated], ci_high[separated] = newcombe_interval(auroc[separated], n_a, n_b, z_crit)
    if min(n_a, n_b) < 2:  # DeLong's variance needs two members per group
        ci_low[:] = 0.0
        ci_high[:] = 1.0

    p_value = _mann_whitney_p(auroc * n_a * n_b, n_a, n_b, tie_term)
    if min(n_a, n_b) <= EXACT_P_MAX_SMALL_GROUP and n <= EXACT_P_MAX_TOTAL and not has_ties.all():
        exact_rows = np.flatnonzero(~has_ties)
        p_value[exact_rows] = _exact_mann_whitney_p(scores[exact_rows], groups)

    mean_a, mean_b, effect = _cohen(moments, n_a, n_b)
    return AurocStatistics(
        auroc=auroc,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        q_value=benjamini_hochberg(p_value),
        mean_a=mean_a,
        mean_b=mean_b,
        effect_size=effect,
        n_a=n_a,
        n_b=n_b,
    )


def newcombe_interval(auroc: np.ndarray, n_a: int, n_b: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's (2006, Method 5) score-type CI of the AUROC: solves (A - t)^2 = z^2 V(t) on each side.

    ``V(t) = t (1 - t) / (n_a n_b) * [1 + N* ((1 - t) / (2 - t) + t / (1 + t))]``, ``N* = (n_a + n_b) / 2 - 1``.
    Unlike DeLong's interval it stays non-degenerate at AUROC 0 or 1 (e.g. about [0.92, 1] for 24 vs 24).
    """
    a = np.asarray(auroc, dtype=np.float64)
    n_star = (n_a + n_b) / 2.0 - 1.0

    def excess(t: np.ndarray) -> np.ndarray:
        var = t * (1.0 - t) / (n_a * n_b) * (1.0 + n_star * ((1.0 - t) / (2.0 - t) + t / (1.0 + t)))
        return (a - t) ** 2 - z * z * var

    def solve(lo: np.ndarray, hi: np.ndarray, outside_is_lo: bool) -> np.ndarray:
        lo, hi = lo.copy(), hi.copy()
        for _ in range(60):  # bisection: excess > 0 outside the interval, <= 0 inside
            mid = (lo + hi) / 2.0
            outside = excess(mid) > 0
            if outside_is_lo:
                lo = np.where(outside, mid, lo)
                hi = np.where(outside, hi, mid)
            else:
                hi = np.where(outside, mid, hi)
                lo = np.where(outside, lo, mid)
        return (lo + hi) / 2.0

    lower = np.where(a > 0, solve(np.zeros_like(a), a, True), 0.0)
    upper = np.where(a < 1, solve(a, np.ones_like(a), False), 1.0)
    return lower, upper


def _rank_block(
    scores: np.ndarray, groups: np.ndarray, n_a: int, n_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AUROC, var(V10), var(V01), MWU tie term, has-ties and group moments for a block of rows of ``scores``.

    DeLong's structural components: V10 of an A score = (#B below + half #B tied) / n_B, V01 of a B score =
    (#A above + half #A tied) / n_A; the AUROC is the mean of V10.
    """
    h, n = scores.shape
    # Sort each group's scores (fast SIMD sorts of plain values), then merge the two sorted runs with a
    # stable argsort (timsort merges two runs in linear time): faster than one argsort of the whole row.
    part_a = np.sort(scores[:, groups], axis=1)
    part_b = np.sort(scores[:, ~groups], axis=1)
    moments = _moments(part_a, part_b)
    merged = np.concatenate([part_a, part_b], axis=1)
    del part_a, part_b
    order = np.argsort(merged, axis=1, kind="stable")
    lab_a = order < n_a  # is the k-th smallest score of the row from group A?
    sorted_scores = np.take_along_axis(merged, order, axis=1)
    del order, merged
    is_b = ~lab_a
    b_before = np.cumsum(is_b, axis=1, dtype=np.int32)
    b_before -= is_b  # number of B scores strictly before each sorted position
    # Without ties: the i-th A (in sorted order) has b_before B below it; the j-th B has n_a - (k - j) A above.
    v10 = b_before[lab_a].reshape(h, n_a).astype(np.float64)
    a_before = np.arange(n, dtype=np.int32)[None, :] - b_before
    v01 = (n_a - a_before[is_b].reshape(h, n_b)).astype(np.float64)

    tie_term = np.zeros(h)
    has_ties = np.zeros(h, dtype=bool)
    tie_rows, tie_cols = np.nonzero(sorted_scores[:, 1:] == sorted_scores[:, :-1])
    if tie_rows.size:
        _apply_ties(v10, v01, lab_a, b_before, tie_rows, tie_cols, n_a, tie_term)
        has_ties[tie_rows] = True
    v10 /= n_b
    v01 /= n_a
    auroc = v10.mean(axis=1)
    var10 = v10.var(axis=1, ddof=1) if n_a > 1 else np.zeros(h)
    var01 = v01.var(axis=1, ddof=1) if n_b > 1 else np.zeros(h)
    return auroc, var10, var01, tie_term, has_ties, moments


def _apply_ties(
    v10: np.ndarray,
    v01: np.ndarray,
    lab_a: np.ndarray,
    b_before: np.ndarray,
    tie_rows: np.ndarray,
    tie_cols: np.ndarray,
    n_a: int,
    tie_term: np.ndarray,
) -> None:
    """Rewrite the components (numerators) of the scores inside tie blocks; fill the MWU tie term."""
    # A tie (r, c) means sorted positions c and c+1 of row r hold equal scores; consecutive c form a block.
    new = np.ones(tie_rows.size, dtype=bool)
    new[1:] = (tie_rows[1:] != tie_rows[:-1]) | (tie_cols[1:] != tie_cols[:-1] + 1)
    first = np.flatnonzero(new)
    last = np.append(first[1:], tie_rows.size) - 1
    blk_row = tie_rows[first]
    blk_start = tie_cols[first]
    blk_end = tie_cols[last] + 1  # inclusive
    blk_len = blk_end - blk_start + 1
    b_below = b_before[blk_row, blk_start].astype(np.int64)
    tied_b = b_before[blk_row, blk_end] + (~lab_a[blk_row, blk_end]) - b_below
    a_below = blk_start - b_below
    tied_a = blk_len - tied_b
    rows = np.repeat(blk_row, blk_len)
    cols = np.repeat(blk_start, blk_len) + (np.arange(blk_len.sum()) - np.repeat(np.cumsum(blk_len) - blk_len, blk_len))
    in_a = lab_a[rows, cols]
    b_at = b_before[rows, cols]
    # index of each tied score within its group's sorted components: #A before it for A, #B before it for B
    v10[rows[in_a], (cols - b_at)[in_a]] = np.repeat(b_below + 0.5 * tied_b, blk_len)[in_a]
    v01[rows[~in_a], b_at[~in_a]] = np.repeat(n_a - a_below - 0.5 * tied_a, blk_len)[~in_a]
    lengths = blk_len.astype(np.float64)
    np.add.at(tie_term, blk_row, lengths**3 - lengths)


def _mann_whitney_p(u_a: np.ndarray, n_a: int, n_b: int, tie_term: np.ndarray) -> np.ndarray:
    """Two-sided p of the normal approximation with tie and continuity correction (as scipy's)."""
    n = n_a + n_b
    mu = n_a * n_b / 2.0
    u = np.maximum(u_a, n_a * n_b - u_a)
    s2 = n_a * n_b / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    s = np.sqrt(np.maximum(s2, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, (u - mu - 0.5) / np.where(s > 0, s, 1.0), -np.inf)
    return np.clip(2.0 * ndtr(-z), 0.0, 1.0)


def _exact_mann_whitney_p(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    from scipy.stats import mannwhitneyu

    result = mannwhitneyu(
        scores[:, groups].astype(np.float64), scores[:, ~groups].astype(np.float64), axis=1, method="exact"
    )
    return np.clip(np.asarray(result.pvalue, dtype=np.float64), 0.0, 1.0)


def _moments(part_a: np.ndarray, part_b: np.ndarray) -> np.ndarray:
    """Per row: sum and sum of squares of group A's and group B's scores (float64), shape (h, 4)."""
    out = np.empty((part_a.shape[0], 4))
    for col, part in ((0, part_a), (2, part_b)):
        wide = part.astype(np.float64)
        out[:, col] = wide.sum(axis=1)
        out[:, col + 1] = np.einsum("ij,ij->i", wide, wide)
    return out


def group_moments(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-hypothesis mean of each group and Cohen's d of ``scores`` (H, N)."""
    """Mean score of each group and Cohen's d, per row of ``scores`` (H, N)."""
    return _cohen(_moments(scores[:, groups], scores[:, ~groups]), int(groups.sum()), int((~groups).sum()))


def _cohen(moments: np.ndarray, n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean_a = moments[:, 0] / n_a
    mean_b = moments[:, 2] / n_b
    ss_a = np.maximum(moments[:, 1] - n_a * mean_a**2, 0.0)
    ss_b = np.maximum(moments[:, 3] - n_b * mean_b**2, 0.0)
    dof = n_a + n_b - 2
    effect = np.zeros(moments.shape[0])
    if dof > 0:
        pooled = np.sqrt((ss_a + ss_b) / dof)
        # sums of squares cannot resolve a spread below ~1e-7 of the scale: treat that as no spread.
        scale = np.maximum(np.abs(mean_a), np.abs(mean_b))
        ok = pooled > 1e-7 * np.maximum(scale, 1e-30)
        effect[ok] = (mean_a[ok] - mean_b[ok]) / pooled[ok]
    return mean_a, mean_b, effect


def evidence_indices(
    scores: np.ndarray, in_group_a: np.ndarray, *, k: int = 4, toward_a: Sequence[bool] | np.ndarray | None = None
) -> list[tuple[list[int], list[int]]]:
    """For each hypothesis (row of ``scores`` (H, N)), the images that best show it: (A indices, B indices).

    When the hypothesis points to group A (default: when its AUROC is >= 0.5), the evidence is the ``k``
    highest-scoring members of A and the ``k`` lowest-scoring members of B; reversed otherwise. Indices are
    into the N images, best first.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise InputError(f"scores: expected a 2-D array (hypotheses, images), got shape {scores.shape}")
    groups = as_groups(in_group_a, scores.shape[1])
    if k < 1:
        raise InputError(f"k: must be >= 1, got {k}")
    idx_a = np.flatnonzero(groups)
    idx_b = np.flatnonzero(~groups)
    if toward_a is None:
        direction = auroc_statistics(scores, groups).auroc >= 0.5
    else:
        direction = np.asarray(toward_a, dtype=bool)
        if direction.shape != (scores.shape[0],):
            raise InputError(f"toward_a: expected {scores.shape[0]} entries, got shape {direction.shape}")
    out: list[tuple[list[int], list[int]]] = []
    for h in range(scores.shape[0]):
        sign = 1.0 if direction[h] else -1.0
        out.append((_top(idx_a, -sign * scores[h, idx_a], k), _top(idx_b, sign * scores[h, idx_b], k)))
    return out


def _top(index: np.ndarray, key: np.ndarray, k: int) -> list[int]:
    """The ``k`` entries of ``index`` with the smallest ``key``, smallest first."""
    k = min(k, index.size)
    part = np.argpartition(key, k - 1)[:k] if k < index.size else np.arange(index.size)
    part = part[np.argsort(key[part], kind="stable")]
    return [int(i) for i in index[part]]
