"""A rule-based radiology report labeler: finding mentions with negation and uncertainty (NegEx/ConText style).

Pipeline, per report:

1. :func:`split_sentences` cuts the text into sentences. It copes with real report text: abbreviations
   ("Dr.", "e.g.", "vs."), decimals ("3.3 mm"), the "XXXX" anonymisation tokens of the IU reports, numbered
   lists ("1. ... 2. ..."), missing spaces ("atelectasis.Catheter") and lower-case sentence starts.
2. Mentions of the findings of :mod:`tools.vocabulary` are found per finding: every ``Finding.synonyms`` entry
   (case-insensitive, whole words, plurals, "air space" = "airspace"), plus labeler-local patterns for
   constructions a synonym list cannot express ("the heart is mildly enlarged", "lung volumes are low",
   "fracture of the right 7th rib"). A few constructions state absence by themselves and yield a
   negated mention directly ("heart size is normal", "the trachea is midline", "normal lung volumes").
   Block phrases drop false mentions ("pericardial effusion" is not a pleural effusion, "subcutaneous
   emphysema" is not hyperinflation, "mass effect" is not a mass).
3. Triggers are found per sentence: pre- and post-negation ("no", "without", "negative for", "free of",
   "clear of", "resolution of", "is not seen", "has resolved", "have been removed"), pre- and
   post-uncertainty ("may", "possible", "likely", "suggestive of", "concerning for", "questionable",
   "borderline", "versus", "cannot be excluded", "is suspected"; the IU reports' anonymised hedges "most XXXX",
   ", XXXX atelectasis", "is XXXX a hernia") and pseudo-triggers that look like
   triggers but are not ("no change in", "to suggest"). Overlapping triggers keep the longest.
4. Scope: a pre-trigger covers the mentions after it up to a terminator ("but", "however", "although",
   "which", "except", ";", ":", "with" for negation, a comma that starts a new clause such as ", the" or
   ", stable"), so lists like "no effusion, pneumothorax, or consolidation" are negated as a whole; some
   modifiers ("borderline", "possible", "questionable") only reach a few words. A post-trigger covers the
   mentions before it within its comma-free clause. The nearest applicable trigger decides the status; a
   mention that is one of the alternatives of "X or Y" / "X and/or Y" with no other trigger is uncertain.
5. Per report, a finding mentioned several times gets one status by precedence: **positive beats uncertain
   beats negated** (one positive statement anywhere means the finding is present in the report; an
   uncertain one means it is at least raised; only when every mention negates it is it negated).

Attributes (side, size, severity, lobe code, zone, atelectasis pattern, a tube's or line's tip position) are
read from the words around a mention in its clause, and kept when the vocabulary lists them for the finding
(side and lobe always, except for tubes and lines, whose side and lobe words name the airway the tip is in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from tools.untrusted import instruction_like
from tools.vocabulary import FINDINGS, LOBES, TIP_PATTERNS

Status = Literal["positive", "negated", "uncertain"]
STATUSES: tuple[Status, ...] = ("positive", "negated", "uncertain")
_PRECEDENCE: dict[str, int] = {"positive": 3, "uncertain": 2, "negated": 1}

# --------------------------------------------------------------------------------------------- sentences

ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "vs", "eg", "e.g", "ie", "i.e", "approx", "fig", "cf"})
_BOUNDARY = re.compile(r"[.!?]+(?=\s|$|[A-Z])")
_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[-*\u2022])\s+")
_PURE_MARKER = re.compile(r"^\s*\(?\d{1,2}[.)]?\s*$")


def _split_block(block: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(block):
        before = block[start : match.start()]
        token_match = re.search(r"([A-Za-z][A-Za-z.]*)$", before)
        token = token_match.group(1).lower().rstrip(".") if token_match else ""
        if token in ABBREVIATIONS:
            continue
        pieces.append(block[start : match.end()])
        start = match.end()
    pieces.append(block[start:])
    return pieces


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences (list markers stripped, empty pieces dropped)."""
    if not text or not text.strip():
        return []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[str] = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        new_item = (
            not stripped
            or _LIST_MARKER.match(line) is not None
            or re.match(r"^[A-Z][A-Z /&-]{2,}:", stripped) is not None
        )
        prev_closed = bool(current) and current[-1].rstrip().endswith((".", ":", "!", "?"))
        if current and (new_item or prev_closed):
            blocks.append(" ".join(current))
            current = []
        if stripped:
            current.append(stripped)
    if current:
        blocks.append(" ".join(current))
    sentences: list[str] = []
    for block in blocks:
        for piece in _split_block(block):
            piece = _LIST_MARKER.sub("", piece).strip()
            if not piece or _PURE_MARKER.match(piece) or not re.search(r"[A-Za-z]", piece):
                continue
            sentences.append(piece)
    return sentences


# --------------------------------------------------------------------------------------------- mentions


@dataclass(frozen=True)
class _Pattern:
    finding: str
    regex: str
    base: Status = "positive"


def _synonym_regex(synonym: str) -> str:
    words = synonym.lower().split()
    parts = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        esc = re.escape(word).replace(r"\-", r"[\s-]?")
        esc = esc.replace("airspace", r"air[\s-]?space")
        if last and re.fullmatch(r"[a-z]+", word) and len(word) > 3:
            if word.endswith("y"):
                esc = esc[:-1] + "(?:y|ies)"
            elif word.endswith("x"):  # thorax -> thoraces is listed separately; box-like plurals
                esc = esc + "(?:es)?"
            elif word.endswith("ss"):
                esc = esc + "(?:es)?"
            elif word.endswith("s"):
                pass
            else:
                esc = esc + "(?:e?s)?"
        parts.append(esc)
    return r"[\s-]+".join(parts)


