"""Reading and searching radiology reports: sections, keyword and semantic search, finding tables.

* :func:`split_sections` cuts a report into FINDINGS, IMPRESSION and the rest (IU style "FINDINGS: ...",
  MIMIC style capitalised headers with or without a colon, or no headers at all).
* :func:`read_reports` returns the sections of given studies; :func:`keyword_search` and
  :func:`semantic_search` (offline MiniLM sentence embeddings, cosine) find report sentences.
* :func:`tabulate_findings` labels every report of a comparison with :mod:`tools.reports.labeler` and counts, per
  group and finding, how many studies mention it as positive, negated, uncertain, or not at all.
* Report text is untrusted input: :mod:`tools.untrusted` quotes it for prompts as data that can never change
  the agent's instructions.

Only FINDINGS and IMPRESSION are searched and labelled (an INDICATION such as "rule out pneumonia" says
nothing about the image). A report with no headers counts as findings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tools.domain import Comparison, GroupLabel, InputError, Study, StudySet
from tools.reports.labeler import ReportLabels, Status, label_report, split_sentences
from tools.untrusted import instruction_like
from tools.vocabulary import FINDINGS

if TYPE_CHECKING:
    from tools.embeddings.text_encoder import MiniLMEncoder

SectionName = Literal["findings", "impression", "other"]
BODY_SECTIONS: tuple[SectionName, ...] = ("findings", "impression")

_FINDINGS_HEADERS = ("FINDINGS", "FINDING", "REPORT", "BODY")
_IMPRESSION_HEADERS = ("IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS", "OPINION", "SUMMARY", "DIAGNOSIS")
_OTHER_HEADERS = (
    "INDICATION",
    "INDICATIONS",
    "HISTORY",
    "CLINICAL HISTORY",
    "CLINICAL INFORMATION",
    "CLINICAL INDICATION",
    "REASON FOR EXAM",
    "REASON FOR EXAMINATION",
    "REASON FOR STUDY",
    "TECHNIQUE",
    "COMPARISON",
    "COMPARISONS",
    "EXAMINATION",
    "EXAM",
    "PROCEDURE",
    "FINAL REPORT",
    "WET READ",
    "NOTIFICATION",
    "RECOMMENDATION",
    "RECOMMENDATIONS",
    "ADDENDUM",
    "ATTESTATION",
    "PA AND LATERAL CHEST",
)
_ALL_HEADERS = sorted((*_FINDINGS_HEADERS, *_IMPRESSION_HEADERS, *_OTHER_HEADERS), key=len, reverse=True)
_HEADER_ALT = "|".join(h.replace(" ", r"\s+") for h in _ALL_HEADERS)
# "FINDINGS:" anywhere (any case, with colon), or a line that is only a capitalised header (no colon).
_HEADER_RE = re.compile(rf"(?:(?<![\w])(?P<h1>{_HEADER_ALT})\s*:)|(?:^[ \t]*(?P<h2>{_HEADER_ALT})[ \t]*$)", re.I | re.M)


@dataclass(frozen=True)
class ReportSections:
    """A report cut into FINDINGS, IMPRESSION and everything else (indication, comparison, technique...)."""

    findings: str
    impression: str
    other: str

    @property
    def body(self) -> str:
        """FINDINGS then IMPRESSION: the part of a report that describes the image."""
        return "\n".join(p for p in (self.findings, self.impression) if p)


def _section_of(header: str) -> SectionName:
    name = " ".join(header.upper().split())
    if name in _FINDINGS_HEADERS:
        return "findings"
    if name in _IMPRESSION_HEADERS:
        return "impression"
    return "other"


def split_sections(text: str | None) -> ReportSections:
    """Split report text into findings, impression and other; a report with no headers is all findings."""
    if not text or not text.strip():
        return ReportSections("", "", "")
    matches = []
    for m in _HEADER_RE.finditer(text):
        header = m.group("h1") or m.group("h2") or ""
        if m.group("h2") and header != header.upper():
            continue  # a header without a colon must be in capitals ("Findings" alone is a word)
        matches.append((m.start(), m.end(), _section_of(header)))
    if not matches:
        return ReportSections(_clean(text), "", "")
    parts: dict[SectionName, list[str]] = {"findings": [], "impression": [], "other": []}
    preamble = text[: matches[0][0]]
    if preamble.strip():
        parts["other"].append(preamble)
    for i, (_, end, section) in enumerate(matches):
        stop = matches[i + 1][0] if i + 1 < len(matches) else len(text)
        chunk = text[end:stop]
        if chunk.strip():
            parts[section].append(chunk)
    return ReportSections(*(_clean("\n".join(parts[s])) for s in ("findings", "impression", "other")))


def _clean(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.replace("\r", "\n").split("\n")]
    return "\n".join(line for line in lines if line).strip()


@lru_cache(maxsize=8192)
def _labels_for(body: str) -> ReportLabels:
    return label_report(body)


def report_labels(study: Study) -> ReportLabels | None:
    """Labeler output for the study's FINDINGS + IMPRESSION (``None`` when the study has no report text)."""
    body = split_sections(study.report).body
    return _labels_for(body) if body else None


