"""Ranking of tested hypotheses: one list, best first, in which the texts back the wording they state.

:func:`rank_scored` orders the wordings of each finding (families) and the families; :func:`text_support`
measures how much the descriptions and reports back each hypothesis. Every policy and the final report use
these, so an LLM run and a ``rules`` run rank the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tools.domain import Hypothesis, ScoredHypothesis
from tools.ranking.differences import PositiveMentions, claims_of, positive_mentions, text_hits

GroupTexts = Mapping[str, Sequence[str]]
"""Texts of one source (descriptions, or reports) per group: ``{"A": [...], "B": [...]}``."""

AUROC_TOLERANCE = 0.03
"""Wordings of one finding whose AUROCs (on the same images) differ by less than this separate the groups
equally well: among them the text evidence and specificity decide ..."""
TIE_CI_FRACTION = 0.3
"""... or by less than this fraction of the half-width of the best wording's 95% CI, when that is wider (small
groups). Two wordings of one finding score the same images, and their scores correlate (measured on the
default SynthDiffBench suite: median r 0.95, quartiles 0.85-0.99, over 850 pairs of wordings), so the standard
error of their AUROC difference is about sqrt(2 (1 - r)) ~ 0.32 of either AUROC's, i.e. ~0.16 of the CI
half-width: 0.3 of the half-width is a ~95% band for the paired difference, within which neither wording is
shown to separate the groups better."""
TEXT_WEIGHT = 0.05
"""What full text backing is worth in AUROC when findings are ranked: a finding called in all of its group's
descriptions (or reports) and none of the other group's ranks as if its AUROC were this much higher. Image-text
scores of correlated findings move together (an effusion raises "atelectasis"); the texts say which one it is."""


def rank_key(item: ScoredHypothesis, support: dict[str, float] | None = None) -> tuple[float, float, int, float]:
    """Sort key of one wording: AUROC (2 decimals); then text backing weighted by specificity, i.e. how much the
    descriptions and reports back the hypothesis times (1 + its number of attributes), so among equally separating
    wordings the most specific one the texts still support wins; then the number of attributes; then AUROC."""
    backing = (support or {}).get(item.hypothesis.key, 0.0)
    n_attributes = len(item.hypothesis.attributes)
    weighted = round(backing * (1.0 + n_attributes), 4)
    return (round(item.directional_auroc, 2), weighted, n_attributes, item.directional_auroc)


def family_of(item: ScoredHypothesis) -> tuple[str, str]:
    """Wordings of the same finding claimed for the same group form one family (free text: its own family)."""
    return (item.hypothesis.finding or item.hypothesis.key, item.hypothesis.group)


def rank_scored(pool: Sequence[ScoredHypothesis], support: dict[str, float] | None = None) -> list[ScoredHypothesis]:
    """Best first, one entry per (hypothesis text, region): the best-scored one.

    Wordings are grouped into families (one finding, one group). Within a family, the wordings whose AUROC is
    within :data:`AUROC_TOLERANCE` (or :data:`TIE_CI_FRACTION` of the CI half-width) of the family's best are
    equally good and ordered by :func:`rank_key` without
    the AUROC rounding (so a specific wording the texts back is not beaten by a broader one by a few hundredths
    of AUROC), the rest follow by :func:`rank_key`. Families are ordered by their best AUROC plus
    :data:`TEXT_WEIGHT` times how much the texts back the finding (2 decimals), then by that backing (of the
    finding, not of how specific a wording is: specificity only chooses among wordings). The list takes each
    family's best wording before the second-best ones, and so on (a family's k-th wording counts like the
    (1.5 k)-th family), so the top of the list names several findings and, for the leading ones, several
    wordings.
    """
    best: dict[tuple[str, str | None], ScoredHypothesis] = {}
    for item in pool:
        key = (item.hypothesis.key, item.region)
        if key not in best or item.directional_auroc > best[key].directional_auroc:
            best[key] = item
    families: dict[tuple[str, str], list[ScoredHypothesis]] = {}
    for item in best.values():
        families.setdefault(family_of(item), []).append(item)
    ordered: list[list[ScoredHypothesis]] = []
    for members in families.values():
        leader = max(members, key=lambda m: m.directional_auroc)
        top = leader.directional_auroc
        tolerance = max(AUROC_TOLERANCE, TIE_CI_FRACTION * (leader.score.ci_high - leader.score.ci_low) / 2)

        def within(
            item: ScoredHypothesis, top: float = top, tolerance: float = tolerance
        ) -> tuple[bool, tuple[float, float, int, float]]:
            tied = item.directional_auroc >= top - tolerance
            key = rank_key(item, support)
            return (tied, (1.0, *key[1:]) if tied else key)

        ordered.append(sorted(members, key=within, reverse=True))

    def family_key(members: list[ScoredHypothesis]) -> tuple[float, float, float]:
        backing = max((support or {}).get(m.hypothesis.key, 0.0) for m in members)
        best_auroc = max(m.directional_auroc for m in members)
        return (round(best_auroc + TEXT_WEIGHT * backing, 2), backing, best_auroc)

    ordered.sort(key=family_key, reverse=True)
    slots = [(family + 1.5 * k, family, k) for family, members in enumerate(ordered) for k in range(len(members))]
    return [ordered[family][k] for _slot, family, k in sorted(slots)]


def labelled_texts(texts: GroupTexts) -> dict[str, list[PositiveMentions]]:
    """The positive mentions (finding, attributes) of every text, per group."""
    return {group: [positive_mentions(text) for text in texts.get(group, ())] for group in ("A", "B")}


def text_support(hypotheses: Sequence[Hypothesis], sources: Sequence[GroupTexts]) -> dict[str, float]:
    """How much the descriptions and reports back each hypothesis: the fraction of its group's texts that call
    its finding positive with all its attributes (every finding it names, for free text naming several), minus
    that fraction in the other group (-1..1; 0 if it names no finding of the vocabulary).

    Descriptions and reports are separate sources, each measured on its own; a hypothesis gets the backing of
    the source that supports it most (so a size every report states is not voted down by a describer that
    cannot judge sizes, and a source that says nothing of a finding does not dilute another that does).
    ``sources``: the texts of each source (descriptions, reports) per group."""
    labelled = [labelled_texts(source) for source in sources]
    out: dict[str, float] = {}
    for hyp in hypotheses:
        claims = claims_of(hyp)
        if not claims:
            out[hyp.key] = 0.0
            continue

        def share(labelled: dict[str, list[PositiveMentions]], group: str, claims: PositiveMentions = claims) -> float:
            texts = labelled[group]
            return text_hits(texts, claims) / len(texts) if texts else 0.0

        other = "B" if hyp.group == "A" else "A"
        backing = [share(src, hyp.group) - share(src, other) for src in labelled if src["A"] or src["B"]]
        out[hyp.key] = round(max(backing), 4) if backing else 0.0
    return out