_SIDE = r"(?:left|right|bilateral|both)(?:[\s-]sided)?"
_CARD_ANCHOR = (
    r"(?:heart(?!\s+failure)(?:\s+size)?|cardiac\s+(?:silhouette|size|shadow|contours?)|size\s+of\s+the\s+heart)"
)
_NORMAL = r"(?:normal|within\s+normal\s+limits|unremarkable|upper\s+limits?\s+of\s+normal|top[\s-]normal)"
_W = r"(?:[\w/-]+\s+)"  # one word and its space

# Labeler-local patterns for constructions a synonym list cannot express.
EXTRA_PATTERNS: tuple[_Pattern, ...] = (
    # cardiomegaly
    _Pattern("cardiomegaly", rf"\b{_CARD_ANCHOR}\s+{_W}{{0,4}}?(?:enlarged|enlargement|large|increased)\b"),
    _Pattern(
        "cardiomegaly", r"\bborderline\s+(?:heart\s+size|cardiac\s+(?:size|silhouette|enlargement)|cardiomegaly)\b"
    ),
    _Pattern("cardiomegaly", rf"\b{_CARD_ANCHOR}\s+{_W}{{0,3}}?borderline\b"),
    _Pattern(
        "cardiomegaly", r"\bnormal(?:[\s-]sized?)?\s+(?:heart|cardiac\s+(?:size|silhouette))(?:\s+size)?\b", "negated"
    ),
    _Pattern(
        "cardiomegaly",
        r"\bnormal\s+size\s+(?:and\s+\w+\s+(?:of\s+the\s+)?)?(?:heart|cardiac\s+silhouette)\b",
        "negated",
    ),
    _Pattern("cardiomegaly", rf"\b{_CARD_ANCHOR}\s+(?:(?!enlarg|borderline)[\w/,-]+\s+){{0,8}}?{_NORMAL}\b", "negated"),
    # pleural effusion
    _Pattern("pleural_effusion", r"\bpleural\s+fluid\s+collections?\b"),
    _Pattern("pleural_effusion", r"\bblunt(?:ed|ing)\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+)?costophrenic\s+angles?\b"),
    _Pattern(
        "pleural_effusion",
        r"\b(?:costophrenic\s+(?:angles?|sulci|recess(?:es)?|xxxx)\s+(?:are|is|appear|remain)\s+(?:\w+\s+)?"
        r"(?:sharp|clear|preserved|normal)|sharp\s+costophrenic\s+angles?)\b",
        "negated",
    ),
    # pneumothorax: synonyms suffice
    # consolidation
    _Pattern("consolidation", r"\b(?:consolidative|bronchopneumonia|pneumonias?)\b"),
    _Pattern("consolidation", r"\b(?:alveolar|lobar|focal)\s+(?:opacit(?:y|ies)|consolidations?)\b"),
    _Pattern("consolidation", r"\binfiltrat(?:es?|ion)\b"),
    # nodule: calcified nodules and granulomata are calcified granulomas (below)
    # edema
    _Pattern("pulmonary_edema", r"\b(?:pulmonary|pulmonary\s+venous|central\s+vascular)\s+congestion\b"),
    # atelectasis
    _Pattern("atelectasis", r"\batelectas[ei]s\b"),
    # lung volumes
    _Pattern("low_lung_volumes", r"\bhypoinflat(?:ed|ion)\b"),
    _Pattern(
        "low_lung_volumes", r"\b(?:low|decreased|diminished|reduced|small)\s+(?:lung\s+|inspiratory\s+)?volumes?\b"
    ),
    _Pattern(
        "low_lung_volumes",
        r"\b(?:lung|inspiratory)\s+volumes?\s+(?:\w+\s+){0,2}?(?:low|decreased|diminished|reduced)\b",
    ),
    _Pattern(
        "low_lung_volumes",
        r"\bnormal\b(?:(?!low|decreas|reduc|diminish|hypo)[^.;]){0,90}?\blung\s+volumes?\b",
        "negated",
    ),
    _Pattern(
        "low_lung_volumes",
        r"\blung\s+volumes?\s+(?:are|is|appear|remain)\s+(?:\w+\s+)?(?:normal|within\s+normal\s+limits|adequate|preserved)\b",
        "negated",
    ),
    _Pattern("hyperinflation", r"\b(?:emphysematous|hyperinflat(?:ed|ion)|hyperexpan(?:ded|sion))\b"),
    _Pattern("hyperinflation", r"\bchronic\s+obstructive\s+pulmonary\s+disease\b"),
    _Pattern(
        "hyperinflation",
        r"\bflatten(?:ed|ing)\s+(?:of\s+)?(?:the\s+)?(?:both\s+|bilateral\s+|posterior\s+)?(?:hemi)?diaphragms?\b",
    ),
    _Pattern("hyperinflation", r"\blung\s+volumes?\s+(?:are|is|appear|remain)\s+(?:\w+\s+)?(?:increased|large|high)\b"),
    # mediastinal shift
    _Pattern(
        "mediastinal_shift",
        r"\b(?:(?:cardio)?mediastinal|tracheal)\s+shift\b|\b(?:shift|deviation)\s+of\s+the\s+(?:trachea|mediastinum)\b",
    ),
    _Pattern(
        "mediastinal_shift",
        r"\b(?:the\s+)?(?:trachea|mediastinum)\s+(?:is|appears|remains)\s+(?:again\s+)?(?:in\s+the\s+)?midline\b"
        r"|\bmidline\s+trachea\b",
        "negated",
    ),
    # rib fracture
    _Pattern("rib_fracture", r"\bfractur(?:e|es|ed)\b(?:\s+[\w-]+){0,10}?\s+ribs?\b"),
    _Pattern("rib_fracture", r"\bribs?\b(?:[\s,]+[\w-]+){0,5}?\s+fractur(?:e|es|ed)\b"),
    # devices
    _Pattern("enteric_tube", r"\b(?:esophagogastric|gastric)\s+tubes?\b"),
    _Pattern(
        "central_venous_catheter",
        r"\b(?:ij|jugular|subclavian)\b(?:[\s-]+[\w-]+){0,2}?[\s-]+(?:catheters?|lines?)\b"
        r"|\b(?:port[\s-]?a[\s-]?cath|portacath(?:eter)?|mediport|power\s*port|port\s+catheter)\b"
        r"|\b(?:tunneled|(?:hemo)?dialysis|venous)\s+catheters?\b|\bswan[\s-]ganz\b",
    ),
    _Pattern("chest_tube", r"\bpleural\s+drainage\s+catheters?\b"),
    _Pattern("pacemaker", r"\b(?:cardiac\s+)?pacing\s+(?:leads?|wires?|device)\b|\bpacemakers?\b"),
    # ---- the real-radiograph vocabulary (not planted by SynthCXR)
    _Pattern(
        "enlarged_cardiomediastinum",
        r"\b(?:cardio)?mediastinal\s+(?:silhouette|contours?|shadow)\s+(?:[\w-]+\s+){0,4}?(?:enlarged|widened|wide)\b"
        r"|\bmediastinum\b(?:\s+and\s+[\w\s]{1,30}?)?\s+(?:is|are|appears?)\s+(?:\w+\s+){0,2}(?:prominent|enlarged|widened)\b",
    ),
    _Pattern(
        "enlarged_cardiomediastinum",
        r"\b(?:cardio)?mediastinal\s+(?:silhouettes?|contours?|shadow|structures),?\s+(?:(?!enlarg|widen)[\w/,-]+\s+){0,6}?"
        rf"(?:{_NORMAL}|stable|intact|appropriate)\b"
        r"|\bnormal(?:[\s-]appearing)?(?:\s+[\w-]+){0,4}?\s+(?:and\s+)?(?:cardio)?mediastinal\s+(?:and\s+\w+\s+)?"
        r"(?:silhouettes?|contours?)\b|\bunremarkable\s+(?:cardio)?mediastinal\s+(?:silhouettes?|contours?)\b"
        r"|\b(?:mediastinum|mediastinal\s+width)\s+(?:is|are|appears?)\s+(?:\w+\s+)?(?:normal|unremarkable|not\s+widened)\b"
        rf"|\bmediastinum\b(?=(?:\s+and\s+[\w\s]{{1,30}}?)\s+(?:are|appear)\s+(?:\w+\s+){{0,3}}{_NORMAL})",
        "negated",
    ),
    _Pattern(
        "calcified_granuloma",
        r"\bgranulomatous\b|\bcalcified\b(?:[\s,]+(?:and\s+)?[\w/-]+){0,3}?\s+(?:lymph\b|nod(?:e|es|ule|ules)\b)"
        r"|\bcalcified\s+(?:left\s+|right\s+|bilateral\s+)?(?:hilar|mediastinal|paratracheal)\s+xxxx\b"
        r"|\bnod(?:ule|ules)\b(?:\s+[\w-]+){0,3}?\s+(?:is|are|appears?)\s+(?:\w+\s+)?calcified\b",
    ),
    _Pattern(
        "degenerative_spine",
        r"\bdegenerative\b[^.;]{0,50}?\b(?:spine|spinal|vertebra\w*|thoracic|lumbar|endplates?|dis[ck]s?|spondyl\w*)\b"
        r"|\b(?:spine|spinal|vertebra\w*)\b[^.;]{0,30}?\bdegenerative\b|\bspondylo\w+\b|\bosteophyt\w*\b"
        r"|\bdjd\b(?=[^.;]{0,30}\bspine)"
        r"|\b(?:arthritic|arthritis|arthropathy|degeneration)\b[^.;]{0,30}?\b(?:spine|spinal|vertebra\w*|facets?)\b"
        r"|\b(?:cervical|thoracic|lumbar|thoracolumbar|spine|spinal)\s+(?:[\w-]+\s+)?(?:arthritis|arthritic|arthropathy)\b",
    ),
    _Pattern(
        "aortic_tortuosity",
        r"\b(?:tortuous|unfolded|unfolding\s+of\s+the|ectatic)\b(?:[\s,]+(?:and\s+)?[\w-]+){0,3}?\s+"
        r"(?:thoracic\s+|descending\s+)?aort(?:a|ic)\b"
        r"|\baort(?:a|ic\s+arch|ic\s+knob)\b(?:\s+[\w,]+){0,3}?\s+(?:tortuous|ectatic|unfolded)\b"
        r"|\b(?:tortuosity|unfolding|ectasia)\b(?:\s+\w+){0,5}?\s+aort"
        r"|\baort(?:a|ic)\b(?:\s+[\w,]+){0,2}?\s+and\s+(?:tortuosity|ectasia|unfolding)\b",
    ),
    _Pattern(
        "aortic_calcification",
        r"\bcalcifi(?:ed|cation|cations|c)\b(?:[\s,]+(?:and\s+|of\s+|in\s+|within\s+|the\s+)?[\w-]+){0,4}?\s+aort(?:a|ic)\b"
        r"|\baort(?:a|ic)\b(?:\s+[\w,]+){0,3}?\s+(?:calcified|calcifications?|atherosclero\w+)\b"
        r"|\batherosclerotic\b(?:\s+[\w-]+){0,4}?\s+(?:aort\w*|calcifications?)",
    ),
    _Pattern(
        "hilar_prominence",
        r"\bhil(?:a|um|ar\s+(?:contours?|structures|regions?|shadows?))\s+(?:are|is|appears?|remains?)\s+(?:\w+\s+)?"
        r"(?:prominent|enlarged|full|bulky)\b"
        r"|\bprominen(?:t|ce\s+of\s+the)\s+(?:(?:left|right|bilateral|both)\s+(?:and\s+)?){0,2}(?:peri|para)?hil\w+"
        r"|\b(?:peri|para)?hil(?:a|um|ar\s+(?:contours?|structures|regions?))\s+(?:are|is|appears?)\s+(?:\w+\s+){1,2}"
        r"(?:prominent|enlarged|full|bulky)\b",
    ),
    _Pattern(
        "hilar_prominence",
        r"\bhil(?:a|um|ar\s+(?:contours?|structures|regions?|shadows?))\s+(?:are|is|appears?)\s+(?:\w+\s+)?"
        r"(?:normal|unremarkable|within\s+normal\s+limits)\b"
        r"|\bnormal\b(?:\s+[\w-]+){0,4}?\s+(?:and\s+)?hilar\s+(?:contours?|structures|vascular\w*|vessels|regions?)\b"
        rf"|\b(?:peri)?hil(?:a|um|ar\s+(?:contours?|structures))\b(?=\s+(?:are|is|appear)\s+(?:\w+\s+){{0,3}}{_NORMAL})",
        "negated",
    ),
    _Pattern(
        "elevated_hemidiaphragm",
        r"\b(?:left|right)\s+(?:hemi)?diaphragm\s+(?:is\s+|remains\s+|appears\s+)?(?:\w+\s+)?elevated\b"
        r"|\belevat(?:ed|ion)\s+(?:of\s+)?(?:the\s+)?(?:left|right)\s+(?:hemi)?diaphragm\b"
        r"|\beventration\b",
    ),
    _Pattern(
        "pleural_thickening",
        r"\bthicken(?:ed|ing)\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+)?pleura\b|\bpleural[\s-]based\s+thickening\b"
        r"|\bpleural\s+(?:\w+\s+)?thickening\b|\b(?:bi)?apical\s+thickening\b",
    ),
    _Pattern("scarring", r"\bscar(?:s|ring|red)?\b|\bfibro(?:sis|tic)\b|\bcicatri\w+"),
    _Pattern(
        "interstitial_markings",
        r"\binterstitial\s+(?:and\s+\w+\s+)?(?:lung\s+)?(?:markings|prominence|disease|changes|pattern|thickening|"
        r"opacit(?:y|ies)|infiltrat(?:es?|ion))\b"
        r"|\b(?:interstitial|bronchovascular|lung)\s+markings\s+(?:are|is|appear)\s+(?:\w+\s+)?"
        r"(?:increased|prominent|coarse(?:ned)?|accentuated)\b",
    ),
    _Pattern(
        "osteopenia",
        r"\bnormal\s+(?:bone\s+)?(?:mineralization|bone\s+density)\b|\bbones?\s+(?:are|is)\s+(?:\w+\s+)?"
        r"(?:normally\s+mineralized|well\s+mineralized)\b",
        "negated",
    ),
    _Pattern(
        "fracture",
        r"\b(?:osseous|bony)\s+(?:structures|thorax)\s+(?:are\s+|is\s+|appear\s+)?(?:[\w-]+\s+){0,6}?"
        r"(?:intact|unremarkable|normal)\b|\bacute\s+(?:bony|osseous)\s+(?:abnormalit(?:y|ies)|findings?|injur(?:y|ies))\b"
        r"|\b(?:osseous|bony)\s+(?:structures|thorax)\b[^.;]{0,100}?\b(?:without|no)\s+(?:\w+\s+)?"
        r"(?:abnormalit|fractur|findings?)\w*",
        "negated",
    ),
    _Pattern(
        "fracture",
        r"\b(?:clavic\w*|humer\w*|scapul\w*|stern(?:um|al)|vertebra\w*|spin(?:e|al))(?:\s+(?:or|and)\s+\w+)?\s+fractur\w*",
    ),
    _Pattern("sternotomy_wires", r"\bsternotomy\b|\bsternal\s+(?:wires?|sutures?|cerclage)\b|\bpost[\s-]?cabg\b"),
    _Pattern("surgical_clips", r"\b(?:surgical|vascular|metallic)?\s*clips?\b(?!\s+art)"),
    _Pattern("hiatal_hernia", r"\bhiatal\b|\bhernia(?:tion)?\s+of\s+the\s+stomach\b"),
    _Pattern(
        "scoliosis",
        r"\bscolio\w+\b|\b(?:dextro|levo)(?:convex\w*|scolio\w*|curvature)\b"
        r"|\bcurvature\s+(?:of|involving)\s+the\s+(?:[\w-]+\s+){0,2}spine\b",
    ),
    _Pattern("kyphosis", r"\bkypho\w+\b"),
    _Pattern(
        "kyphosis",
        r"\b(?:straighten(?:ed|ing)|loss)\s+of\s+(?:the\s+)?(?:normal\s+)?(?:thoracic\s+)?kyphosis\b",
        "negated",
    ),
    _Pattern("stent", r"\bstents?\b"),
    _Pattern(
        "orthopedic_hardware",
        r"\b(?:screw|internal|plate|surgical|spinal|spine|cervical|lumbar)\s+fixation\b|\bfixation\s+(?:hardware|plates?|screws?)\b"
        r"|\borthop(?:a)?edic\s+(?:hardware|xxxx|fixation|screws?|plates?)\b"
        r"|\b(?:spinal|fixation|fusion|harrington|paraspinal)\s+rods?\b|\bscrews?\b",
    ),
)

