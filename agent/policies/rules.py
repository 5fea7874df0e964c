"""The offline ``rules`` policy: the same decisions as the LLM radiologist, made without any LLM.

Propose: label every description (and report) with the report labeler, compare how often each finding of
the vocabulary is positive in group A vs B, and propose the findings that differ most, phrased with the
attributes most common where they are present (side, size, lobe, tip), at several levels of detail; next to
them, phrases of the texts that name no vocabulary finding and differ in prevalence (open vocabulary).
Reflect: refine the best hypothesis by its attributes (one attribute fewer; other sides, sizes, lobes,
patterns, and the tip positions of a device both groups have), zoom into the region a localized finding
implies, describe more studies when evidence is thin, else stop.
Convergence is decided by the graph (``agent.convergence``), the same rule for every policy.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.context import RunContext
from agent.schemas import Decision, ProposedHypothesis
from agent.state import Observation, observed_texts, text_sources
from tools.domain import GroupLabel, Hypothesis, ScoredHypothesis
from tools.ranking.differences import PositiveMentions
from tools.ranking.ranking import labelled_texts, rank_scored, text_support
from tools.scorers.registry import scorer_scores_reports
from tools.vocabulary import FINDINGS, describe_finding

log = logging.getLogger(__name__)

COMBINE_AUROC = 0.9
"""Two findings that each separate the groups at least this well (directional AUROC) ..."""
COMBINE_SUPPORT = 0.5
"""... and that the descriptions or reports back by at least this much (see
:func:`tools.ranking.ranking.text_support`), in the same group, are tested together as one hypothesis
("X with Y"): a pair of cohorts often differs in two findings at once (edema with effusions, low volumes with
perihilar opacity), and a radiologist names both."""

SHARED_DEVICE_FRACTION = 0.3
"""A tube or line that the texts call in at least this fraction of *both* groups is shared: where its tip lies
can be the difference, so its tip positions are proposed and refined. A device only one group has differs by
its presence; its tip wordings would only repeat that (and the ground truth of a presence difference does not
name the tip)."""

REFINABLE = ("side", "size", "severity", "lobe", "tip", "zone", "pattern", "direction")
LOCALIZED = {
    "nodule",
    "mass",
    "pneumothorax",
    "endotracheal_tube",
    "enteric_tube",
    "central_venous_catheter",
    "picc",
    "rib_fracture",
    "consolidation",
}


@dataclass
class FindingEvidence:
    """How often one finding is called positive in each group, and with which attributes."""

    finding: str
    positive: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    seen: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    attributes: dict[str, dict[str, Counter[str]]] = field(default_factory=lambda: {"A": {}, "B": {}})

    def fraction(self, group: str) -> float:
        """Fraction of the group's labelled texts that call the finding positive."""
        return self.positive[group] / self.seen[group] if self.seen[group] else 0.0

    @property
    def difference(self) -> float:
        """Fraction in A minus fraction in B."""
        return self.fraction("A") - self.fraction("B")

    @property
    def tip_can_differ(self) -> bool:
        """True for a device with a tip position that both groups have (:data:`SHARED_DEVICE_FRACTION`)."""
        has_tip = "tip" in FINDINGS[self.finding].attributes
        return has_tip and min(self.fraction("A"), self.fraction("B")) >= SHARED_DEVICE_FRACTION


def _labelled_texts(observations: Sequence[Observation], kind: str | None = None) -> dict[str, list[PositiveMentions]]:
    """Positive mentions of every description and report text per group (only those of ``kind`` if given)."""
    return labelled_texts(observed_texts(observations, kind))


