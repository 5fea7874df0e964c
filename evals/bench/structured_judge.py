""":class:`StructuredJudge` (offline, SynthDiffBench) parses a hypothesis into claims (finding, attributes,
group; negation and comparatives flip the group) with :func:`tools.reports.labeler.label_report` plus a few
judge-local paraphrase and attribute patterns, and compares them with the pair's structured truth.

Structured-judge details: a truth entry present in one group only is a *presence* difference; a finding in
both groups with different attributes is an *attribute* difference (the differing attributes are what
matters; size/severity are ordered, so "more X" / "larger X" in the right group counts); a finding in both
groups with equal attributes is not a difference. For presence differences the attributes that the
ground-truth text itself names are required (a device's tip position never is); a claim that omits a
required attribute, adds one the truth leaves open, or names one of several differences scores 1; a claim
that contradicts the side/lobe/tip/direction scores 0, one with the wrong size/severity scores 1; a claim
that puts a true difference in the wrong group makes the whole hypothesis 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from evals.bench.judges import JudgeItem, Judgement, TruthContext
from tools.domain import GroupLabel, InputError
from tools.vocabulary import LOCATION_ATTRIBUTES

ORDINAL = {
    "size": ("small", "moderate", "large"),
    "severity": ("mild", "moderate", "severe"),
}


COMPARED_ATTRS = ("side", "size", "severity", "lobe", "tip", "zone", "direction", "pattern")
LOBE_SIDE = {"RUL": "right", "RML": "right", "RLL": "right", "LUL": "left", "LLL": "left"}
_REWRITES: tuple[tuple[str, str], ...] = (
    (
        r"\bfluid (?:collection )?in the (left |right |both |bilateral )?pleural (?:space|cavit(?:y|ies))s?\b",
        r"\1pleural effusion",
    ),
    (
        r"\b(?:perihilar|interstitial|reticular|hazy perihilar)(?: interstitial)? opacit(?:y|ies)\b",
        "interstitial edema",
    ),
    (r"\bperihilar haziness\b", "perihilar haze"),
    (r"\b(?:nodular) opacit(?:y|ies)\b", "nodule"),
    (
        r"\b(?:airspace |air-space |focal |confluent |patchy |lobar |dense )*opacit(?:y|ies|ification)\b",
        "consolidation",
    ),
    (
        r"\b(?:larger|bigger|big|large|increased) (?:heart|cardiac silhouette|cardiac size|heart size)\b",
        "larger cardiomegaly",
    ),
    (r"\bheart (?:is )?(?:larger|bigger)\b", "larger cardiomegaly"),
    (r"\b(?:lobar )?collapse of the\b", "atelectasis of the"),
    (r"\bpacing (?:wires?|device)\b", "pacemaker"),
    (r"\b(?:chest|intercostal) drains?\b", "chest tube"),
    (r"\bngt\b", "ng tube"),
    (r"\bogt\b", "og tube"),
    (r"\bpneumothoraces\b", "bilateral pneumothorax"),
)


_INCREASE = re.compile(
    r"\b(more|larger|bigger|greater|increased|increasing|worse|worsening|worsened|extensive|heavier|prominent)\b", re.I
)


_DECREASE = re.compile(r"\b(less|smaller|fewer|milder|lesser|decreased|decreasing|improved|improving|reduced)\b", re.I)


@dataclass
class Claim:
    """One parsed statement of a hypothesis: finding, attributes, the group it is more in, comparative or not."""

    finding: str
    group: GroupLabel
    attributes: dict[str, str] = field(default_factory=dict)
    comparative: bool = False


def _other(group: GroupLabel) -> GroupLabel:
    return "B" if group == "A" else "A"


_BARE_OPACITY = r"\b(?:airspace |air-space |focal |confluent |patchy |lobar |dense )*opacit(?:y|ies|ification)\b"
_QUALIFIED_OPACITY = r"\b(?:airspace |air-space |focal |confluent |patchy |lobar |dense )+opacit(?:y|ies|ification)\b"


def _normalise(text: str, lung_opacity: bool = False) -> str:
    """Lower-case and rewrite paraphrases; with ``lung_opacity`` (a truth that names the vocabulary's generic
    lung opacity) a bare "opacity" stays an opacity instead of becoming consolidation."""
    out = " ".join(text.lower().replace("_", " ").split())
    for pattern, repl in _REWRITES:
        out = re.sub(_QUALIFIED_OPACITY if lung_opacity and pattern == _BARE_OPACITY else pattern, repl, out)
    return out


def parse_findings(text: str, lung_opacity: bool = False) -> list[tuple[str, bool, dict[str, str]]]:
    """Findings stated in ``text``: (finding key, present?, attributes), one entry per finding."""
    from tools.reports.labeler import label_report
    from tools.vocabulary import FINDINGS

    norm = _normalise(text, lung_opacity)
    labels = label_report(norm)
    out: dict[str, tuple[bool, dict[str, str]]] = {}
    for mention in labels.mentions:
        present = mention.status != "negated"
        attrs = {k: v for k, v in mention.attributes.items() if k in COMPARED_ATTRS}
        allowed = FINDINGS[mention.finding].attributes
        if mention.finding == "mediastinal_shift":
            attrs.pop("side", None)
            direction = re.search(r"\b(right|left)(?:ward)?\b", norm)
            if direction:
                attrs["direction"] = direction.group(1)
        elif "side" not in allowed and mention.finding != "consolidation":
            attrs.pop("side", None)
        attrs = {k: v for k, v in attrs.items() if k in allowed or k == "side"}
        if mention.finding in out:
            was_present, was_attrs = out[mention.finding]
            out[mention.finding] = (was_present or present, {**attrs, **was_attrs} if present else was_attrs)
        else:
            out[mention.finding] = (present, attrs)
    return [(key, present, attrs) for key, (present, attrs) in out.items()]


def parse_claims(text: str, group: GroupLabel, lung_opacity: bool = False) -> list[Claim]:
    """A hypothesis ("X is more in ``group``") as claims; 'no X' and 'less X' claim X for the other group."""
    norm = _normalise(text, lung_opacity)
    decrease = bool(_DECREASE.search(norm))
    increase = bool(_INCREASE.search(norm))
    claims = []
    for finding, present, attrs in parse_findings(text, lung_opacity):
        claim_group = group if present else _other(group)
        comparative = False
        if present and decrease and not increase:
            claim_group, comparative = _other(group), True
        elif present and increase:
            comparative = True
        claims.append(Claim(finding=finding, group=claim_group, attributes=attrs, comparative=comparative))
    return claims


@dataclass
class _Difference:
    finding: str
    kind: Literal["presence", "attribute"]
    group: GroupLabel  # presence: where present; attribute: the group with the larger ordinal value (if any)
    attrs: dict[str, dict[str, str]]  # group -> attributes of that group's entry
    required: dict[str, str] = field(default_factory=dict)  # presence: attributes the claim must state
    differing: tuple[str, ...] = ()  # attribute: the attributes that differ
    ordinal: str | None = None  # attribute: an ordered attribute that differs (size/severity)


def _names_lung_opacity(truth: TruthContext) -> bool:
    """True when the structured truth names the generic lung opacity (real-report suites)."""
    return any(entry.get("finding") == "lung_opacity" for entry in truth.truth or [])


def _truth_attrs(entry: dict[str, Any]) -> dict[str, str]:
    attrs = {str(k): str(v) for k, v in (entry.get("attributes") or {}).items() if k in COMPARED_ATTRS}
    if "lobe" in attrs and "side" not in attrs and attrs["lobe"] in LOBE_SIDE:
        attrs["side"] = LOBE_SIDE[attrs["lobe"]]
    return attrs


def truth_differences(truth: TruthContext) -> list[_Difference]:
    """The differences a structured truth implies (shared identical findings are not differences)."""
    if truth.truth is None:
        raise InputError("structured judge: the pair has no structured truth (use the LLM judge)")
    by_group: dict[str, dict[str, dict[str, str]]] = {"A": {}, "B": {}}
    for entry in truth.truth:
        label = str(entry.get("group"))
        if label not in by_group or not entry.get("finding"):
            raise InputError(f"structured truth entry {entry!r}: needs 'finding' and group 'A' or 'B'")
        by_group[label][str(entry["finding"])] = _truth_attrs(entry)
    opacity = _names_lung_opacity(truth)
    stated = {g: {k: a for k, _p, a in parse_findings(t, opacity)} for g, t in (("A", truth.set1), ("B", truth.set2))}
    diffs = []
    group: GroupLabel
    for finding in sorted(set(by_group["A"]) | set(by_group["B"])):
        in_a, in_b = finding in by_group["A"], finding in by_group["B"]
        if in_a and in_b:
            a, b = by_group["A"][finding], by_group["B"][finding]
            differing = tuple(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            if not differing:
                continue
            ordinal = next((k for k in differing if k in ORDINAL and k in a and k in b), None)
            group = "A"
            if ordinal is not None:
                order = ORDINAL[ordinal]
                group = "A" if order.index(a[ordinal]) > order.index(b[ordinal]) else "B"
            diffs.append(
                _Difference(finding, "attribute", group, {"A": a, "B": b}, differing=differing, ordinal=ordinal)
            )
        else:
            group = "A" if in_a else "B"
            attrs = by_group[group][finding]
            said = stated[group].get(finding, {})
            required = {k: v for k, v in attrs.items() if k != "tip" and k in said}
            if "lobe" in required and "side" in attrs:
                required["side"] = attrs["side"]
            diffs.append(_Difference(finding, "presence", group, {group: attrs}, required=required))
    return diffs


def _side_relation(claimed: str, actual: str) -> int:
    """2 same side, 1 overlapping (one side of a bilateral finding or vice versa), 0 opposite."""
    if claimed == actual:
        return 2
    if "bilateral" in (claimed, actual):
        return 1
    return 0


def _score_presence(claim: Claim, diff: _Difference) -> tuple[int, str]:
    if claim.group != diff.group:
        return -1, f"{claim.finding} is more in {diff.group}, not {claim.group}"
    actual = diff.attrs[diff.group]
    score, notes = 2, []

    def partial(note: str) -> None:
        nonlocal score
        score = min(score, 1)
        notes.append(note)

    for name, value in claim.attributes.items():
        if name not in actual:
            partial(f"adds {name}={value}")
            continue
        if name == "side":
            rel = _side_relation(value, actual[name])
            if rel == 0:
                return 0, f"wrong side ({value}, truth {actual[name]})"
            if rel == 1:
                partial(f"side {value} vs {actual[name]}")
        elif actual[name] != value:
            if name in LOCATION_ATTRIBUTES:
                return 0, f"wrong {name} ({value}, truth {actual[name]})"
            partial(f"{name} {value} vs {actual[name]}")
    missing = [k for k in diff.required if k not in claim.attributes]
    if missing:
        score = min(score, 1)
        notes.append("broader (no " + ", ".join(missing) + ")")
    return score, "; ".join(notes) or "matches"


def _score_attribute(claim: Claim, diff: _Difference) -> tuple[int, str]:
    mine, theirs = diff.attrs[claim.group], diff.attrs[_other(claim.group)]
    for name, value in claim.attributes.items():
        shared = mine.get(name)
        if name in diff.differing or shared is None or shared != theirs.get(name) or name not in LOCATION_ATTRIBUTES:
            continue
        if (_side_relation(value, shared) if name == "side" else int(value == shared) * 2) == 0:
            return 0, f"wrong {name} ({value}, truth {shared})"
    stated = [k for k in diff.differing if k in claim.attributes]
    partial = False
    for name in stated:
        value = claim.attributes[name]
        if value == mine.get(name):
            continue
        if name == "side" and _side_relation(value, mine.get(name, "")) == 1:
            partial = True
            continue
        if name in ORDINAL and name in mine and name in theirs and value != theirs[name]:
            order = ORDINAL[name]
            above = order.index(value) > order.index(theirs[name])
            if above == (order.index(mine[name]) > order.index(theirs[name])):
                partial = True  # an intermediate grade on the right side of the other group's
                continue
        return -1, f"{name}={value} belongs to group {_other(claim.group)} (truth {theirs.get(name)})"
    if stated:
        return (1 if partial else 2), "names the differing " + ", ".join(stated)
    if diff.ordinal is not None:
        if claim.group != diff.group:
            return -1, f"{claim.finding} is {diff.ordinal}-greater in {diff.group}"
        if claim.comparative:
            return 2, f"comparative {diff.ordinal} in the right group"
        return 1, f"right direction, {diff.ordinal} not named"
    return 0, f"{claim.finding} is in both groups; the difference is {', '.join(diff.differing)}"


class StructuredJudge:
    """Offline judge: parse a hypothesis into claims and compare them with the structured truth (0/1/2)."""

    name = "structured"

    def per_difference(self, text: str, group: GroupLabel, truth: TruthContext) -> tuple[list[int], str]:
        """The hypothesis' score against each difference the truth implies (in :func:`truth_differences` order),
        and a reason; a claim in the wrong direction on any of them zeroes every score."""
        diffs = truth_differences(truth)
        claims = parse_claims(text, group, _names_lung_opacity(truth))
        if not claims:
            return [0] * len(diffs), "no finding recognised"
        if not diffs:
            return [], "the groups do not differ"
        best: dict[int, tuple[int, str]] = {}
        for claim in claims:
            for i, diff in enumerate(diffs):
                if diff.finding != claim.finding:
                    continue
                score, why = (_score_presence if diff.kind == "presence" else _score_attribute)(claim, diff)
                if score < 0:
                    return [0] * len(diffs), f"wrong direction: {why}"
                if i not in best or score > best[i][0]:
                    best[i] = (score, f"{claim.finding}: {why}")
        if not best:
            return [0] * len(diffs), "names no finding that differs: " + ", ".join(sorted({c.finding for c in claims}))
        return [best[i][0] if i in best else 0 for i in range(len(diffs))], "; ".join(r for _s, r in best.values())

    def score(self, text: str, group: GroupLabel, truth: TruthContext) -> tuple[int, str]:
        """Score of one hypothesis (the RadDiff rubric: naming one of several differences scores 1) and a reason."""
        scores, reasons = self.per_difference(text, group, truth)
        if not scores:
            return 0, reasons
        if len(scores) == 1 or max(scores) == 0:
            return scores[0] if len(scores) == 1 else 0, reasons
        if all(s == 2 for s in scores):
            return 2, reasons
        return (1 if max(scores) >= 1 else 0), f"one of {len(scores)} differences: {reasons}"

    def score_difference(self, text: str, group: GroupLabel, truth: TruthContext) -> tuple[int, str]:
        """Score of one entry of a differences list: judged as one member of a set, it scores 2 when it states one
        of the true differences fully (a list of several differences names each in its own entry)."""
        scores, reasons = self.per_difference(text, group, truth)
        return (max(scores) if scores else 0), reasons

    def judge(self, items: Sequence[JudgeItem], truth: TruthContext) -> list[Judgement]:
        """One judgement per hypothesis."""
        out = []
        for item in items:
            score, reason = self.score(item.text, item.group, truth)
            out.append(Judgement(hypothesis=item.text, group=item.group, score=score, reason=reason))
        return out

    def judge_differences(self, items: Sequence[JudgeItem], truth: TruthContext) -> list[Judgement]:
        """One judgement per difference (:meth:`score_difference`)."""
        out = []
        for item in items:
            score, reason = self.score_difference(item.text, item.group, truth)
            out.append(Judgement(hypothesis=item.text, group=item.group, score=score, reason=reason))
        return out
