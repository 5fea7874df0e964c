"""Confounder check: does a nuisance (view position, sex, age, devices...) explain the "difference"?

Two questions, answered from per-study metadata:

1. How well does each metadata field *alone* separate group A from group B? Numeric fields (age) are used
   as they are; categorical fields (view position, sex, a device flag) are tried one level against the rest
   and the level that separates best is kept. The answer is an AUROC for "in group A" (0.5 = no
   separation; 0.2 means the field is much *lower*, or the level much rarer, in A).
2. For each hypothesis, how strongly do its scores follow each field *within* the groups (the Spearman
   correlation inside A and inside B, averaged with weights n - 1)? Pooled over both groups, any two things
   that differ between the groups would look correlated; within groups, a high correlation means the
   score tracks the nuisance itself, so a hypothesis whose AUROC rides on a field that separates the
   groups may be a proxy for it.

3. For each pair of hypotheses about different findings, do their scores follow each other within the
   groups? A hypothesis whose scores track a better-ranked one's (Spearman >= :data:`OVERLAP_FLAG`) may
   restate the same image signal (a scorer that reads an effusion as a rib fracture too) rather than be a
   second difference.

Studies without a value for a field are left out of that field's numbers. Warnings in plain language
land in :attr:`~tools.domain.ConfounderReport.flagged`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from tools.domain import ConfounderReport, InputError, StudyMetadata
from tools.scoring.statistics import auroc_statistics

log = logging.getLogger(__name__)

FIELD_FLAG = 0.15
"""A field is flagged when its AUROC is at least this far from 0.5 (i.e. >= 0.65 or <= 0.35)."""
CORRELATION_FLAG = 0.3
"""A hypothesis is flagged when its within-group correlation with a flagged field reaches this."""
STRONG_CORRELATION = 0.5
"""...or when its correlation with any field reaches this."""
OVERLAP_FLAG = 0.8
"""A hypothesis is flagged when its scores follow a better-ranked hypothesis of another finding this closely
within the groups (Spearman). Scores of unrelated findings on the same images correlate at 0.2-0.7 (shared
exposure and anatomy); wordings of one finding at 0.9 and more."""


@dataclass(frozen=True)
class FieldSeparation:
    """How one metadata field separates the groups."""

    name: str
    auroc: float
    level: str | None
    """For a categorical field, the level whose indicator separates best."""
    share_a: float | None
    share_b: float | None
    values: np.ndarray
    """The numeric values used for correlations (the indicator of ``level`` for categorical fields)."""
    present: np.ndarray


def _flat(meta: StudyMetadata | Mapping[str, Any] | None, index: int) -> dict[str, Any]:
    if meta is None:
        return {}
    if isinstance(meta, StudyMetadata):
        return meta.as_flat_dict()
    if isinstance(meta, Mapping):
        return {str(k): v for k, v in meta.items() if v is not None and not (isinstance(v, float) and np.isnan(v))}
    raise InputError(f"metadata {index}: expected a StudyMetadata or a mapping, got {type(meta).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def field_separation(
    metadata: Sequence[StudyMetadata | Mapping[str, Any] | None], in_group_a: np.ndarray
) -> list[FieldSeparation]:
    """AUROC of each metadata field alone for A vs B (fields present in both groups only), in name order."""
    groups = np.asarray(in_group_a)
    if groups.dtype != np.bool_ or groups.shape != (len(metadata),):
        raise InputError(f"in_group_a: expected {len(metadata)} booleans (one per study), got {groups.shape}")
    rows = [_flat(m, i) for i, m in enumerate(metadata)]
    names = sorted({k for row in rows for k in row})
    out: list[FieldSeparation] = []
    for name in names:
        present = np.array([name in row for row in rows])
        if not (groups & present).any() or not (~groups & present).any():
            log.info("metadata field %r: no value in one of the groups; not checked", name)
            continue
        raw = [rows[i][name] for i in np.flatnonzero(present)]
        sub_groups = groups[present]
        if all(_is_number(v) for v in raw):
            values = np.full(len(rows), np.nan)
            values[present] = np.asarray(raw, dtype=np.float64)
            auc = float(auroc_statistics(values[present][None, :], sub_groups).auroc[0])
            out.append(FieldSeparation(name, auc, None, None, None, values, present))
            continue
        labels = np.array([str(v) for v in raw])
        levels = sorted(set(labels.tolist()))
        indicators = np.stack([(labels == level).astype(np.float64) for level in levels])
        aucs = auroc_statistics(indicators, sub_groups).auroc
        # the level that separates best; of two equally good (always so for two levels), the one more present in A
        best = max(range(len(levels)), key=lambda i: (round(abs(float(aucs[i]) - 0.5), 12), float(aucs[i]) > 0.5))
        values = np.full(len(rows), np.nan)
        values[present] = indicators[best]
        out.append(
            FieldSeparation(
                name,
                float(aucs[best]),
                levels[best],
                float(indicators[best][sub_groups].mean()),
                float(indicators[best][~sub_groups].mean()),
                values,
                present,
            )
        )
    return out


def _within_group_spearman(scores: np.ndarray, values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``scores`` (H, n) with ``values`` (n,) inside each group, pooled
    with weights n_g - 1; NaN where neither group has variation in both."""
    total = np.zeros(scores.shape[0])
    weight = np.zeros(scores.shape[0])
    for mask in (groups, ~groups):
        if mask.sum() < 3:
            continue
        v = rankdata(values[mask])
        if np.ptp(v) == 0:
            continue
        s = rankdata(scores[:, mask], axis=1)
        s -= s.mean(axis=1, keepdims=True)
        v = v - v.mean()
        denom = np.sqrt((s * s).sum(axis=1) * (v * v).sum())
        ok = denom > 0
        rho = np.zeros(scores.shape[0])
        rho[ok] = (s[ok] @ v) / denom[ok]
        total[ok] += (mask.sum() - 1) * rho[ok]
        weight[ok] += mask.sum() - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1), np.nan)


