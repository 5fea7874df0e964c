"""Routing a chat message: a question (a new agent run), the user's own hypothesis, a zoom, or more rounds."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.domain import GroupLabel, InputError
from tools.vocabulary import REGIONS


@dataclass
class Intent:
    """What a chat message asks for."""

    kind: str  # "question" | "hypothesis" | "zoom" | "more"
    text: str = ""
    region: str | None = None
    group: GroupLabel | None = None


_REGION_WORDS = {
    "base": "lower_zone",
    "bases": "lower_zones",
    "lower zone": "lower_zone",
    "mid zone": "mid_zone",
    "upper zone": "upper_zone",
    "apex": "apex",
    "apices": "apices",
    "hilum": "hilum",
    "hila": "hila",
    "costophrenic angle": "costophrenic_angle",
    "costophrenic angles": "costophrenic_angles",
    "heart": "cardiac_silhouette",
    "cardiac silhouette": "cardiac_silhouette",
    "mediastinum": "mediastinum",
    "trachea": "trachea_carina",
    "carina": "trachea_carina",
    "diaphragm": "diaphragm",
    "abdomen": "upper_abdomen",
    "stomach": "upper_abdomen",
}


_SIDED = ("lower_zone", "mid_zone", "upper_zone", "apex", "hilum", "costophrenic_angle")
_MORE = re.compile(r"\b(more rounds?|another round|keep going|continue|go on|dig deeper)\b", re.I)
_HYPOTHESIS = re.compile(
    r"^\s*(?:please\s+)?(?:test|check|score|try)\s+(?:my\s+|the\s+|this\s+)?(?:hypothesis\s*)?(?:that\s+)?[:\-]?\s*(.+)$",
    re.I,
)


_ZOOM = re.compile(r"\b(?:look at|zoom(?: in)?(?: on| into| to)?|focus on|examine)\s+(?:the\s+)?(.+)$", re.I)
_GROUP = re.compile(r"\s*[,;(]?\s*(?:is\s+)?more\s+(?:in|common in|frequent in)\s+(?:group\s+)?([AB])\b\)?", re.I)


def region_from_text(text: str) -> str | None:
    """A region key of :data:`tools.vocabulary.REGIONS` named in free text ("left base" -> lower_zone_left)."""
    lowered = text.lower().replace("-", " ")
    for key, name in REGIONS.items():
        if key.replace("_", " ") in lowered or name in lowered:
            return key
    side = "left" if re.search(r"\bleft\b", lowered) else "right" if re.search(r"\bright\b", lowered) else None
    for word in sorted(_REGION_WORDS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(word)}\b", lowered):
            base = _REGION_WORDS[word]
            if base in _SIDED:
                if side is None:
                    plural = {"apex": "apices", "hilum": "hila", "lower_zone": "lower_zones"}
                    return plural.get(base, f"{base}s" if f"{base}s" in REGIONS else None)
                return f"{base}_{side}"
            return base
    return None


def route_message(text: str) -> Intent:
    """Route a chat message: more rounds, test a hypothesis, zoom into a region, or a new question."""
    message = text.strip()
    if not message:
        raise InputError("message: empty")
    if _MORE.search(message) and len(message) < 80:
        return Intent(kind="more", text=message)
    match = _HYPOTHESIS.match(message)
    if match:
        claim = match.group(1).strip().rstrip("?.! ")
        group_match = _GROUP.search(claim)
        group: GroupLabel | None = None
        if group_match:
            group = "A" if group_match.group(1).upper() == "A" else "B"
            claim = (claim[: group_match.start()] + claim[group_match.end() :]).strip().rstrip(",;")
        if claim:
            return Intent(kind="hypothesis", text=claim, group=group)
    match = _ZOOM.search(message)
    if match:
        region = region_from_text(match.group(1))
        if region is not None:
            return Intent(kind="zoom", text=message, region=region)
    return Intent(kind="question", text=message)