# Phrases whose words look like a finding but are not that finding.
BLOCK_PATTERNS: dict[str, str] = {
    "pleural_effusion": r"\b(?:pericardial|joint|subpulmonic\s+pericardial)\s+effusions?\b",
    "hyperinflation": r"\b(?:subcutaneous|soft\s+tissue|mediastinal|interstitial)\s+emphysema\b",
    "mass": r"\bmass\s+effect\b",
    "pulmonary_edema": r"\b(?:soft\s+tissue|subcutaneous|chest\s+wall)\s+edema\b",
    "nodule": r"\b(?:thyroid|lymph)\s+nodules?\b|\bcalcified\s+(?:\w+\s+){0,2}?nodul\w*"
    r"|\bnodul\w*(?:\s+\w+){0,3}?\s+calcified\b|\bnipple\s+(?:shadows?|markers?)\b",
    "low_lung_volumes": r"\belevated\s+(?:left|right)\s+hemidiaphragm\b",
    "elevated_hemidiaphragm": r"\b(?:elevated\s+(?:both\s+|bilateral\s+)?hemidiaphragms"
    r"|(?:both|bilateral)\s+hemidiaphragms)\b",
    "lung_opacity": r"\b(?:bone|bony|osseous|soft[\s-]tissue|metallic|fat|mineral)\s+densit(?:y|ies)\b"
    r"|\bdensity\s+of\s+the\s+bones?\b",
    "scarring": r"\bscar\s+(?:tissue\s+)?(?:in|of)\s+the\s+(?:chest\s+wall|skin|breast)\b",
    "hiatal_hernia": r"\bno\s+hiatal\b(?!\s+hernia)",
}


