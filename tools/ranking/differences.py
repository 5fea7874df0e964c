"""From ranked hypotheses to distinct, independent differences (and the co-varying signals set aside).

A CLIP-style ranker sees any abnormality as a shift of the whole embedding, so the prompt of an unrelated
finding also separates two groups that differ in one finding, with a tiny q-value. A list of ranked wordings
therefore mixes the real difference, restatements of it and correlated artefacts. This module turns it into:

* **differences**: one per finding (the wordings tested for it folded inside, both directions), each with its
  prevalence from per-study calls of every channel that has them (the report labeler, the describer's
  calibrated calls, the scorer's contrast pair marked uncalibrated), Fisher's exact test and a Newcombe
  interval of the difference of shares, the AUROC with its DeLong CI and BH q-value, and the basis on which it
  is reported;
* **co-varying signals**: hypotheses that separate the groups but are not shown to be a difference of their
  own, with the reason (which difference their scores follow, and what the texts say).

A candidate (the best wording of a finding, in rank order) must first separate the groups
(:data:`MAX_Q`, :data:`MIN_AUROC`, CI above 0.5). Then:

1. where the reports call the finding (a finding of the vocabulary, reports in both groups), the reports
   decide: the prevalence of the finding (or of the wording with its attributes) must differ in the claimed
   direction (:data:`TEXT_ALPHA`, :data:`MIN_SHARE_DIFFERENCE`);
2. else, where the describer's calls exist, they must back it likewise *and* its image scores must still
   separate the groups given the differences already accepted (:func:`conditional_group_p`);
3. else (free text, no text channel) the conditional test alone decides.

Reports are a second modality, written by radiologists, so a finding they back is kept even when its image
scores follow another difference's (two findings that co-occur in one group both stay); the describer reads
the same pixels as the scorer, so its backing is not enough on its own.

A finding that differs by an attribute both ways (right X more in A, left X more in B; a tip in the stomach in
one group, in a bronchus in the other) gives a second difference when the reports back a wording of it with
other attribute values in the other group. The list is ordered by :func:`effect_size`, the share difference
in the channel that decided each difference (largest first), so a finding the reports call in most of a group
comes before a co-occurring one they call in a fifth of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.stats import fisher_exact, rankdata
from scipy.stats import t as student_t

from tools.domain import (
    CovaryingSignal,
    Difference,
    GroupLabel,
    Hypothesis,
    Prevalence,
    PrevalenceChannel,
    ScoredHypothesis,
)
from tools.ranking.lines import hypothesis_line
from tools.reports.labeler import label_report

MAX_Q = 0.05
"""A candidate's BH q-value must be below this ..."""
MIN_AUROC = 0.65
"""... its directional AUROC at least this, and its 95% CI above 0.5."""
TEXT_ALPHA = 0.01
"""A text channel backs a candidate when Fisher's exact test (one-sided, in the claimed direction) gives a p
below this ..."""
MIN_SHARE_DIFFERENCE = 0.2
"""... and the shares differ by at least this much (a background finding at 8% differs by chance by less)."""
INDEPENDENCE_ALPHA = 0.01
"""The group effect on a candidate's scores, given the accepted differences' scores, must have a one-sided p
below this for the candidate to count as a difference of its own."""
MIN_TEXTS = 3
"""A text channel needs calls for at least this many studies in each group to say anything."""
SCORER_CALL = 0.5
"""The scorer's contrast pair calls a study positive when P(X) > P(no X) (not calibrated)."""

PositiveMentions = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
Labelled = Mapping[GroupLabel, Sequence[PositiveMentions]]


@lru_cache(maxsize=16384)
def positive_mentions(text: str) -> PositiveMentions:
    """(finding, attributes) of every positive mention in a text, labelled once per text per process."""
    return tuple(
        (m.finding, tuple(sorted(m.attributes.items()))) for m in label_report(text).mentions if m.status == "positive"
    )


def claims_of(hypothesis: Hypothesis) -> PositiveMentions:
    """The (finding, attributes) a hypothesis claims: its finding key, or for free text every positive mention
    the labeler finds in it (so "low lung volumes with pulmonary edema" claims both findings)."""
    if hypothesis.finding is not None:
        return ((hypothesis.finding, tuple(sorted(hypothesis.attributes.items()))),)
    return positive_mentions(hypothesis.text)


