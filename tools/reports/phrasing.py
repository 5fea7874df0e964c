"""Structured statements about findings and the sentences that express them.

A :class:`Statement` is (finding, attributes, present/absent). It renders to several clinical sentences
(templates and the vocabulary's synonyms), and it can be checked against a set of planted findings, so
training pairs, describer output and judges all share one definition of "this sentence is true of that
image". Attribute subsets are allowed: "pleural effusion" is true of a moderate right effusion, "left
pleural effusion" is false of it, and "right pleural effusion" is unknown for a bilateral one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.domain import Hypothesis
from tools.vocabulary import (
    CROP_HIDDEN_ATTRIBUTES,
    LOCATION_ATTRIBUTES,
    PLANTABLE_FINDINGS,
    describe_finding,
    get_finding,
)

POSITIVE_TEMPLATES = ("{x}", "there is {a}{x}", "{x} is present", "findings consistent with {x}", "{x} is seen")
NEGATIVE_TEMPLATES = ("no {x}", "there is no {x}", "no evidence of {x}", "without {x}", "{x} is not seen")
# Attributes that are scored as a group: a statement naming any of them must match them all.
RENDERED_ATTRIBUTES = ("side", "size", "severity", "lobe", "tip", "zone", "direction")


@dataclass(frozen=True)
class Statement:
    """A claim about one finding: present (with optional attributes) or absent."""

    finding: str
    present: bool = True
    attributes: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def attrs(self) -> dict[str, str]:
        """Attributes as a dict."""
        return dict(self.attributes)

    def phrase(self) -> str:
        """The canonical phrase, e.g. 'moderate right pleural effusion' or 'no pleural effusion'."""
        text = describe_finding(self.finding, self.attrs)
        if self.present:
            return text
        if not self.attributes:
            return get_finding(self.finding).negation
        return f"no {text}"

    def sentences(self) -> list[str]:
        """Several phrasings of the statement (templates, and synonyms when there are no attributes)."""
        base = describe_finding(self.finding, self.attrs)
        templates = POSITIVE_TEMPLATES if self.present else NEGATIVE_TEMPLATES
        out = [self.phrase()]
        head = get_finding(self.finding).phrase
        plural = head.endswith("s") and not head.endswith("sis")
        for template in templates:
            sentence = template.format(x=base, a=_article(base, head))
            if plural:
                sentence = sentence.replace("there is", "there are").replace(" is ", " are ")
            out.append(sentence)
        if not self.attributes:
            for synonym in get_finding(self.finding).synonyms[:3]:
                out.append(synonym if self.present else f"no {synonym}")
        return list(dict.fromkeys(s.strip() for s in out))

    def to_record(self) -> list[Any]:
        """JSON form ``[finding, present, {attribute: value}]`` (stored with the mini weights' statement head)."""
        return [self.finding, self.present, dict(self.attributes)]

    @classmethod
    def from_record(cls, record: Sequence[Any]) -> Statement:
        """The inverse of :meth:`to_record`."""
        finding, present, attrs = record
        return cls(str(finding), bool(present), tuple((str(k), str(v)) for k, v in dict(attrs).items()))

    def truth(self, planted: Mapping[str, Mapping[str, str]]) -> bool | None:
        """True/False when the statement is decidable for an image with ``planted`` findings, else ``None``.

        ``planted`` maps finding key -> attributes of the images' findings (one entry per finding key).
        """
        if self.finding not in planted:
            return not self.present
        actual = planted[self.finding]
        for name, value in self.attributes:
            have = actual.get(name)
            if have is None:
                return None
            if name == "side" and have == "bilateral" and value in ("left", "right"):
                return None
            if have != value:
                return not self.present if name in LOCATION_ATTRIBUTES else None
        return self.present


def _article(text: str, head: str) -> str:
    if head.endswith("s") and not head.endswith("sis"):
        return ""
    return "an " if text[:1].lower() in "aeiou" else "a "


def statements_for(finding_key: str, max_attributes: int = 2) -> list[Statement]:
    """Every statement about a finding: absent, present, and present with attribute subsets."""
    finding = get_finding(finding_key)
    names = [n for n in RENDERED_ATTRIBUTES if n in finding.attributes]
    out = [Statement(finding_key, present=False), Statement(finding_key, present=True)]
    for k in range(1, min(max_attributes, len(names)) + 1):
        for combo in itertools.combinations(names, k):
            for values in itertools.product(*(finding.attributes[n] for n in combo)):
                out.append(Statement(finding_key, True, tuple(zip(combo, values, strict=True))))
    return out


def statement_bank(findings: Iterable[str] | None = None, max_attributes: int = 2) -> list[Statement]:
    """Statements for all (or the given) findings of the vocabulary."""
    keys = list(findings) if findings is not None else list(PLANTABLE_FINDINGS)
    return [s for key in keys for s in statements_for(key, max_attributes)]


_GROUP = r"(?:group|set|cohort)\s*[ab]\b"
_CLAIM_PREFIX = re.compile(
    rf"^(?:{_GROUP}\s*(?::|has|have|shows?|contains?|demonstrates?|exhibits?|is|are)?\s*)?"
    r"(?:an?\s+)?(?:significantly\s+|slightly\s+|much\s+)?"
    r"(?:(?:higher|greater|increased|more)\s+(?:prevalence|frequency|rate|incidence|proportion|number|presence|"
    r"likelihood|amount)?\s*(?:of\s+)?|more\s+|presence\s+of\s+|evidence\s+of\s+)?",
    re.IGNORECASE,
)
_CLAIM_SUFFIX = re.compile(
    rf"(?:\s+(?:is|are)\s+(?:more|less)\s+(?:common|frequent|prevalent|often\s+seen)\b.*"
    rf"|\s+(?:in|among|than|compared\s+(?:to|with)|vs\.?|versus)\s+(?:the\s+)?{_GROUP}.*"
    r"|\s*\((?:more\s+)?(?:in\s+)?(?:group\s*)?[ab]\)"
    r"|[\s.;:,]+)$",
    re.IGNORECASE,
)


def plain_finding_phrase(text: str) -> str:
    """A claim about the groups reduced to the finding phrase a scorer can test: "Group A has a higher
    prevalence of right pleural effusion" -> "right pleural effusion"; "X is more common in group B" -> "X".
    A text that is already a plain phrase comes back stripped, unchanged otherwise."""
    original = " ".join(text.split())
    phrase = original
    for _ in range(3):  # prefix and suffix forms may nest ("Group A: more X than group B.")
        reduced = _CLAIM_SUFFIX.sub("", _CLAIM_PREFIX.sub("", phrase, count=1), count=1).strip()
        if reduced == phrase:
            break
        phrase = reduced
    return phrase if len(phrase) >= 3 else original


def crop_wording(hypothesis: Hypothesis) -> Hypothesis:
    """The hypothesis as scored on a region crop: without the attributes a crop cannot show (side, lobe, zone,
    rib, direction: the region already says where; size: the crop is magnified). Free text is unchanged."""
    if hypothesis.finding is None or not set(hypothesis.attributes) & set(CROP_HIDDEN_ATTRIBUTES):
        return hypothesis
    kept = {k: v for k, v in hypothesis.attributes.items() if k not in CROP_HIDDEN_ATTRIBUTES}
    text = describe_finding(hypothesis.finding, kept)
    return hypothesis.model_copy(update={"text": text, "attributes": kept, "contrast": None})


def annotate_hypothesis(hypothesis: Hypothesis) -> Hypothesis:
    """Fill a hypothesis' finding key and attributes from its text when they are missing and the text names
    exactly one finding of the vocabulary."""
    if hypothesis.finding is not None:
        return hypothesis
    from tools.reports.labeler import label_report

    labels = label_report(hypothesis.text)
    positive = [m for m in labels.mentions if m.status in ("positive", "uncertain")]
    if not positive or len({m.finding for m in positive}) > 1:
        return hypothesis  # no finding of the vocabulary, or several ("X with Y"): free text
    mention = positive[0]
    return hypothesis.model_copy(
        update={
            "finding": mention.finding,
            "attributes": {**mention.attributes, **hypothesis.attributes},
        }
    )