def report_sentences(study: Study, sections: Iterable[SectionName] = BODY_SECTIONS) -> list[tuple[SectionName, str]]:
    """The sentences of the study's report in ``sections``, each with its section name; sentences written to
    steer a model (:func:`tools.untrusted.instruction_like`) are not report content and are left out."""
    parts = split_sections(study.report)
    out: list[tuple[SectionName, str]] = []
    for section in sections:
        out.extend((section, s) for s in split_sentences(getattr(parts, section)) if not instruction_like(s))
    return out


# --------------------------------------------------------------------------------------------- reading


class ReportView(BaseModel):
    """The report of one study, split into sections (report text is untrusted: quote it in prompts)."""

    model_config = ConfigDict(extra="forbid")

    study_id: str
    group: GroupLabel | None = None
    has_report: bool
    findings: str = ""
    impression: str = ""
    other: str = ""
    labels: dict[str, Status] = Field(default_factory=dict, description="Finding -> status (labeler summary).")


StudiesLike = Comparison | StudySet | Sequence[Study]


def _iter_studies(studies: StudiesLike) -> list[tuple[GroupLabel | None, Study]]:
    if isinstance(studies, Comparison):
        return [(g, s) for g, s in studies.all_studies()]
    if isinstance(studies, StudySet):
        return [(None, s) for s in studies.studies]
    return [(None, s) for s in studies]


def read_reports(studies: StudiesLike, ids: Sequence[str]) -> list[ReportView]:
    """Return the sections (and labeler summary) of the reports of the studies ``ids``, in that order."""
    if isinstance(ids, str):
        ids = [ids]
    index = {s.study_id: (g, s) for g, s in _iter_studies(studies)}
    missing = [i for i in ids if i not in index]
    if missing:
        raise InputError(f"study {missing[0]!r} not found ({len(missing)} unknown id(s))")
    out = []
    for study_id in ids:
        group, study = index[study_id]
        parts = split_sections(study.report)
        labels = report_labels(study)
        out.append(
            ReportView(
                study_id=study_id,
                group=group,
                has_report=bool(study.report and study.report.strip()),
                findings=parts.findings,
                impression=parts.impression,
                other=parts.other,
                labels=labels.summary if labels else {},
            )
        )
    return out


# --------------------------------------------------------------------------------------------- search


class SearchHit(BaseModel):
    """A report sentence that matched a search."""

    model_config = ConfigDict(extra="forbid")

    study_id: str
    group: GroupLabel | None = None
    section: str
    sentence: str
    score: float | None = Field(default=None, description="Cosine similarity (semantic search only).")


def _check_group(studies: StudiesLike, group: GroupLabel | None) -> None:
    if group is not None and not isinstance(studies, Comparison):
        raise InputError("group= needs a Comparison (a study set or list has no groups)")
    if group is not None and group not in ("A", "B"):
        raise InputError(f"group must be 'A' or 'B', got {group!r}")