@lru_cache(maxsize=1)
def _finding_patterns() -> dict[str, tuple[tuple[re.Pattern[str], Status], ...]]:
    """Compiled mention patterns per finding: composites first, then synonyms (longest first)."""
    out: dict[str, tuple[tuple[re.Pattern[str], Status], ...]] = {}
    for key, finding in FINDINGS.items():
        pats: list[tuple[re.Pattern[str], Status]] = [
            (re.compile(p.regex, re.I), p.base) for p in EXTRA_PATTERNS if p.finding == key
        ]
        synonyms = sorted({s.lower() for s in (*finding.synonyms, finding.phrase)}, key=len, reverse=True)
        alternation = "|".join(_synonym_regex(s) for s in synonyms)
        pats.append((re.compile(rf"(?<![\w-])(?:{alternation})(?![\w])", re.I), "positive"))
        out[key] = tuple(pats)
    return out


@lru_cache(maxsize=1)
def _block_patterns() -> dict[str, re.Pattern[str]]:
    return {k: re.compile(v, re.I) for k, v in BLOCK_PATTERNS.items()}


# --------------------------------------------------------------------------------------------- triggers


@dataclass(frozen=True)
class _Trigger:
    regex: str
    kind: Literal["pre_neg", "post_neg", "pre_unc", "post_unc", "both_unc", "pseudo"]
    max_words: int = 40