def check_confounders(
    metadata: Sequence[StudyMetadata | Mapping[str, Any] | None],
    in_group_a: np.ndarray,
    hypothesis_scores: Mapping[str, np.ndarray] | None = None,
    *,
    field_flag: float = FIELD_FLAG,
    correlation_flag: float = CORRELATION_FLAG,
    strong_correlation: float = STRONG_CORRELATION,
    findings: Mapping[str, str] | None = None,
    overlap_flag: float = OVERLAP_FLAG,
) -> ConfounderReport:
    """Field AUROCs, within-group correlations of each hypothesis' scores with each field and with the
    better-ranked hypotheses, and warnings.

    ``metadata`` has one entry per study (aligned with ``in_group_a``); ``hypothesis_scores`` maps each
    hypothesis text to its scores on the same studies, best-ranked first. ``findings`` maps a hypothesis text
    to the finding it names: hypotheses naming the same finding are not compared with each other (their
    wordings track each other by design); without it every pair is compared.
    """
    groups = np.asarray(in_group_a)
    if groups.dtype != np.bool_:
        if groups.dtype.kind in "iu" and np.isin(groups, (0, 1)).all():
            groups = groups.astype(bool)
        else:
            raise InputError("in_group_a: must be boolean (True = group A)")
    if groups.shape != (len(metadata),):
        raise InputError(f"in_group_a: expected {len(metadata)} entries (one per study), got shape {groups.shape}")
    if groups.all() or not groups.any():
        raise InputError("in_group_a: one group is empty")
    fields = field_separation(metadata, groups)
    report = ConfounderReport(field_auroc={f.name: f.auroc for f in fields})
    flagged_fields: set[str] = set()
    for f in fields:
        if abs(f.auroc - 0.5) < field_flag:
            continue
        flagged_fields.add(f.name)
        if f.level is not None and f.share_a is not None and f.share_b is not None:
            detail = f"{f.name} = {f.level!r} in {f.share_a:.0%} of group A vs {f.share_b:.0%} of group B"
        else:
            side = "higher" if f.auroc > 0.5 else "lower"
            detail = f"{f.name} is {side} in group A"
        report.flagged.append(
            f"Metadata alone separates the groups: {detail} (AUROC {f.auroc:.2f}). "
            f"Differences found between the groups may reflect {f.name} rather than disease."
        )
    if not hypothesis_scores:
        return report
    texts = list(hypothesis_scores)
    matrix = np.stack([np.asarray(hypothesis_scores[t], dtype=np.float64).reshape(-1) for t in texts])
    if matrix.shape[1] != len(metadata):
        raise InputError(f"hypothesis_scores: {matrix.shape[1]} scores per hypothesis for {len(metadata)} studies")
    if not np.all(np.isfinite(matrix)):
        raise InputError("hypothesis_scores: contain NaN or infinite values")
    for text in texts:
        report.hypothesis_correlation[text] = {}
    for f in fields:
        rho = _within_group_spearman(matrix[:, f.present], f.values[f.present], groups[f.present])
        for h, text in enumerate(texts):
            if np.isnan(rho[h]):
                continue
            r = float(rho[h])
            report.hypothesis_correlation[text][f.name] = r
            if (f.name in flagged_fields and abs(r) >= correlation_flag) or abs(r) >= strong_correlation:
                what = f"{f.name} = {f.level!r}" if f.level is not None else f.name
                tail = (
                    f", which itself separates the groups (AUROC {f.auroc:.2f}): the hypothesis may be a proxy "
                    f"for {f.name}"
                    if f.name in flagged_fields
                    else ""
                )
                report.flagged.append(
                    f"Hypothesis {text!r}: its scores follow {what} within the groups (Spearman {r:+.2f}){tail}."
                )
    _flag_overlaps(report, texts, matrix, groups, findings or {}, overlap_flag)
    return report


def _flag_overlaps(
    report: ConfounderReport,
    texts: Sequence[str],
    matrix: np.ndarray,
    groups: np.ndarray,
    findings: Mapping[str, str],
    overlap_flag: float,
) -> None:
    """Within-group Spearman of the best-ranked wording of each finding with those of the better-ranked
    findings; flag the close followers (one flag per hypothesis, naming the one it follows most). Further
    wordings of a finding already listed are not compared: they track their first wording by design."""
    finding_of = [findings.get(t, t) for t in texts]
    leads = [i for i in range(len(texts)) if finding_of[i] not in finding_of[:i]]
    for n, j in enumerate(leads):
        later = texts[j]
        earlier = leads[:n]
        if not earlier:
            continue
        rho = _within_group_spearman(matrix[earlier], matrix[j], groups)
        known = {texts[i]: float(r) for i, r in zip(earlier, rho, strict=True) if not np.isnan(r)}
        if not known:
            continue
        report.hypothesis_overlap[later] = known
        leader, r = max(known.items(), key=lambda kv: kv[1])
        if r >= overlap_flag:
            report.flagged.append(
                f"Hypothesis {later!r}: its scores follow those of {leader!r} within the groups (Spearman "
                f"{r:+.2f}): it may restate the same image signal rather than be a second difference."
            )