def keyword_search(
    studies: StudiesLike,
    query: str,
    *,
    group: GroupLabel | None = None,
    max_results: int = 50,
    sections: Iterable[SectionName] = BODY_SECTIONS,
) -> list[SearchHit]:
    """Report sentences that contain ``query`` (case-insensitive, from a word start, spaces flexible).

    A query of several words matches them as a phrase ("pleural effusion" also finds "pleural effusions").
    """
    words = query.split()
    if not words:
        raise InputError("keyword search: empty query")
    if max_results < 1:
        raise InputError(f"keyword search: max_results must be >= 1, got {max_results}")
    _check_group(studies, group)
    pattern = re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words), re.I)
    hits: list[SearchHit] = []
    section_list = tuple(sections)
    for g, study in _iter_studies(studies):
        if group is not None and g != group:
            continue
        for section, sentence in report_sentences(study, section_list):
            if pattern.search(sentence):
                hits.append(SearchHit(study_id=study.study_id, group=g, section=section, sentence=sentence))
                if len(hits) >= max_results:
                    return hits
    return hits


def semantic_search(
    studies: StudiesLike,
    query: str,
    top_k: int = 10,
    *,
    group: GroupLabel | None = None,
    encoder: MiniLMEncoder | None = None,
    sections: Iterable[SectionName] = BODY_SECTIONS,
    one_per_study: bool = False,
) -> list[SearchHit]:
    """The ``top_k`` report sentences closest in meaning to ``query`` (MiniLM embeddings, cosine), best first."""
    if not query.strip():
        raise InputError("semantic search: empty query")
    if top_k < 1:
        raise InputError(f"semantic search: top_k must be >= 1, got {top_k}")
    _check_group(studies, group)
    rows: list[tuple[GroupLabel | None, str, SectionName, str]] = []
    section_list = tuple(sections)
    for g, study in _iter_studies(studies):
        if group is not None and g != group:
            continue
        rows.extend((g, study.study_id, sec, sent) for sec, sent in report_sentences(study, section_list))
    if not rows:
        return []
    if encoder is None:
        from tools.embeddings.text_encoder import load_minilm

        encoder = load_minilm()
    sentence_vecs = encoder.encode([r[3] for r in rows])
    query_vec = encoder.encode([query])[0]
    sims = sentence_vecs @ query_vec
    order = np.argsort(-sims, kind="stable")
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for i in order:
        g, study_id, sec, sent = rows[int(i)]
        if one_per_study and study_id in seen:
            continue
        seen.add(study_id)
        hits.append(SearchHit(study_id=study_id, group=g, section=sec, sentence=sent, score=float(sims[int(i)])))
        if len(hits) >= top_k:
            break
    return hits


# --------------------------------------------------------------------------------------------- tables


class GroupFindingCounts(BaseModel):
    """How the studies of one group mention one finding."""

    model_config = ConfigDict(extra="forbid")

    n_reports: int = Field(description="Studies of the group with report text (the denominator).")
    positive: int = 0
    negated: int = 0
    uncertain: int = 0
    not_mentioned: int = 0

    def fraction(self, status: Status | Literal["not_mentioned"]) -> float:
        """Fraction of the group's reported studies with that status (0 when the group has no reports)."""
        count = getattr(self, status)
        return count / self.n_reports if self.n_reports else 0.0


class FindingRow(BaseModel):
    """One finding in both groups, and the difference of its positive fractions (A minus B)."""

    model_config = ConfigDict(extra="forbid")

    finding: str
    phrase: str
    a: GroupFindingCounts
    b: GroupFindingCounts

    @property
    def positive_difference(self) -> float:
        """Fraction positive in A minus fraction positive in B."""
        return self.a.fraction("positive") - self.b.fraction("positive")

    @property
    def mentioned_difference(self) -> float:
        """Fraction positive-or-uncertain in A minus the same in B."""
        fa = self.a.fraction("positive") + self.a.fraction("uncertain")
        fb = self.b.fraction("positive") + self.b.fraction("uncertain")
        return fa - fb