TRIGGERS: tuple[_Trigger, ...] = (
    # pseudo-triggers: look like triggers, are not
    _Trigger(
        r"no\s+(?:significant\s+|substantial\s+)?(?:interval\s+)?change|not\s+(?:significantly\s+)?changed|"
        r"without\s+(?:significant\s+)?(?:interval\s+)?change|no\s+increase|to\s+suggest|gram[\s-]negative|"
        r"not\s+only|not\s+necessarily|no\s+(?:significant\s+)?change\s+in",
        "pseudo",
    ),
    # negation, before the finding
    _Trigger(
        r"no\s+(?:evidence|signs?|findings?|suggestion)\s+(?:of|for)|negative\s+for|free\s+of|clear\s+of|"
        r"absence\s+of|(?:interval\s+|near[\s-]complete\s+|complete\s+)?resolution\s+of|"
        r"(?:interval\s+)?removal\s+of|no\s+longer|without|resolved|absent|no|not|never|neither|nor|"
        r"rather\s+than|ruled\s+out",
        "pre_neg",
    ),
    # negation, after the finding
    _Trigger(
        r"(?:(?:is|are|was|were)\s+)?not\s+(?:been\s+)?(?:seen|identified|visualized|visualised|present|appreciated|"
        r"demonstrated|evident|noted|detected|visible|apparent)|(?:has|have|had)\s+(?:\w+\s+)?resolved|"
        r"(?:is|are)\s+resolved|resolved(?=\s*(?:[.;,]|$))|(?:has|have|had)\s+been\s+removed|(?:was|were)\s+removed|"
        r"removed(?=\s*(?:[.;,]|$))|(?:has|have)\s+cleared|(?:is|are)\s+absent|unlikely|(?:is|are|was)\s+ruled\s+out",
        "post_neg",
    ),
    # uncertainty, short-reach modifiers
    _Trigger(r"borderline", "pre_unc", 3),
    _Trigger(
        r"questionable|possibly|probably|presumed|presumably|equivocal|indeterminate|likely|most\s+likely|"
        r"more\s+likely",
        "pre_unc",
        6,
    ),
    # the IU reports' anonymisation often replaced a hedge word by "XXXX": "most XXXX" (most likely), a clause
    # opened by ", XXXX <finding>" or ", XXXX representing" (likely), "which is XXXX a hernia"; "XXXX consistent
    # with" stays a positive reading
    _Trigger(
        r"(?:most|more)\s+xxxx|(?<=,\s)xxxx(?=\s+(?!xxxx|consistent|compatible|on\b|and\b|in\b)(?-i:[a-z]))|"
        r"(?<=\bis\s)xxxx(?=\s+(?:a|an|represent\w*)\b)",
        "pre_unc",
        6,
    ),
    # uncertainty in either direction ("possible effusion" / "effusion is possible", "X versus Y")
    _Trigger(
        r"(?:(?:is|are)\s+(?:also\s+)?)?(?:suspected|possible|probable|questioned|favou?red)|versus|vs\.?",
        "both_unc",
        6,
    ),
    # uncertainty, before the finding (clause scope)
    _Trigger(
        r"may|might|could|can\s+be|would\s+be|suspicious\s+(?:for|of)|suspect|suggests?|suggesting|"
        r"suggestive\s+of|concerning\s+for|concern\s+for|worrisome\s+for|question\s+of|"
        r"(?:cannot|can\s+not|can't|could\s+not)\s+(?:exclude|rule\s+out)|rule[\s-]out|r/o|"
        r"differential(?:\s+diagnosis)?(?:\s+considerations?)?(?:\s+(?:includes?|of))?|considerations?\s+include|"
        r"favou?ring|uncertain|representing\s+either|either|suggestion\s+of",
        "pre_unc",
    ),
    # uncertainty, after the finding
    _Trigger(
        r"(?:cannot|can\s+not|could\s+not|can't)\s+be\s+(?:entirely\s+|completely\s+|totally\s+)?"
        r"(?:excluded|ruled\s+out)|(?:(?:is|are)\s+)?not\s+(?:entirely\s+|completely\s+)?excluded|"
        r"(?:difficult|hard)\s+to\s+(?:entirely\s+|completely\s+)?exclude|\?",
        "post_unc",
        8,
    ),
)

