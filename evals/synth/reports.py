"""The SynthCXR report writer (FINDINGS + IMPRESSION) and a parser that reads planted findings back.

Phrasing comes from two sources. Normal and pertinent-negative sentences ("The lungs are clear.", "No
pneumothorax or pleural effusion.") are mined from the 3,955 real Indiana University reports that
torchxrayvision ships, kept only when they are safe (no comparison to prior studies, no anonymisation
tokens, no hedges or qualifiers) and used only when every finding they deny is really absent. Positive
sentences come from templates with several phrasings per finding, always carrying the planted attributes.
Sentences are recombined, so a full real report is never copied (checked against the IU texts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from evals.synth.findings import PlantedFinding
from tools.vocabulary import LOBE_NAMES, PLANTABLE_FINDINGS, TIP_PATTERNS, describe_finding

PARENCHYMAL = ("consolidation", "nodule", "mass", "pulmonary_edema", "atelectasis")
PLEURAL = ("pleural_effusion", "pneumothorax")
VOLUME = ("low_lung_volumes", "hyperinflation")
DEVICES = ("endotracheal_tube", "enteric_tube", "central_venous_catheter", "picc", "chest_tube", "pacemaker")
# common findings that get a pertinent negative when absent
PERTINENT = ("pneumothorax", "pleural_effusion", "consolidation", "cardiomegaly", "pulmonary_edema")

_UNSAFE = re.compile(
    r"xxxx|\d|prior|previous|stable|unchanged|again|interval|compar|change|since|but|however|except|although|"
    r"otherwise|limited|evaluat|suggest|may |possib|probabl|likely|mild|small|minimal|borderline|top|tortuous|"
    r"calcif|granuloma|degenerat|scar|deformit|old|healed|post|surg|sternotomy|clips|kyph|scolio|lateral|"
    r"view|chronic|emphysema|hyperexpan|hyperinfl|low lung|crowd|bilateral|obscur|specifically|remov|follow|status|"
    r"placement|resolv|new|appear|identif|seen",
    re.IGNORECASE,
)
_NEG_START = re.compile(r"^(no|there is no|there are no|without|negative for)\b", re.IGNORECASE)
_NORMAL_WORDS = re.compile(r"\b(normal|clear|unremarkable|intact|within normal limits|midline)\b", re.IGNORECASE)


def _synonym_index() -> list[tuple[str, re.Pattern[str]]]:
    pairs = []
    for key, finding in PLANTABLE_FINDINGS.items():
        for syn in finding.synonyms:
            pairs.append((key, syn))
    pairs.sort(key=lambda kv: -len(kv[1]))
    return [(key, re.compile(r"\b" + re.escape(syn.lower()) + r"s?\b")) for key, syn in pairs]


_SYNONYMS = _synonym_index()
_EXTRA_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("rib_fracture", re.compile(r"\bfracture[sd]? of the (left|right) \d+(st|nd|rd|th) rib")),
    ("rib_fracture", re.compile(r"\b(left|right) \d+(st|nd|rd|th) rib fracture")),
    ("mediastinal_shift", re.compile(r"\bmediastinum is shifted\b")),
    ("cardiomegaly", re.compile(r"\bheart is (mildly|moderately|severely) enlarged")),
]


def mentioned_findings(sentence: str) -> set[str]:
    """Vocabulary keys whose synonyms occur in ``sentence`` (negated or not)."""
    low = sentence.lower()
    found = {key for key, pat in _SYNONYMS if pat.search(low)}
    found |= {key for key, pat in _EXTRA_PATTERNS if pat.search(low)}
    if "mass effect" in low:
        found.discard("mass")
    return found


def is_negative(sentence: str) -> bool:
    """True for a pertinent negative or a normal statement (the parser skips those)."""
    s = sentence.strip()
    return bool(_NEG_START.match(s)) or bool(_NORMAL_WORDS.search(s))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.;])\s+|\n+", text) if s.strip()]


def _clean(sentence: str) -> str:
    s = " ".join(sentence.split()).strip(" .")
    return s[:1].upper() + s[1:] + "."


@lru_cache(maxsize=1)
def phrase_bank() -> dict[str, tuple[tuple[str, frozenset[str]], ...]]:
    """Safe sentences mined from the IU reports, by topic, each with the findings it requires absent."""
    from tools.reports.iu import load_iu_reports

    topics: dict[str, dict[str, frozenset[str]]] = {
        "negative": {},
        "heart": {},
        "lungs": {},
        "bones": {},
        "mediastinum": {},
        "impression": {},
    }
    for report in load_iu_reports():
        for section, text in (("findings", report.findings), ("impression", report.impression)):
            for raw in _sentences(text):
                if len(raw) < 12 or len(raw) > 140 or _UNSAFE.search(raw):
                    continue
                s = _clean(raw)
                low = s.lower()
                if re.search(r"\b[A-Z]{2,}\b", s) or len(re.findall(r"\s[A-Z]", s)) > 0 or "preop" in low:
                    continue
                mentioned = mentioned_findings(s)
                if section == "impression" and re.match(r"^(no acute|no active|normal chest)", low):
                    if not mentioned:
                        topics["impression"][s] = frozenset(k for k in PLANTABLE_FINDINGS if k not in DEVICES)
                    continue
                if _NEG_START.match(s) and mentioned and "acute" not in low:
                    topics["negative"][s] = frozenset(mentioned)
                elif mentioned or not _NORMAL_WORDS.search(s):
                    continue
                elif re.search(r"\b(heart|cardiac|cardiomediastinal)\b", low):
                    need = {"cardiomegaly", "mediastinal_shift"}
                    if "vascular" in low:
                        need.add("pulmonary_edema")
                    if re.search(r"\blungs?\b", low):
                        need.update((*PARENCHYMAL, *PLEURAL, *VOLUME))
                    topics["heart"][s] = frozenset(need)
                elif re.search(r"\blungs?\b", low) and re.search(r"\bclear\b", low):
                    topics["lungs"][s] = frozenset((*PARENCHYMAL, *PLEURAL, *VOLUME))
                elif re.search(r"\b(osseous|bony|skeletal|bones?)\b", low):
                    topics["bones"][s] = frozenset({"rib_fracture"})
                elif re.search(r"\b(mediastin|trachea)", low):
                    topics["mediastinum"][s] = frozenset({"mediastinal_shift"})
    return {k: tuple(sorted(v.items())) for k, v in topics.items()}


@lru_cache(maxsize=1)
def _iu_texts() -> frozenset[str]:
    from tools.reports.iu import load_iu_reports

    def norm(t: str) -> str:
        return " ".join(t.lower().split())

    out = set()
    for r in load_iu_reports():
        out.add(norm(r.findings))
        out.add(norm(r.impression))
        out.add(norm(r.findings + " " + r.impression))
    return frozenset(out)


# ------------------------------------------------------------------ positive templates

ADVERB = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}
ORDINAL = {"3": "3rd", "4": "4th", "5": "5th", "6": "6th", "7": "7th", "8": "8th", "9": "9th", "10": "10th"}
LEAD_WORDS = {"1": "single-lead", "2": "dual-lead", "3": "biventricular three-lead"}
NODULE_SIZE_MM = {"small": 8, "moderate": 14, "large": 22}
MASS_SIZE_CM = {"small": "3.5", "moderate": "4.5", "large": "6"}
TIP_TEXT = {
    ("endotracheal_tube", "above_carina"): ("terminates above the carina", "with the tip above the carina"),
    ("endotracheal_tube", "right_main_bronchus"): (
        "terminates in the right main bronchus",
        "with the tip in the right main bronchus",
    ),
    ("enteric_tube", "stomach"): ("terminates in the stomach", "with the tip in the stomach"),
    ("enteric_tube", "esophagus_coiled"): ("is coiled in the esophagus", "coiled in the esophagus"),
    ("enteric_tube", "bronchus"): (
        "courses into the right lower lobe bronchus",
        "with the tip in the right lower lobe bronchus",
    ),
    ("line", "low_svc"): ("terminates in the low SVC", "with the tip in the low SVC"),
    ("line", "cavoatrial_junction"): (
        "terminates at the cavoatrial junction",
        "with the tip at the cavoatrial junction",
    ),
    ("line", "too_high"): (
        "terminates too high, in the brachiocephalic vein",
        "with the tip in the brachiocephalic vein, too high",
    ),
}


def _positive(f: PlantedFinding, rng: np.random.Generator) -> str:
    a = f.resolved().attributes
    k = f.finding
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    if k == "pleural_effusion":
        side, size = a["side"], a["size"]
        if side == "bilateral":
            return pick(
                [
                    f"There are {size} bilateral pleural effusions.",
                    f"{size.capitalize()} bilateral pleural effusions with blunting of both costophrenic angles.",
                    f"Bilateral {size} pleural effusions are present.",
                ]
            )
        return pick(
            [
                f"There is a {size} {side} pleural effusion.",
                f"{size.capitalize()} {side} pleural effusion with a meniscus at the {side} base.",
                f"A {size} {side} pleural effusion is present, blunting the {side} costophrenic angle.",
                f"{side.capitalize()} pleural effusion, {size} in size.",
            ]
        )
    if k == "cardiomegaly":
        sev = a["severity"]
        return pick(
            [
                f"The heart is {ADVERB[sev]} enlarged.",
                f"{sev.capitalize()} cardiomegaly.",
                f"There is {sev} enlargement of the cardiac silhouette.",
                f"The cardiac silhouette is {ADVERB[sev]} enlarged, consistent with {sev} cardiomegaly.",
            ]
        )
    if k == "pneumothorax":
        side, size = a["side"], a["size"]
        return pick(
            [
                f"There is a {size} {side} pneumothorax with a visible pleural line.",
                f"{size.capitalize()} {side} pneumothorax.",
                f"A {side} apical pleural line with absent lung markings peripherally indicates a {size} {side} "
                "pneumothorax.",
            ]
        )
    if k == "consolidation":
        lobe = LOBE_NAMES[a["lobe"]]
        return pick(
            [
                f"There is airspace consolidation in the {lobe}.",
                f"Focal consolidation in the {lobe}, concerning for pneumonia.",
                f"Patchy airspace opacity is seen in the {lobe}, compatible with pneumonia.",
                f"{lobe.capitalize()} consolidation.",
            ]
        )
    if k in ("nodule", "mass"):
        side, zone, size = a["side"], a["zone"], a["size"]
        if k == "nodule":
            mm = NODULE_SIZE_MM[size]
            return pick(
                [
                    f"There is a {size} {mm} mm nodule in the {side} {zone} zone.",
                    f"A {size} pulmonary nodule is noted in the {side} {zone} zone, measuring about {mm} mm.",
                    f"{size.capitalize()} {side} {zone} zone nodular opacity, approximately {mm} mm.",
                ]
            )
        cm = MASS_SIZE_CM[size]
        return pick(
            [
                f"There is a {size} {side} {zone} zone mass measuring approximately {cm} cm.",
                f"A {size} lobulated mass is present in the {side} {zone} zone, about {cm} cm.",
                f"{size.capitalize()} {side} {zone} zone lung mass.",
            ]
        )
    if k == "pulmonary_edema":
        sev = a["severity"]
        return pick(
            [
                f"{sev.capitalize()} pulmonary edema with perihilar haziness and interstitial opacities.",
                f"There is {sev} interstitial edema with pulmonary vascular congestion.",
                f"Bilateral perihilar opacities consistent with {sev} pulmonary edema.",
            ]
        )
    if k == "atelectasis":
        side, pattern = a["side"], a["pattern"]
        where = "at both lung bases" if side == "bilateral" else f"at the {side} lung base"
        side_word = "bibasilar" if side == "bilateral" else side
        return pick(
            [
                f"{pattern.capitalize()} atelectasis {where}.",
                f"There is {pattern} atelectasis {where}.",
                f"{side_word.capitalize()} {pattern} atelectasis.",
            ]
        )
    if k == "low_lung_volumes":
        return pick(
            [
                "Low lung volumes with crowding of the bronchovascular markings.",
                "There are low lung volumes.",
                "Shallow inspiration with low lung volumes and elevated hemidiaphragms.",
            ]
        )
    if k == "hyperinflation":
        return pick(
            [
                "The lungs are hyperinflated with flattening of the hemidiaphragms.",
                "Hyperinflated lungs.",
                "There is hyperinflation with flattened hemidiaphragms.",
            ]
        )
    if k == "mediastinal_shift":
        d = a["direction"]
        return pick(
            [
                f"There is mediastinal shift to the {d}.",
                f"Shift of the mediastinum to the {d}.",
                f"The mediastinum is shifted to the {d}, with tracheal deviation to the {d}.",
            ]
        )
    if k == "rib_fracture":
        side, rib = a["side"], ORDINAL[a["rib"]]
        return pick(
            [
                f"Displaced fracture of the {side} {rib} rib.",
                f"There is a displaced {side} {rib} rib fracture.",
                f"Cortical step-off consistent with a fracture of the {side} {rib} rib.",
            ]
        )
    if k == "chest_tube":
        side = a["side"]
        return pick(
            [
                f"A {side} chest tube is in place.",
                f"{side.capitalize()}-sided chest tube with the tip projecting toward the {side} apex.",
                f"There is a {side} thoracostomy tube.",
            ]
        )
    if k == "pacemaker":
        leads = a["leads"]
        return pick(
            [
                f"A left-sided pacemaker with {leads} lead(s) is present.",
                f"Cardiac pacemaker with {leads} lead(s) in expected position.",
                f"{LEAD_WORDS[leads].capitalize()} pacemaker, {leads} lead(s).",
            ]
        )
    # tubes and lines with tips
    tip = a["tip"]
    text_key = (k if k in ("endotracheal_tube", "enteric_tube") else "line", tip)
    verb, with_ = TIP_TEXT[text_key]
    name = pick(
        {
            "endotracheal_tube": ["Endotracheal tube", "The endotracheal tube", "ET tube"],
            "enteric_tube": ["Enteric tube", "The nasogastric tube", "NG tube"],
            "central_venous_catheter": ["Central venous catheter", "The central line", "Right internal jugular line"],
            "picc": ["PICC line", "The PICC", "Right arm PICC"],
        }[k]
    )
    if k == "central_venous_catheter" and name.startswith("Right internal"):
        name = "Central venous catheter"
    return pick([f"{name} {verb}.", f"{name} in place {with_}."])


def _impression_item(f: PlantedFinding) -> str:
    phrase = describe_finding(f.finding, f.resolved().attributes)
    if f.finding == "rib_fracture":
        a = f.resolved().attributes
        phrase = f"displaced {a['side']} {ORDINAL[a['rib']]} rib fracture"
    if f.finding == "pacemaker":
        phrase = f"pacemaker with {f.resolved().attributes['leads']} lead(s)"
    if f.finding == "pneumothorax":
        a = f.resolved().attributes
        phrase = f"{a['size']} {a['side']} pneumothorax"
    if f.finding == "mediastinal_shift":
        phrase = f"mediastinal shift to the {f.resolved().attributes['direction']}"
    return phrase[:1].upper() + phrase[1:] + "."


def write_report(findings: Sequence[PlantedFinding], rng: np.random.Generator, view_position: str = "PA") -> str:
    """A FINDINGS + IMPRESSION report consistent with ``findings`` (with pertinent negatives)."""
    present = {f.finding for f in findings}
    bank = phrase_bank()

    def usable(topic: str) -> list[str]:
        return [s for s, need in bank[topic] if not (need & present)]

    order = {k: i for i, k in enumerate(("heart", "mediastinum", "lungs", "pleura", "devices", "bones"))}
    positives: list[tuple[int, str]] = []
    for f in findings:
        group = (
            "devices"
            if f.finding in DEVICES
            else "heart"
            if f.finding in ("cardiomegaly", "mediastinal_shift")
            else "pleura"
            if f.finding in PLEURAL
            else "bones"
            if f.finding == "rib_fracture"
            else "lungs"
        )
        positives.append((order[group], _positive(f, rng)))
    sentences = list(positives)
    for topic in ("heart", "mediastinum", "lungs", "bones"):
        options = usable(topic)
        if options and rng.random() < (0.9 if topic in ("heart", "lungs") else 0.45):
            sentences.append((order[topic], options[int(rng.integers(len(options)))]))
    # pertinent negatives for absent common findings, covered greedily by mined sentences
    missing = [k for k in PERTINENT if k not in present]
    covered: set[str] = set()
    for _, s in sentences:
        covered |= mentioned_findings(s) if is_negative(s) else set()
    if any(s for _, s in sentences if "heart" in s.lower() and is_negative(s)):
        covered.add("cardiomegaly")
    negatives = [(s, need) for s, need in bank["negative"] if not (need & present)]
    guard = 0
    while any(k not in covered for k in missing) and guard < 10:
        guard += 1
        want = [k for k in missing if k not in covered]
        good = [(s, need) for s, need in negatives if want[0] in need]
        if not good:
            if want[0] == "cardiomegaly":
                sentences.append((order["heart"], "Normal heart size."))
            else:
                sentences.append((order["lungs"], f"{PLANTABLE_FINDINGS[want[0]].negation.capitalize()}."))
            covered.add(want[0])
            continue
        s, need = good[int(rng.integers(len(good)))]
        sentences.append((order["pleura"] if need & set(PLEURAL) else order["lungs"], s))
        covered |= set(need)
    sentences.sort(key=lambda t: t[0])
    body = " ".join(s for _, s in sentences)
    abnormal = [f for f in findings if f.finding not in DEVICES]
    if abnormal or findings:
        items = [_impression_item(f) for f in sorted(findings, key=lambda f: f.finding in DEVICES)]
        impression = " ".join(f"{i + 1}. {t}" if len(items) > 1 else t for i, t in enumerate(items))
        if not abnormal and rng.random() < 0.7:
            normal = usable("impression")
            if normal:
                impression += " " + normal[int(rng.integers(len(normal)))]
    else:
        normal = usable("impression")
        impression = normal[int(rng.integers(len(normal)))] if normal else "No acute cardiopulmonary abnormality."
    text = f"FINDINGS: {body}\nIMPRESSION: {impression}"
    if " ".join(body.lower().split()) in _iu_texts():
        text = f"FINDINGS: {view_position} view of the chest. {body}\nIMPRESSION: {impression}"
    return text


# ------------------------------------------------------------------ parser

_SIDE = re.compile(r"\b(left|right|bilateral|bibasilar|both)\b")
_SIZE = re.compile(r"\b(small|moderate|large)\b")
_SEV = re.compile(r"\b(mild|moderate|severe|mildly|moderately|severely)\b")
_ZONE = re.compile(r"\b(upper|mid|lower) zone\b")
_RIB = re.compile(r"\b(left|right) (\d+)(?:st|nd|rd|th) rib\b")
_LEADS = re.compile(r"\b(\d) lead")


def _parse_attrs(key: str, s: str) -> dict[str, str]:
    out: dict[str, str] = {}
    allowed = PLANTABLE_FINDINGS[key].attributes
    if "side" in allowed:
        m = _SIDE.search(s)
        if m:
            side = {"bibasilar": "bilateral", "both": "bilateral"}.get(m.group(1), m.group(1))
            if side in allowed["side"]:
                out["side"] = side
    if "size" in allowed and (m := _SIZE.search(s)):
        out["size"] = m.group(1)
    if "severity" in allowed and (m := _SEV.search(s)):
        out["severity"] = {"mildly": "mild", "moderately": "moderate", "severely": "severe"}.get(m.group(1), m.group(1))
    if "zone" in allowed and (m := _ZONE.search(s)):
        out["zone"] = m.group(1)
    if "lobe" in allowed:
        for code, name in LOBE_NAMES.items():
            if name in s:
                out["lobe"] = code
    if "pattern" in allowed:
        for pattern in ("plate-like", "linear", "basal"):
            if pattern in s:
                out["pattern"] = pattern
                break
    if "rib" in allowed and (m := _RIB.search(s)):
        out["side"], out["rib"] = m.group(1), m.group(2)
    if "direction" in allowed and (m := re.search(r"to the (left|right)", s)):
        out["direction"] = m.group(1)
    if "leads" in allowed and (m := _LEADS.search(s)):
        out["leads"] = m.group(1)
    if "tip" in allowed:
        for tip, regex in TIP_PATTERNS[key]:
            if re.search(regex, s, re.I):
                out["tip"] = tip
                break
    return out


def parse_report(text: str) -> list[PlantedFinding]:
    """Read the positive findings (with attributes) back from a report; negatives are skipped."""
    found: dict[str, dict[str, str]] = {}
    for raw in _sentences(re.sub(r"^\s*(FINDINGS|IMPRESSION):", "", text, flags=re.M)):
        s = re.sub(r"^\d+\.\s*", "", raw).lower()
        if not s or is_negative(s):
            continue
        for key in mentioned_findings(s):
            if key == "atelectasis" and "atelectasis" not in s:
                continue
            attrs = _parse_attrs(key, s)
            found.setdefault(key, {}).update(attrs)
    return [PlantedFinding(finding=k, attributes=v) for k, v in sorted(found.items())]