def evidence_from_observations(observations: Sequence[Observation]) -> dict[str, FindingEvidence]:
    """Label every description and report text of the observations; tally positives per finding and group, and
    the attribute values they state (tip positions only for a device both groups have)."""
    table = {key: FindingEvidence(key) for key in FINDINGS}
    for group, texts in _labelled_texts(observations).items():
        for mentions in texts:
            for key, evidence in table.items():
                evidence.seen[group] += 1
                found = [attrs for finding, attrs in mentions if finding == key]
                if found:
                    evidence.positive[group] += 1
                    for attrs in found:
                        for name, value in attrs:
                            evidence.attributes[group].setdefault(name, Counter())[value] += 1
    for evidence in table.values():
        if not evidence.tip_can_differ:  # a device one group lacks differs by presence, not by where its tip is
            for group in ("A", "B"):
                evidence.attributes[group].pop("tip", None)
    return table


COMMON_ATTRIBUTE_SHARE = 0.75
"""An attribute value is proposed (alone, or in a finding's "most common" wording) only when at least this share
of the group's texts that call the finding state it: real reports grade and lateralise inconsistently, and a
value half of them state is not what the group has (SynthCXR's texts state a planted finding's attributes
every time)."""


def _common_attributes(evidence: FindingEvidence, group: str) -> dict[str, str]:
    allowed = FINDINGS[evidence.finding].attributes
    out = {}
    for name, counter in evidence.attributes[group].items():
        if name in allowed and counter:
            value, count = counter.most_common(1)[0]
            if count >= COMMON_ATTRIBUTE_SHARE * evidence.positive[group]:
                out[name] = value
    return out


def _hypothesis(finding: str, attrs: dict[str, str], group: GroupLabel, rationale: str, source: str) -> Hypothesis:
    return Hypothesis(
        text=describe_finding(finding, attrs),
        group=group,
        rationale=rationale,
        finding=finding,
        attributes=attrs,
        region=region_for(finding, attrs),
        source=source,
    )


def region_for(finding: str, attrs: dict[str, str]) -> str | None:
    """The anatomical region a finding with these attributes implies (a key of ``tools.vocabulary.REGIONS``)."""
    side = attrs.get("side")
    if finding in ("nodule", "mass"):
        zone = attrs.get("zone", "mid")
        return f"{zone}_zone_{side}" if side in ("left", "right") else None
    if finding == "pneumothorax":
        return f"apex_{side}" if side in ("left", "right") else "apices"
    if finding == "pleural_effusion":
        return f"costophrenic_angle_{side}" if side in ("left", "right") else "costophrenic_angles"
    if finding == "consolidation" and "lobe" in attrs:
        lobe = attrs["lobe"]
        zone = {"U": "upper", "M": "mid", "L": "lower"}[lobe[1]]
        return f"{zone}_zone_{'right' if lobe[0] == 'R' else 'left'}"
    if finding == "rib_fracture" and side in ("left", "right"):
        return f"mid_zone_{side}"
    if finding == "enteric_tube":
        return "upper_abdomen"
    if finding == "endotracheal_tube":
        return "trachea_carina"
    return FINDINGS[finding].region


def rules_policy(context: RunContext) -> RulesPolicy:
    """A new :class:`RulesPolicy` (the ``rules`` entry's factory; the policy needs nothing from the context)."""
    return RulesPolicy()