_TERMINATOR = re.compile(
    r"[;:]|\b(?:but|however|although|though|except|apart\s+from|aside\s+from|whereas|which|otherwise)\b|"
    r"\band\s+(?:the|there|a|an)\b|,\s*(?:the|there|this|it|and\s+the|and\s+there|mild|moderate|severe|stable|"
    r"persistent|unchanged|again|chronic|old|healed|new|increased|increasing|decreased|interval|consistent|"
    r"compatible|otherwise)\b",
    re.I,
)
_NEG_TERMINATOR = re.compile(r"\bwith\b|\bfollowing\b|\bafter\b", re.I)
_PREPOSITION = re.compile(r"\b(?:with|and|of|in|on|at|to|for|from|by)\b", re.I)
_WEAK_OR = re.compile(r"\b(?:and/or|or)\b", re.I)
_WORD = re.compile(r"[\w'/-]+")


@lru_cache(maxsize=1)
def _trigger_regex() -> re.Pattern[str]:
    groups = [f"(?P<t{i}>{t.regex})" for i, t in enumerate(TRIGGERS)]
    return re.compile(r"(?<![\w-])(?:" + "|".join(groups) + r")(?![\w])" + r"|(?P<q>\?)", re.I)


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    kind: str
    max_words: int
    text: str


def _find_triggers(sentence: str) -> list[_Hit]:
    hits: list[_Hit] = []
    for m in _trigger_regex().finditer(sentence):
        name = m.lastgroup or ""
        if name == "q":
            hits.append(_Hit(m.start(), m.end(), "post_unc", 8, "?"))
            continue
        spec = TRIGGERS[int(name[1:])]
        hits.append(_Hit(m.start(), m.end(), spec.kind, spec.max_words, m.group(0)))
    return [h for h in hits if h.kind != "pseudo"]


# --------------------------------------------------------------------------------------------- attributes

_SIDE_RE = re.compile(
    r"\b(?P<side>left|right|bilateral(?:ly)?|both|bibasilar|bibasal|biapical|bilaterally)(?:[\s-]sided)?\b", re.I
)
_SIZE_WORDS = {"tiny": "small", "trace": "small", "small": "small", "moderate": "moderate", "large": "large"}
_SEVERITY_WORDS = {
    "mild": "mild",
    "mildly": "mild",
    "minimal": "mild",
    "slight": "mild",
    "slightly": "mild",
    "moderate": "moderate",
    "moderately": "moderate",
    "severe": "severe",
    "severely": "severe",
    "marked": "severe",
    "markedly": "severe",
    "massive": "severe",
}
_SIZE_RE = re.compile(r"\b(?P<w>" + "|".join(_SIZE_WORDS) + r")\b", re.I)
_SEVERITY_RE = re.compile(r"\b(?P<w>" + "|".join(_SEVERITY_WORDS) + r")\b", re.I)
_LOBE_RE = re.compile(
    r"\b(?P<lobe>(?:right|left)\s+(?:upper|middle|lower)\s+lobes?|rul|rml|rll|lul|lll|lingula(?:r)?)\b", re.I
)
_ZONE_RE = re.compile(
    r"\b(?P<zone>apex|apices|apical|upper|mid[\s-]?lung|mid|middle|lower|base|bases|basilar|basal)\b", re.I
)
_SITE_WORDS = (
    ("clavicle", r"clavic\w*"),
    ("spine", r"vertebra\w*|spine|spinal|thoracic\s+(?:spine|vertebra\w*)|lumbar|t\d{1,2}|l\d"),
    ("humerus", r"humer\w*"),
    ("scapula", r"scapul\w*"),
    ("sternum", r"stern(?:um|al)"),
    ("rib", r"ribs?"),
)
_SITE_RE = re.compile(
    r"\b(?P<site>" + "|".join(f"(?P<s{i}>{r})" for i, (_, r) in enumerate(_SITE_WORDS)) + r")\b", re.I
)
_PATTERN_RE = re.compile(r"\b(?P<pattern>linear|plate[\s-]?like|platelike|discoid|basilar|basal|bibasilar)\b", re.I)


