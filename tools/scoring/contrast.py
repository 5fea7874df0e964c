"""Contrast prompts for negation-aware scoring: what a hypothesis' absence looks like ("no pleural effusion").

CheXzero-style scorers score a hypothesis by the softmax over (prompt, contrast prompt); the contrast comes from
the finding vocabulary where the hypothesis names a finding.
"""

from __future__ import annotations

import re

from tools.domain import Hypothesis, InputError

_NEGATION_PREFIX = re.compile(r"^(?:no|without|absence of|absent|not|negative for|free of)\s+(.+)$")
_POSITIVE_PREFIX = re.compile(
    r"^(?:(?:the\s+)?presence of|evidence of|there is|there are|signs? of|findings? of|an?|the|more|increased|"
    r"greater|larger|higher)\s+(.+)$"
)
_ATTRIBUTE_WORDS = {
    "left",
    "right",
    "bilateral",
    "small",
    "moderate",
    "large",
    "mild",
    "severe",
    "trace",
    "new",
    "worsening",
}


def _clean(text: str) -> str:
    return " ".join(text.lower().replace(".", " ").split())


def contrast_prompt(text: str, finding: str | None = None) -> str:
    """The contrast prompt of a hypothesis for negation-aware scoring: what its absence looks like.

    A known finding key (from :mod:`tools.vocabulary`) gives the finding's pertinent negative ("normal heart
    size" for cardiomegaly); a negated phrase gives its positive ("no pneumothorax" -> "pneumothorax"); a
    phrase that names a vocabulary finding (possibly with side/size words) gives that finding's negative;
    anything else gets "no <phrase>".
    """
    from tools.vocabulary import FINDINGS

    if finding is not None and finding in FINDINGS:
        return FINDINGS[finding].negation
    cleaned = _clean(text)
    if not cleaned:
        raise InputError("hypothesis text: empty, no contrast prompt can be made")
    for item in FINDINGS.values():
        if cleaned == _clean(item.negation):
            return item.phrase
    negated = _NEGATION_PREFIX.match(cleaned)
    if negated:
        return negated.group(1)
    core = cleaned
    while True:
        stripped = _POSITIVE_PREFIX.match(core)
        if not stripped:
            break
        core = stripped.group(1)
    words = [w for w in core.split() if w not in _ATTRIBUTE_WORDS]
    bare = " ".join(words)
    for item in FINDINGS.values():
        if bare in {_clean(s) for s in (item.phrase, *item.synonyms)}:
            return item.negation
    return f"no {core}"


def contrast_for(hypothesis: Hypothesis | str) -> str:
    """The contrast prompt of a hypothesis: its own ``contrast`` when given, else :func:`contrast_prompt`."""
    if isinstance(hypothesis, str):
        return contrast_prompt(hypothesis)
    if hypothesis.contrast:
        return hypothesis.contrast
    return contrast_prompt(hypothesis.text, hypothesis.finding)