class RulesPolicy:
    """Offline policy over the finding vocabulary (the default when no LLM is configured)."""

    name = "rules"

    def propose(
        self,
        observations: Sequence[Observation],
        scored: Sequence[ScoredHypothesis],
        context: RunContext,
        round_: int,
        ws: Any = None,
    ) -> list[Hypothesis]:
        """Hypotheses for the findings (and attribute values) whose positive fraction differs most between groups."""
        table = evidence_from_observations(observations)
        tested = {s.hypothesis.key for s in scored}
        candidates: list[tuple[float, FindingEvidence, dict[str, str]]] = []
        for evidence in table.values():
            candidates.append((evidence.difference, evidence, {}))
            # sorted: equal differences keep one order in every process (set order follows string hashing)
            names = sorted(set(evidence.attributes["A"]) | set(evidence.attributes["B"]))
            for name in names:
                values = sorted(
                    set(evidence.attributes["A"].get(name, {})) | set(evidence.attributes["B"].get(name, {}))
                )
                for value in values:
                    share = {
                        g: evidence.attributes[g].get(name, Counter())[value] / max(evidence.seen[g], 1)
                        for g in ("A", "B")
                    }
                    claimed = "A" if share["A"] > share["B"] else "B"
                    stated = evidence.attributes[claimed].get(name, Counter())[value]
                    if stated >= COMMON_ATTRIBUTE_SHARE * evidence.positive[claimed]:
                        candidates.append((share["A"] - share["B"], evidence, {name: value}))
        candidates.sort(key=lambda c: abs(c[0]), reverse=True)
        out: list[Hypothesis] = []
        for difference, evidence, attrs in candidates:
            if abs(difference) <= 0 or len(out) >= context.hypotheses_per_round:
                break
            group: GroupLabel = "A" if difference > 0 else "B"
            rationale = (
                f"'{describe_finding(evidence.finding, attrs)}' called in {evidence.fraction('A'):.0%} of group A "
                f"texts vs {evidence.fraction('B'):.0%} of group B texts (difference {difference:+.0%})"
            )
            common = {**_common_attributes(evidence, group), **attrs}
            for variant in (attrs, common):
                hyp = _hypothesis(evidence.finding, variant, group, rationale, f"rules/round{round_}")
                if hyp.key not in tested and all(h.key != hyp.key for h in out):
                    out.append(hyp)
        out = out[: max(context.hypotheses_per_round, 1)]
        out += [
            h
            for h in phrase_hypotheses(observations, round_)
            if h.key not in tested and h.key not in {o.key for o in out}
        ]
        # screen findings not yet tested with the scorer itself (one matrix product): descriptions can miss a
        # difference that the image-text scores still show. The screen covers the plantable findings (what the
        # offline models can see) and every other finding of the vocabulary that some text calls present; a
        # report-text scorer sees only what the reports say, so there it screens the mentioned findings alone
        mentioned = {k for k, e in table.items() if e.positive["A"] or e.positive["B"]}
        image_scorer = not scorer_scores_reports(context.scorer)
        for key in (k for k, f in FINDINGS.items() if (f.plantable and image_scorer) or k in mentioned):
            hyp = _hypothesis(
                key, {}, "A", "vocabulary screen: direction set by the data", f"rules/round{round_}/screen"
            ).model_copy(update={"orient_by_data": True})
            if hyp.key not in tested and all(h.key != hyp.key for h in out):
                out.append(hyp)
        return out

    def reflect(
        self,
        observations: Sequence[Observation],
        scored: Sequence[ScoredHypothesis],
        context: RunContext,
        round_: int,
        ws: Any = None,
    ) -> Decision:
        """Refine by attributes, then zoom into a localized finding's region, then describe more, then stop."""
        if not scored:
            return Decision(action="describe_more", reason="no hypothesis could be scored yet")
        best = sorted(scored, key=lambda s: s.directional_auroc, reverse=True)[: context.top_k]
        tested = {s.hypothesis.key for s in scored}
        evidence = evidence_from_observations(observations)
        refinements: list[Hypothesis] = []
        combined = combination(scored, observations, round_)
        if combined is not None and combined.key not in tested:
            refinements.append(combined)
        for item in best[:1]:  # one attribute at a time around the best hypothesis: a bounded search
            hyp = item.hypothesis
            if hyp.finding is None:
                continue
            # neighbours in the attribute lattice: one attribute set or changed, or one dropped (broader)
            variants = [{k: v for k, v in hyp.attributes.items() if k != name} for name in hyp.attributes]
            refinable = [n for n in REFINABLE if n != "tip" or evidence[hyp.finding].tip_can_differ]
            variants += [
                {**hyp.attributes, name: value}
                for name in refinable
                for value in FINDINGS[hyp.finding].attributes.get(name, ())
            ]
            for attrs in variants:
                candidate = _hypothesis(hyp.finding, attrs, hyp.group, f"refines '{hyp.text}'", f"rules/round{round_}")
                if candidate.key not in tested and all(c.text != candidate.text for c in refinements):
                    refinements.append(candidate)
        if refinements and context.refine:
            chosen = refinements[: max(context.hypotheses_per_round * 2, 1)]
            return Decision(
                action="refine",
                reason=f"test attribute variants of the best hypothesis '{best[0].hypothesis.text}'",
                hypotheses=[_proposed(h) for h in chosen],
            )
        zoomed = {o.data.get("region") for o in observations if o.kind == "zoom"}
        top = best[0].hypothesis
        region = top.region or (region_for(top.finding, top.attributes) if top.finding else None)
        if context.use_zoom and context.refine and top.finding in LOCALIZED and region and region not in zoomed:
            return Decision(action="zoom", region=region, reason=f"'{top.text}' is localized: zoom into {region}")
        described = sum(len(o.study_ids) for o in observations if o.kind == "description")
        if context.refine and best[0].directional_auroc < 0.7 and described < 4 * context.samples_per_group:
            return Decision(action="describe_more", reason="evidence is weak: describe more studies")
        return Decision(action="stop", reason="attributes refined and regions checked; nothing left to test")