def _lobe_code(text: str) -> str | None:
    t = " ".join(text.lower().split())
    if t.startswith("lingula"):
        return "LUL"
    if t.upper() in LOBES:
        return t.upper()
    side = "R" if t.startswith("right") else "L"
    level = {"upper": "U", "middle": "M", "lower": "L"}[t.split()[1]]
    code = f"{side}{level}L"
    return code if code in LOBES else None


def _attributes(finding: str, sentence: str, start: int, end: int) -> dict[str, str]:
    """Attributes stated in the clause segment (comma/terminator bounded) around a mention."""
    seg_start = 0
    for m in re.finditer(r"[,;:]", sentence[:start]):
        seg_start = m.end()
    term = _TERMINATOR.search(sentence, end)
    comma = re.search(r"[,;:]", sentence[end:])
    seg_end = len(sentence)
    if comma:
        seg_end = end + comma.start()
    if term and term.start() < seg_end:
        seg_end = term.start()
    seg = sentence[seg_start:seg_end]
    offset = start - seg_start
    attrs: dict[str, str] = {}

    def nearest(regex: re.Pattern[str], group: str) -> str | None:
        # modifiers precede the noun in English: the nearest word before the mention, else the nearest after
        best: tuple[int, int, str] | None = None
        for m in regex.finditer(seg):
            after = m.end() > offset
            dist = m.start() - (offset + (end - start)) if after else offset - m.end()
            key = (int(after), max(dist, 0), m.group(group))
            if best is None or key[:2] < best[:2]:
                best = key
        return best[2] if best else None

    side = nearest(_SIDE_RE, "side")
    if side:
        s = side.lower()
        attrs["side"] = s if s in ("left", "right") else "bilateral"
    lobe = nearest(_LOBE_RE, "lobe")
    if lobe:
        code = _lobe_code(lobe)
        if code:
            attrs["lobe"] = code
    size = nearest(_SIZE_RE, "w")
    if size:
        attrs["size"] = _SIZE_WORDS[size.lower()]
    severity = nearest(_SEVERITY_RE, "w")
    if severity:
        attrs["severity"] = _SEVERITY_WORDS[severity.lower()]
    zone = nearest(_ZONE_RE, "zone")
    if zone:
        z = zone.lower()
        attrs["zone"] = "upper" if z in ("apex", "apices", "apical", "upper") else "lower"
        if z.startswith("mid") or z == "middle":
            attrs["zone"] = "mid"
    pattern = nearest(_PATTERN_RE, "pattern")
    if pattern:
        p = pattern.lower().replace(" ", "-")
        attrs["pattern"] = (
            "plate-like" if p.startswith("plate") or p == "discoid" else ("linear" if p == "linear" else "basal")
        )
    if "site" in FINDINGS[finding].attributes:
        site = nearest(_SITE_RE, "site")
        if site:
            attrs["site"] = next(v for v, r in _SITE_WORDS if re.fullmatch(r, site, re.I))
    allowed = set(FINDINGS[finding].attributes) | {"side", "lobe"}
    if finding in TIP_PATTERNS:
        # a tube's or line's clause names the tip's place, whose side and lobe words ("right main bronchus",
        # "right lower lobe bronchus") belong to the airway, not to the device; the mention itself is blanked
        # so that a synonym ("orogastric tube") does not read as a tip ("gastric")
        allowed = set(FINDINGS[finding].attributes)
        clause = seg[:offset] + " " * (end - start) + seg[offset + (end - start) :]
        for value, regex in TIP_PATTERNS[finding]:
            if re.search(regex, clause, re.I):
                attrs["tip"] = value
                break
    kept = {k: v for k, v in attrs.items() if k in allowed}
    if "side" in kept and "side" in FINDINGS[finding].attributes:
        if kept["side"] not in FINDINGS[finding].attributes["side"]:
            del kept["side"]
    return kept


# --------------------------------------------------------------------------------------------- labelling


@dataclass(frozen=True)
class Mention:
    """One mention of a finding in a sentence, with its status and the attributes stated around it."""

    finding: str
    status: Status
    attributes: dict[str, str]
    sentence: str
    span: tuple[int, int]
    sentence_index: int = 0
    trigger: str | None = None

    @property
    def text(self) -> str:
        """The words of the sentence that name the finding."""
        return self.sentence[self.span[0] : self.span[1]]


@dataclass
class ReportLabels:
    """All mentions of one report and the per-finding summary (positive > uncertain > negated)."""

    sentences: list[str]
    mentions: list[Mention] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Status]:
        """Finding key -> status over the report (positive beats uncertain beats negated)."""
        return summarize(self.mentions)

    def status(self, finding: str) -> Status | None:
        """Status of ``finding`` in the report, ``None`` when it is not mentioned."""
        return self.summary.get(finding)


def summarize(mentions: list[Mention]) -> dict[str, Status]:
    """Combine mentions per finding: one positive makes it positive, else uncertain, else negated."""
    out: dict[str, Status] = {}
    for m in mentions:
        cur = out.get(m.finding)
        if cur is None or _PRECEDENCE[m.status] > _PRECEDENCE[cur]:
            out[m.finding] = m.status
    return out


def _find_mentions(sentence: str) -> list[tuple[str, int, int, Status]]:
    found: list[tuple[str, int, int, Status]] = []
    blocks = _block_patterns()
    for key, patterns in _finding_patterns().items():
        candidates = [
            (m.start(), m.end(), base)
            for regex, base in patterns
            for m in regex.finditer(sentence)
            if m.end() > m.start()
        ]
        spans: list[tuple[int, int, Status]] = []
        for start, end, base in sorted(candidates, key=lambda c: (c[0] - c[1], c[0])):  # longest first
            if not any(start < e and s < end for s, e, _ in spans):
                spans.append((start, end, base))
        block = blocks.get(key)
        blocked = [(b.start(), b.end()) for b in block.finditer(sentence)] if block else []
        for s, e, base in spans:
            if any(s < be and bs < e for bs, be in blocked):
                continue
            found.append((key, s, e, base))
    found = [m for m in found if not _explained(sentence, m, found)]
    found.sort(key=lambda x: (x[1], x[2]))
    return found