def text_hits(texts: Sequence[PositiveMentions], claims: PositiveMentions) -> int:
    """How many labelled texts call every claimed finding positive with (at least) its attributes."""
    return sum(
        all(any(f == finding and set(attrs) <= set(a) for f, a in text) for finding, attrs in claims) for text in texts
    )


# ---------------------------------------------------------------- statistics of per-study calls


def _wilson(positive: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = positive / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_difference(pos_a: int, n_a: int, pos_b: int, n_b: int) -> tuple[float, float]:
    """95% Newcombe (hybrid Wilson score, method 10) interval of share A minus share B."""
    p_a = pos_a / n_a if n_a else 0.0
    p_b = pos_b / n_b if n_b else 0.0
    l_a, u_a = _wilson(pos_a, n_a)
    l_b, u_b = _wilson(pos_b, n_b)
    d = p_a - p_b
    low = d - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = d + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return max(-1.0, low), min(1.0, high)


def prevalence(
    channel: PrevalenceChannel, pos_a: int, n_a: int, pos_b: int, n_b: int, group: GroupLabel, calibrated: bool = True
) -> Prevalence:
    """Counts of one channel with Fisher's exact p (one-sided toward ``group``) and the Newcombe interval."""
    if n_a and n_b:
        table = [[pos_a, n_a - pos_a], [pos_b, n_b - pos_b]]
        p = float(fisher_exact(table, alternative="greater" if group == "A" else "less")[1])
    else:
        p = 1.0
    low, high = newcombe_difference(pos_a, n_a, pos_b, n_b)
    return Prevalence(
        channel=channel,
        calibrated=calibrated,
        positive_a=pos_a,
        n_a=n_a,
        positive_b=pos_b,
        n_b=n_b,
        p_value=min(1.0, p),
        ci_low=round(low, 4),
        ci_high=round(high, 4),
    )


def text_prevalence(
    channel: PrevalenceChannel, labelled: Labelled, claims: PositiveMentions, group: GroupLabel
) -> Prevalence | None:
    """Prevalence of the claims in a text channel's labelled calls; None when a group has too few calls."""
    texts_a, texts_b = labelled.get("A", ()), labelled.get("B", ())
    if len(texts_a) < MIN_TEXTS or len(texts_b) < MIN_TEXTS or not claims:
        return None
    return prevalence(
        channel, text_hits(texts_a, claims), len(texts_a), text_hits(texts_b, claims), len(texts_b), group
    )


def scorer_prevalence(scores: np.ndarray, in_a: np.ndarray, group: GroupLabel) -> Prevalence:
    """The scorer's contrast-pair calls (P(X) > P(no X)) per group; not calibrated."""
    calls = np.asarray(scores) > SCORER_CALL
    a, b = calls[in_a], calls[~in_a]
    return prevalence("scorer", int(a.sum()), int(a.size), int(b.sum()), int(b.size), group, calibrated=False)


def backs(item: Prevalence | None, group: GroupLabel) -> bool:
    """True when a channel's calls back a difference in ``group`` (:data:`TEXT_ALPHA`,
    :data:`MIN_SHARE_DIFFERENCE`)."""
    if item is None:
        return False
    return item.p_value < TEXT_ALPHA and _towards(item, group) >= MIN_SHARE_DIFFERENCE


# ---------------------------------------------------------------- independence of image scores


def conditional_group_p(
    scores: np.ndarray, in_a: np.ndarray, covariates: Sequence[np.ndarray], group: GroupLabel
) -> float:
    """One-sided p of the group effect on ``scores`` given ``covariates`` (ANCOVA on ranks).

    The scores are regressed on the group indicator and the accepted differences' scores (all as ranks, so the
    test does not depend on the scorer's scale); the slope on each covariate is fitted within the groups, so a
    signal that only follows an accepted difference leaves no group effect. Without covariates: the plain
    one-sided t-test of the group effect. 1.0 when the design is degenerate.
    """
    y = rankdata(scores)
    groups = np.asarray(in_a, dtype=np.float64)
    columns = [np.ones_like(y), groups] + [rankdata(c) for c in covariates]
    design = np.column_stack(columns)
    n, k = design.shape
    if n - k < 2 or np.ptp(y) == 0:
        return 1.0
    gram = design.T @ design
    if np.linalg.matrix_rank(gram) < k:
        return 1.0
    inverse = np.linalg.inv(gram)
    beta = inverse @ design.T @ y
    residual = y - design @ beta
    variance = float(residual @ residual) / (n - k)
    se = math.sqrt(max(variance * float(inverse[1, 1]), 0.0))
    if se == 0.0:
        return 0.0 if (beta[1] > 0) == (group == "A") and beta[1] != 0 else 1.0
    t_value = float(beta[1]) / se
    if group == "B":
        t_value = -t_value
    return float(student_t.sf(t_value, n - k))


def within_group_spearman(x: np.ndarray, y: np.ndarray, in_a: np.ndarray) -> float | None:
    """Spearman correlation of ``x`` and ``y`` inside each group, pooled with weights n - 1 (None if undefined)."""
    total, weight = 0.0, 0
    for mask in (in_a, ~in_a):
        if mask.sum() < 3:
            continue
        rx, ry = rankdata(x[mask]), rankdata(y[mask])
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
        if denom == 0:
            continue
        total += (int(mask.sum()) - 1) * float(rx @ ry) / denom
        weight += int(mask.sum()) - 1
    return total / weight if weight else None


# ---------------------------------------------------------------- selection


@dataclass(frozen=True)
class Channels:
    """Per-study calls available to the selection: labelled texts per group of each text channel, and the
    open-vocabulary phrases of each text (:func:`tools.reports.phrases.text_phrases`) for free-text hypotheses."""

    reports: Labelled | None = None
    descriptions: Labelled | None = None
    phrases: Mapping[PrevalenceChannel, PhraseSets] = field(default_factory=dict)


PhraseSets = Mapping[GroupLabel, Sequence[frozenset[str]]]


def phrase_prevalence(
    channel: PrevalenceChannel, phrases: PhraseSets | None, phrase: str, group: GroupLabel
) -> Prevalence | None:
    """Prevalence of a free-text phrase in a channel's texts (a text counts when its affirmed clauses hold the
    phrase); None when a group has too few texts, or the phrase is not one the miner could find in a text."""
    from tools.reports.phrases import text_phrases

    if phrases is None or phrase not in text_phrases(phrase):
        return None
    texts_a, texts_b = phrases.get("A", ()), phrases.get("B", ())
    if len(texts_a) < MIN_TEXTS or len(texts_b) < MIN_TEXTS:
        return None
    hits_a = sum(phrase in t for t in texts_a)
    hits_b = sum(phrase in t for t in texts_b)
    found = prevalence(channel, hits_a, len(texts_a), hits_b, len(texts_b), group)
    return found.model_copy(update={"claim": phrase})


@dataclass
class _Candidate:
    members: list[ScoredHypothesis]  # whole-frame wordings of one finding (both directions), rank order
    regional: list[ScoredHypothesis]  # region-crop scores of its wordings

    @property
    def lead(self) -> ScoredHypothesis:
        return self.members[0]


def separates(item: ScoredHypothesis) -> bool:
    """True when a scored wording separates the groups (:data:`MAX_Q`, :data:`MIN_AUROC`, CI above 0.5)."""
    return item.score.q_value < MAX_Q and item.directional_auroc >= MIN_AUROC and item.directional_ci[0] > 0.5


def _families(ranked: Sequence[ScoredHypothesis]) -> list[_Candidate]:
    """Wordings grouped by the finding they name (free text naming several findings is left out: its parts are
    tested on their own), in order of each finding's best-ranked wording. Free text naming no vocabulary finding
    joins an earlier such phrase that contains it or that it contains ("lead" and "pacemaker lead")."""
    order: dict[str, _Candidate] = {}
    for item in ranked:
        claims = claims_of(item.hypothesis)
        if item.hypothesis.finding is None and len({f for f, _ in claims}) > 1:
            continue
        key = item.hypothesis.finding or item.hypothesis.key
        if not claims:
            padded = f" {key} "
            key = next((k for k in order if f" {k} " in padded or padded in f" {k} "), key)
        candidate = order.setdefault(key, _Candidate([], []))
        (candidate.members if item.region is None else candidate.regional).append(item)
    return [c for c in order.values() if c.members]


def _channel_prevalences(
    item: ScoredHypothesis, channels: Channels, rows: Mapping[str, np.ndarray], in_a: np.ndarray
) -> list[Prevalence]:
    hyp = item.hypothesis
    claims = claims_of(hyp)
    out: list[Prevalence] = []
    if not claims:
        channel_names: tuple[PrevalenceChannel, ...] = ("reports", "descriptions")
        for name in channel_names:
            found_phrase = phrase_prevalence(name, channels.phrases.get(name), hyp.key, hyp.group)
            if found_phrase is not None:
                out.append(found_phrase)
    plain = tuple((f, ()) for f, _ in claims)
    for name, labelled in (("reports", channels.reports), ("descriptions", channels.descriptions)):
        if labelled is None:
            continue
        # the finding itself, then (when the wording states attributes) the finding with those attributes
        for counted, label in ((plain, _finding_label(hyp)), (claims, hyp.text)):
            if counted is claims and claims == plain:
                continue
            found = text_prevalence(name, labelled, counted, hyp.group)
            if found is not None:
                out.append(found.model_copy(update={"claim": label}))
    scores = rows.get(hyp.key)
    if scores is not None and scores.size == in_a.size and np.all((scores >= 0) & (scores <= 1)):
        out.append(scorer_prevalence(scores, in_a, hyp.group).model_copy(update={"claim": hyp.text}))
    return out


def _finding_label(hyp: Hypothesis) -> str:
    """The finding a wording names, without attributes ('pleural effusion')."""
    if hyp.finding is None:
        return hyp.text
    from tools.vocabulary import describe_finding

    return describe_finding(hyp.finding, {})


def _finding_prevalence(
    item: ScoredHypothesis, channel: PrevalenceChannel, labelled: Labelled | None
) -> Prevalence | None:
    """Prevalence of the wording's findings without attributes (a presence difference needs no attribute)."""
    if labelled is None:
        return None
    claims = tuple((f, ()) for f, _ in claims_of(item.hypothesis))
    return text_prevalence(channel, labelled, claims, item.hypothesis.group)


def _towards(item: Prevalence, group: GroupLabel) -> float:
    return item.share_a - item.share_b if group == "A" else item.share_b - item.share_a


def _backed_wording(
    significant: Sequence[ScoredHypothesis], channel: PrevalenceChannel, labelled: Labelled | None
) -> tuple[ScoredHypothesis, Prevalence] | None:
    """The wording a text channel backs best, with the backing prevalence, or None.

    Wordings backed with all their attributes come first: of those, the one whose shares differ most (to 0.1),
    then the most specific, then the best ranked. Only when none is, the best-ranked wording whose finding alone
    is backed (a presence difference whose attributes the channel does not state).
    """
    if labelled is None:
        return None
    exact = []
    for position, item in enumerate(significant):
        found = text_prevalence(channel, labelled, claims_of(item.hypothesis), item.hypothesis.group)
        if found is not None and backs(found, item.hypothesis.group):
            key = (round(_towards(found, item.hypothesis.group), 1), len(item.hypothesis.attributes), -position)
            exact.append((key, item, found))
    if exact:
        _key, item, found = max(exact, key=lambda e: e[0])
        return item, found
    for item in significant:
        plain = _finding_prevalence(item, channel, labelled)
        if plain is not None and backs(plain, item.hypothesis.group):
            return item, plain
    return None


def _covers(item: ScoredHypothesis, labelled: Labelled | None) -> bool:
    """True when a text channel can call the wording's finding (a finding of the vocabulary, calls in both
    groups)."""
    if labelled is None or not claims_of(item.hypothesis):
        return False
    return len(labelled.get("A", ())) >= MIN_TEXTS and len(labelled.get("B", ())) >= MIN_TEXTS


def select_differences(
    ranked: Sequence[ScoredHypothesis],
    rows: Mapping[str, np.ndarray],
    in_a: np.ndarray,
    channels: Channels,
) -> tuple[list[Difference], list[CovaryingSignal]]:
    """Differences and co-varying signals of a run (see the module docstring for the rule).

    ``ranked`` is the run's ranked list (q-values across the run); ``rows`` maps a hypothesis key to its scores
    on every scored study (aligned with ``in_a``); ``channels`` holds the labelled per-study texts.
    """
    in_a = np.asarray(in_a, dtype=bool)
    accepted: list[tuple[Difference, np.ndarray]] = []
    covarying: list[CovaryingSignal] = []
    rank_of: dict[str, int] = {}
    families = _families(ranked)
    position = {id(c): i for i, c in enumerate(families)}
    # vocabulary findings first, so a phrase that only describes one of them (its tip, its leads) meets it as an
    # accepted difference; the list is put back in rank order at the end
    for candidate in sorted(families, key=lambda c: not claims_of(c.lead.hypothesis)):
        significant = [m for m in candidate.members if separates(m)]
        if not significant:
            continue
        lead = significant[0]
        scores = rows.get(lead.hypothesis.key)
        conditional: float | None = None
        follows: tuple[str, float] | None = None
        if scores is not None and accepted:
            covariates = [s for _, s in accepted]
            conditional = conditional_group_p(scores, in_a, covariates, lead.hypothesis.group)
            rhos = [(d.text, within_group_spearman(scores, s, in_a)) for d, s in accepted]
            known = [(t, r) for t, r in rhos if r is not None]
            follows = max(known, key=lambda tr: tr[1]) if known else None
        independent = not accepted or (conditional is not None and conditional < INDEPENDENCE_ALPHA)
        chosen, basis, decided_by = _decide(significant, channels, independent, conditional, accepted)
        restated = _restates(lead, channels, [d for d, _ in accepted]) if chosen is not None else None
        if restated is not None:
            covarying.append(
                _covarying(lead, channels, rows, in_a, follows, conditional, independent).model_copy(
                    update={"follows": restated[0], "reason": restated[1]}
                )
            )
            continue
        if chosen is not None:
            for item, why, channel in [(chosen, basis, decided_by), *_other_side(chosen, significant, channels)]:
                item_scores = rows.get(item.hypothesis.key)
                difference = _difference(item, candidate, channels, rows, in_a, why, conditional, channel)
                accepted.append((difference, item_scores if item_scores is not None else np.zeros(in_a.size)))
                rank_of[difference.text] = position[id(candidate)]
            continue
        covarying.append(_covarying(lead, channels, rows, in_a, follows, conditional, independent))
    order = sorted(accepted, key=lambda pair: (-round(effect_size(pair[0]), 2), rank_of[pair[0].text]))
    return [d for d, _ in order], covarying


def effect_size(difference: Difference) -> float:
    """How much the groups differ in a difference, on one scale for every basis: the share difference (toward
    its group) of the channel that decided it, the largest of its entries (the finding alone, or with the
    wording's attributes); for a difference of image scores alone 2 * AUROC - 1 (which is the share difference
    when the scores are binary calls). The differences list is ordered by it, largest first: a report-backed
    difference called in 100 of 150 reports comes before one called in 31 of 150 whatever their text
    similarity's AUROC."""
    shares = [_towards(p, difference.group) for p in difference.prevalence if p.channel == difference.decided_by]
    return max(shares) if shares else 2.0 * difference.auroc - 1.0


def _other_side(
    chosen: ScoredHypothesis, significant: Sequence[ScoredHypothesis], channels: Channels
) -> list[tuple[ScoredHypothesis, str, PrevalenceChannel]]:
    """The second difference of a finding that differs by an attribute both ways (right X in A, left X in B),
    as (wording, basis, the deciding channel): a wording of the finding with other attribute values, more in the
    other group, that the reports back with its attributes; none when the chosen wording states no attribute or
    the reports do not back one."""
    if not chosen.hypothesis.attributes or chosen.hypothesis.finding is None or channels.reports is None:
        return []
    stated = dict(chosen.hypothesis.attributes)
    opposite = [
        m
        for m in significant
        if m.hypothesis.group != chosen.hypothesis.group
        and m.hypothesis.finding == chosen.hypothesis.finding
        and any(k in stated and stated[k] != v for k, v in m.hypothesis.attributes.items())
    ]
    exact = []
    for position, item in enumerate(opposite):
        found = text_prevalence("reports", channels.reports, claims_of(item.hypothesis), item.hypothesis.group)
        if found is not None and backs(found, item.hypothesis.group):
            exact.append(((round(_towards(found, item.hypothesis.group), 1), -position), item, found))
    if not exact:
        return []
    _key, item, found = max(exact, key=lambda e: e[0])
    basis = f"reports: {found.counts()} (Fisher p={found.p_value:.2g}); the same finding, other attributes"
    return [(item, basis, "reports")]


RESTATES_SHARE = 0.8
"""A free-text phrase restates an accepted difference when at least this share of the texts that hold it also
call that difference's finding ("low SVC" in reports that all call the PICC whose tip lies there)."""


def _restates(lead: ScoredHypothesis, channels: Channels, accepted: Sequence[Difference]) -> tuple[str, str] | None:
    """(difference text, reason) when a free-text phrase's texts are mostly texts that already call an accepted
    difference's finding (the phrase is part of how the texts describe it); else None."""
    if claims_of(lead.hypothesis) or not accepted:
        return None
    phrase = lead.hypothesis.key
    channel_names: tuple[PrevalenceChannel, ...] = ("reports", "descriptions")
    for name in channel_names:
        labelled = channels.reports if name == "reports" else channels.descriptions
        sets = channels.phrases.get(name)
        if labelled is None or sets is None:
            continue
        holding = [
            mentions
            for group in ("A", "B")
            for mentions, phrases in zip(labelled.get(group, ()), sets.get(group, ()), strict=False)
            if phrase in phrases
        ]
        if not holding:
            continue
        for difference in accepted:
            if difference.finding is None:
                continue
            share = sum(any(f == difference.finding for f, _ in m) for m in holding) / len(holding)
            if share >= RESTATES_SHARE:
                return difference.text, (
                    f"restates '{difference.text}': {share:.0%} of the {len(holding)} {name} that say "
                    f"'{phrase}' call it"
                )
    return None


def _channel_backing(
    significant: list[ScoredHypothesis], channel: PrevalenceChannel, channels: Channels
) -> tuple[bool, tuple[ScoredHypothesis, Prevalence] | None]:
    """Whether a text channel can call the candidate at all, and the wording it backs (with the prevalence that
    backs it): vocabulary findings by the labeler's calls, free text by the phrase's own prevalence."""
    lead = significant[0]
    if not claims_of(lead.hypothesis):  # free text naming no vocabulary finding
        found = phrase_prevalence(channel, channels.phrases.get(channel), lead.hypothesis.key, lead.hypothesis.group)
        if found is None:
            return False, None
        return True, ((lead, found) if backs(found, lead.hypothesis.group) else None)
    labelled = channels.reports if channel == "reports" else channels.descriptions
    if not _covers(lead, labelled):
        return False, None
    return True, _backed_wording(significant, channel, labelled)


def _decide(
    significant: list[ScoredHypothesis],
    channels: Channels,
    independent: bool,
    conditional: float | None,
    accepted: list[tuple[Difference, np.ndarray]],
) -> tuple[ScoredHypothesis | None, str, PrevalenceChannel | None]:
    """The wording to report, the basis and the channel that decided (None: image scores alone), or
    (None, "", None) when the finding is not a difference of its own.

    The first text channel that can call the candidate decides: the reports on their own, the descriptions only
    together with the conditional test; with no text channel the conditional test alone."""
    independence = (
        "the first difference" if not accepted else f"independent of the differences above (p={conditional:.2g})"
    )
    channel_names: tuple[PrevalenceChannel, ...] = ("reports", "descriptions")
    for channel in channel_names:
        if channel == "descriptions" and not independent:
            return None, "", None
        covered, backed = _channel_backing(significant, channel, channels)
        if not covered:
            continue
        if backed is None:
            return None, "", None
        item, found = backed
        what = f"'{found.claim}' in " if not claims_of(item.hypothesis) else ""
        basis = f"{channel}: {what}{found.counts()} (Fisher p={found.p_value:.2g})"
        return item, basis if channel == "reports" else f"{basis}; {independence}", channel
    if not independent:
        return None, "", None
    return significant[0], f"image scores alone (no text channel calls it); {independence}", None


def _difference(
    chosen: ScoredHypothesis,
    candidate: _Candidate,
    channels: Channels,
    rows: Mapping[str, np.ndarray],
    in_a: np.ndarray,
    basis: str,
    conditional: float | None,
    decided_by: PrevalenceChannel | None,
) -> Difference:
    hyp = chosen.hypothesis
    low, high = chosen.directional_ci
    others = [m for m in candidate.members if m is not chosen] + candidate.regional
    return Difference(
        text=hyp.text,
        group=hyp.group,
        finding=hyp.finding,
        attributes=dict(hyp.attributes),
        auroc=round(chosen.directional_auroc, 4),
        ci_low=round(low, 4),
        ci_high=round(high, 4),
        p_value=chosen.score.p_value,
        q_value=chosen.score.q_value,
        prevalence=_channel_prevalences(chosen, channels, rows, in_a),
        basis=basis,
        decided_by=decided_by,
        conditional_p=conditional,
        evidence_a=list(chosen.evidence_a),
        evidence_b=list(chosen.evidence_b),
        wordings=[hypothesis_line(m, ci=False, test=None) for m in others],
    )


def _covarying(
    lead: ScoredHypothesis,
    channels: Channels,
    rows: Mapping[str, np.ndarray],
    in_a: np.ndarray,
    follows: tuple[str, float] | None,
    conditional: float | None,
    independent: bool,
) -> CovaryingSignal:
    found = _channel_prevalences(lead, channels, rows, in_a)
    parts: list[str] = []
    if follows is not None:
        parts.append(f"follows '{follows[0]}' (within-group Spearman {follows[1]:+.2f})")
    if conditional is not None and not independent:
        parts.append(f"no group effect left given the differences above (p={conditional:.2g})")
    texts = [p for p in found if p.channel != "scorer"]
    if texts:
        parts.append(
            "; ".join(f"{p.channel} call it in {p.counts()}" for p in texts)
            + (" (not backed)" if not any(backs(p, lead.hypothesis.group) for p in texts) else "")
        )
    elif claims_of(lead.hypothesis):
        parts.append("no description or report calls it")
    return CovaryingSignal(
        text=lead.hypothesis.text,
        group=lead.hypothesis.group,
        finding=lead.hypothesis.finding,
        auroc=round(lead.directional_auroc, 4),
        q_value=lead.score.q_value,
        follows=follows[0] if follows else None,
        spearman=round(follows[1], 4) if follows else None,
        conditional_p=conditional,
        prevalence=found,
        reason="; ".join(parts) or "not shown to be a difference of its own",
    )


def summary_sentence(differences: Sequence[Difference], names: Mapping[GroupLabel, str], n_tested: int) -> str:
    """A short radiologist-style summary: each difference with its best prevalence, then what was set aside."""
    if not differences:
        return f"No independent difference between the groups was found ({n_tested} hypotheses tested)."
    sentences = []
    for i, d in enumerate(differences):
        other: GroupLabel = "B" if d.group == "A" else "A"
        texts = [p for p in d.prevalence if p.channel != "scorer"] or d.prevalence
        where = ""
        if texts:
            best = min(texts, key=lambda p: p.p_value)
            where = (
                f" ({best.counts()} in the {best.channel})"
                if best.channel != "scorer"
                else (f" ({best.counts()} by the scorer, uncalibrated)")
            )
        lead = "Group" if i == 0 else "Also, group"
        sentences.append(
            f"{lead} {d.group} ({names[d.group]}) has {d.text} more often than group {other}{where}; "
            f"AUROC {d.auroc:.2f}."
        )
    return " ".join(sentences) + " No other independent difference."


# ---------------------------------------------------------------- one line each (terminal, chat, reports)