def combination(
    scored: Sequence[ScoredHypothesis], observations: Sequence[Observation], round_: int = 0
) -> Hypothesis | None:
    """ "X with Y" for the two leading findings that each separate the groups (:data:`COMBINE_AUROC`) and that
    the texts back (:data:`COMBINE_SUPPORT`) in the same group, each in its best-ranked wording; else None."""
    whole_frame = [s for s in scored if s.region is None and s.hypothesis.finding is not None]
    support = text_support([s.hypothesis for s in whole_frame], text_sources(observations))
    leaders: list[Hypothesis] = []
    seen: set[str] = set()
    for item in rank_scored(whole_frame, support):
        hyp = item.hypothesis
        if hyp.finding in seen:
            continue
        seen.add(str(hyp.finding))
        if item.directional_auroc < COMBINE_AUROC or support.get(hyp.key, 0.0) < COMBINE_SUPPORT:
            continue
        if leaders and hyp.group != leaders[0].group:
            continue
        leaders.append(hyp)
        if len(leaders) == 2:
            first, second = leaders
            return Hypothesis(
                text=f"{first.text} with {second.text}",
                group=first.group,
                rationale=f"'{first.text}' and '{second.text}' both separate the groups and the texts back both",
                source=f"rules/round{round_}/combine",
            )
    return None


PHRASES_PER_ROUND = 3
"""Open-vocabulary phrases proposed per round, next to the vocabulary's proposals (:mod:`tools.reports.phrases`)."""


def phrase_hypotheses(observations: Sequence[Observation], round_: int = 0) -> list[Hypothesis]:
    """Hypotheses in the texts' own words: phrases of the descriptions and reports (negation-aware, naming no
    vocabulary finding) whose share of texts differs between the groups
    (see :func:`tools.reports.phrases.mine_phrases`)."""
    from tools.reports.phrases import mine_phrases

    texts: dict[str, list[str]] = {"A": [], "B": []}
    for obs in observations:
        if obs.kind in ("description", "reports") and obs.group in texts:
            texts[obs.group].extend(obs.texts)
    out = []
    for phrase in mine_phrases(texts["A"], texts["B"], limit=PHRASES_PER_ROUND):
        group: GroupLabel = "A" if phrase.group == "A" else "B"
        out.append(
            Hypothesis(
                text=phrase.text,
                group=group,
                rationale=f"phrase '{phrase.text}' in {phrase.share_a:.0%} of group A texts vs {phrase.share_b:.0%} "
                "of group B texts (open vocabulary)",
                source=f"rules/round{round_}/phrase",
            )
        )
    return out


def _proposed(h: Hypothesis) -> ProposedHypothesis:
    return ProposedHypothesis(text=h.text, group=h.group, rationale=h.rationale, region=h.region)