def _explained(sentence: str, mention: tuple[str, int, int, Status], found: list[tuple[str, int, int, Status]]) -> bool:
    """True when a generic finding's mention is explained: another finding's mention covers it ("nodular
    opacity" is a nodule, not a lung opacity too), or one of its specific findings is named in the same
    comma-free stretch ("perihilar opacities consistent with edema"; not "no opacity, effusion or ...")."""
    key, start, end, _ = mention
    finding = FINDINGS[key]
    if not finding.generic:
        return False
    for other, s, e, _base in found:
        if other == key:
            continue
        if s <= start and end <= e:
            return True
        if start <= s and e <= end:
            continue  # the generic mention is the longer one ("clavicle or rib fractures"): it says more
        if other in finding.explained_by and not re.search(r"[,;]", sentence[min(end, e) : max(start, s)]):
            return True
    return False


def _words_between(sentence: str, a: int, b: int) -> int:
    return len(_WORD.findall(sentence[a:b])) if b > a else 0


def _status_for(
    sentence: str, start: int, end: int, base: Status, triggers: list[_Hit], others: list[tuple[int, int]]
) -> tuple[Status, str | None]:
    """Status of the mention at ``start:end``: the nearest trigger in scope decides; ``others`` are other mentions."""
    best: tuple[int, _Hit] | None = None
    for t in triggers:
        kind = t.kind
        if t.start >= start and t.end <= end:  # inside the mention ("heart is not enlarged")
            dist = 0
        elif kind in ("pre_neg", "pre_unc", "both_unc") and t.end <= start:
            between = sentence[t.end : start]
            if _TERMINATOR.search(between):
                continue
            if kind == "pre_neg" and _NEG_TERMINATOR.search(between):
                continue
            if t.max_words <= 6 and ("," in between or _mention_between(sentence, t.end, start, others)):
                continue  # a short modifier reaches only the next mention (or an "X/Y", "X or Y" pair)
            if _words_between(sentence, t.end, start) > t.max_words:
                continue
            dist = start - t.end
        elif kind in ("post_neg", "post_unc", "both_unc") and t.start >= end:
            between = sentence[end : t.start]
            if _TERMINATOR.search(between) or "," in between:
                continue
            if t.max_words <= 6 and (
                _mention_between(sentence, end, t.start, others, forward=False) or _PREPOSITION.search(between)
            ):
                continue  # "cardiomegaly with probable X": the modifier belongs to X
            if _words_between(sentence, end, t.start) > t.max_words:
                continue
            dist = t.start - end
        else:
            continue
        if best is None or dist < best[0]:
            best = (dist, t)
    if best is not None:
        trig = best[1]
        if trig.kind.endswith("unc"):
            return "uncertain", trig.text
        if base == "negated":
            return "negated", trig.text
        return "negated", trig.text
    if base == "positive" and _is_alternative(sentence, start, end):
        return "uncertain", "or"
    return base, None


def _mention_between(sentence: str, a: int, b: int, others: list[tuple[int, int]], forward: bool = True) -> bool:
    """True when another mention lies inside ``a:b`` and is not joined to the mention by '/', 'or', 'and/or'.

    ``forward``: the mention is at ``b`` (pre-trigger at ``a``); otherwise the mention ends at ``a``.
    """
    for s0, e0 in others:
        if a < e0 <= b:
            joint = sentence[e0:b] if forward else sentence[a:s0]
            if joint.strip().lower() not in ("/", "or", "and/or"):
                return True
    return False


def _is_alternative(sentence: str, start: int, end: int) -> bool:
    """True when the mention is one side of an 'X or Y' / 'X and/or Y' alternative."""
    for m in _WEAK_OR.finditer(sentence):
        if m.start() >= end and _words_between(sentence, end, m.start()) <= 1:
            if not re.search(r"[,;]", sentence[end : m.start()]):
                return True
        if m.end() <= start and _words_between(sentence, m.end(), start) <= 3:
            if not re.search(r"[,;]", sentence[m.end() : start]):
                return True
    return False


def label_sentence(sentence: str, sentence_index: int = 0) -> list[Mention]:
    """Label one sentence: every finding mention with its status, attributes and trigger."""
    mentions = _find_mentions(sentence)
    if not mentions:
        return []
    triggers = _find_triggers(sentence)
    out: list[Mention] = []
    spans = [(s, e) for _, s, e, _ in mentions]
    for key, start, end, base in mentions:
        others = [(s, e) for s, e in spans if (s, e) != (start, end) and (e <= start or s >= end)]
        status, trigger = _status_for(sentence, start, end, base, triggers, others)
        out.append(
            Mention(
                finding=key,
                status=status,
                attributes=_attributes(key, sentence, start, end),
                sentence=sentence,
                span=(start, end),
                sentence_index=sentence_index,
                trigger=trigger,
            )
        )
    return out


def label_report(text: str) -> ReportLabels:
    """Label a report's text: sentences, mentions (with status and attributes) and the per-finding summary."""
    sentences = split_sentences(text or "")
    labels = ReportLabels(sentences=sentences)
    for i, sentence in enumerate(sentences):
        if instruction_like(sentence):  # text written to steer a model is not a finding
            continue
        labels.mentions.extend(label_sentence(sentence, i))
    return labels