class FindingsTable(BaseModel):
    """Per-finding mention counts of two groups; rows sorted by the size of the positive difference."""

    model_config = ConfigDict(extra="forbid")

    set_a_name: str
    set_b_name: str
    n_a: int
    n_b: int
    n_a_reports: int
    n_b_reports: int
    rows: list[FindingRow] = Field(default_factory=list)

    def row(self, finding: str) -> FindingRow:
        """The row of ``finding`` (KeyError when it is not in the table)."""
        for r in self.rows:
            if r.finding == finding:
                return r
        raise KeyError(f"finding {finding!r} not in the table")

    def to_markdown(self, max_rows: int | None = None) -> str:
        """The table as Markdown: positive / uncertain / negated fractions per group and the difference."""
        head = (
            f"| finding | {self.set_a_name} pos | unc | neg | {self.set_b_name} pos | unc | neg | diff pos (A-B) |\n"
            "|---|---|---|---|---|---|---|---|"
        )
        lines = [head]
        for r in self.rows[: max_rows or len(self.rows)]:
            cells = [
                f"{r.a.fraction('positive'):.0%}",
                f"{r.a.fraction('uncertain'):.0%}",
                f"{r.a.fraction('negated'):.0%}",
                f"{r.b.fraction('positive'):.0%}",
                f"{r.b.fraction('uncertain'):.0%}",
                f"{r.b.fraction('negated'):.0%}",
                f"{r.positive_difference:+.0%}",
            ]
            lines.append(f"| {r.phrase} | " + " | ".join(cells) + " |")
        a_part = f"{self.set_a_name} {self.n_a_reports}/{self.n_a}"
        lines.append(f"(reports: {a_part}, {self.set_b_name} {self.n_b_reports}/{self.n_b})")
        return "\n".join(lines)


def _group_counts(group: StudySet, findings: Sequence[str]) -> dict[str, GroupFindingCounts]:
    summaries = [lab.summary for s in group.studies if (lab := report_labels(s)) is not None]
    n = len(summaries)
    out = {}
    for key in findings:
        statuses = [summary.get(key) for summary in summaries]
        out[key] = GroupFindingCounts(
            n_reports=n,
            positive=statuses.count("positive"),
            negated=statuses.count("negated"),
            uncertain=statuses.count("uncertain"),
            not_mentioned=statuses.count(None),
        )
    return out


def tabulate_findings(comparison: Comparison, findings: Sequence[str] | None = None) -> FindingsTable:
    """Count per group how many reported studies mention each finding as positive / negated / uncertain / not.

    Studies without report text are left out of the denominators (their number is in ``n_*_reports``).
    Rows are sorted by the absolute difference of the positive fractions, largest first.
    """
    keys = list(findings) if findings is not None else list(FINDINGS)
    unknown = [k for k in keys if k not in FINDINGS]
    if unknown:
        raise InputError(f"unknown finding {unknown[0]!r}; known: {', '.join(sorted(FINDINGS))}")
    if not (comparison.set_a.has_reports or comparison.set_b.has_reports):
        raise InputError("no study of either group has report text; nothing to tabulate")
    counts_a = _group_counts(comparison.set_a, keys)
    counts_b = _group_counts(comparison.set_b, keys)
    rows = [FindingRow(finding=k, phrase=FINDINGS[k].phrase, a=counts_a[k], b=counts_b[k]) for k in keys]
    rows.sort(key=lambda r: (-abs(r.positive_difference), -abs(r.mentioned_difference), r.finding))
    n_a_reports = next(iter(counts_a.values())).n_reports if counts_a else 0
    n_b_reports = next(iter(counts_b.values())).n_reports if counts_b else 0
    return FindingsTable(
        set_a_name=comparison.set_a.name,
        set_b_name=comparison.set_b.name,
        n_a=len(comparison.set_a),
        n_b=len(comparison.set_b),
        n_a_reports=n_a_reports,
        n_b_reports=n_b_reports,
        rows=rows,
    )
