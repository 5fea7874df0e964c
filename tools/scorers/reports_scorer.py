"""Report-text scorer: scores each study against hypotheses from its report, not its image.

For one hypothesis and one study, every sentence of the report's FINDINGS and IMPRESSION is compared with
the hypothesis by MiniLM cosine similarity, and the labeler (:mod:`tools.reports.labeler`) corrects what a sentence
embedding gets wrong, negation:

* The hypothesis is labelled too. Findings it asserts ("pleural effusion") are *wanted present*; findings
  it negates ("no pleural effusion") are *wanted absent*.
* A sentence that states the opposite (negates a wanted-present finding, or asserts a wanted-absent one)
  *contradicts* the hypothesis: it does not count as support however similar its words are.
* A sentence that agrees by label supports it at its similarity; an uncertain mention of a wanted-present
  finding supports it at ``uncertain_weight`` times its similarity.
* A sentence that affirms a wanted-present finding with another value of an attribute the hypothesis states
  (:data:`EXCLUSIVE_ATTRIBUTES`: "left pleural effusion" for "right pleural effusion", "small" for "large")
  contradicts it too: it describes the finding, and not as the hypothesis does. Without this a report-only
  run cannot tell a right-sided cohort from a left-sided one (their sentences are equally similar).
* Study score = best support - best contradiction, where the contradiction term is dropped when some
  sentence agrees by label (one positive statement settles it, as in the labeler's report summary).

With a contrast prompt (e.g. "no pleural effusion" for "pleural effusion") the score is
``score(hypothesis) - score(contrast)``. Hypotheses that name no vocabulary finding get the best similarity
of the sentences that do not negate them. Studies without report text are returned as skipped (NaN rows),
never scored 0, so a comparison can run on report-only data and image and report evidence can be compared.

Free-text hypotheses (an open-vocabulary phrase, :mod:`tools.reports.phrases`) are negation-aware too: a sentence that
names the phrase's words in a negated clause ("no shunt tubing") contradicts it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from tools.domain import InputError, SkippedItem, Study
from tools.reports.labeler import Mention, label_report, label_sentence
from tools.reports.search import report_sentences

if TYPE_CHECKING:
    from tools.embeddings.text_encoder import MiniLMEncoder

log = logging.getLogger(__name__)

REPORTS_MODEL_ID = "reports-minilm"
EXCLUSIVE_ATTRIBUTES = ("side", "size", "severity", "lobe")
"""Attributes whose values exclude one another for one mention of a finding (a right-sided mention is not a left
one; 'bilateral' is a value of its own)."""


@dataclass(frozen=True)
class _HypothesisLabels:
    present: frozenset[str]
    absent: frozenset[str]
    phrase: str = ""
    phrase_negated: bool = False
    attributes: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    """Per present finding, the exclusive attributes (:data:`EXCLUSIVE_ATTRIBUTES`) the hypothesis states."""

    def conflicts(self, mention: Mention) -> bool:
        """True when a mention of a wanted-present finding states another value of an attribute the hypothesis
        states."""
        wanted = dict(dict(self.attributes).get(mention.finding, ()))
        return any(k in mention.attributes and mention.attributes[k] != v for k, v in wanted.items())


_NEGATED_PHRASE = re.compile(r"^\s*(?:no|without|absence\s+of)\s+", re.I)


def _hypothesis_labels(text: str) -> _HypothesisLabels:
    labels = label_report(text)
    summary = labels.summary
    phrase = _NEGATED_PHRASE.sub("", text).strip()
    present = frozenset(k for k, v in summary.items() if v != "negated")
    attributes: dict[str, dict[str, str]] = {}
    for m in labels.mentions:
        if m.finding in present and m.status != "negated":
            stated = attributes.setdefault(m.finding, {})
            stated.update({k: v for k, v in m.attributes.items() if k in EXCLUSIVE_ATTRIBUTES})
    return _HypothesisLabels(
        present=present,
        absent=frozenset(k for k, v in summary.items() if v == "negated"),
        phrase=phrase,
        phrase_negated=phrase != text.strip(),
        attributes=tuple(sorted((k, tuple(sorted(v.items()))) for k, v in attributes.items() if v)),
    )


@lru_cache(maxsize=65536)
def _negates(sentence: str, phrase: str) -> bool:
    from tools.reports.phrases import negates

    return negates(sentence, phrase)


class ReportTextScorer:
    """Score studies against hypothesis texts from their reports (negation-aware MiniLM sentence similarity)."""

    def __init__(
        self,
        encoder: MiniLMEncoder | None = None,
        device: str = "cpu",
        uncertain_weight: float = 0.6,
        batch_size: int = 64,
    ) -> None:
        if not 0.0 <= uncertain_weight <= 1.0:
            raise InputError(f"uncertain_weight must be in [0, 1], got {uncertain_weight}")
        self._encoder = encoder
        self.device = device
        self.uncertain_weight = uncertain_weight
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        """Identifier of this scorer, for run records and caches."""
        return REPORTS_MODEL_ID

    @property
    def encoder(self) -> MiniLMEncoder:
        """The MiniLM encoder (the packaged one, loaded on first use, unless one was given)."""
        if self._encoder is None:
            from tools.embeddings.text_encoder import load_minilm

            self._encoder = load_minilm(self.device)
        return self._encoder

    def score(
        self,
        studies: Sequence[Study],
        hypotheses: list[str],
        contrasts: list[str | None] | None = None,
    ) -> tuple[np.ndarray, list[SkippedItem]]:
        """Return an ``(N, H)`` float32 score matrix (NaN rows for skipped studies) and the skipped studies."""
        if not hypotheses:
            raise InputError("report scorer: no hypotheses to score")
        if any(not h or not h.strip() for h in hypotheses):
            raise InputError("report scorer: empty hypothesis text")
        if contrasts is not None and len(contrasts) != len(hypotheses):
            raise InputError(f"report scorer: {len(contrasts)} contrast prompts for {len(hypotheses)} hypotheses")
        n, h = len(studies), len(hypotheses)
        scores = np.full((n, h), np.nan, dtype=np.float32)
        skipped: list[SkippedItem] = []
        per_study: list[tuple[int, list[str]]] = []
        for i, study in enumerate(studies):
            sentences = [s for _, s in report_sentences(study)]
            if not sentences:
                reason = "no report text" if not (study.report and study.report.strip()) else "report has no findings"
                skipped.append(SkippedItem(item=study.study_id, reason=f"report scorer: {reason}"))
                continue
            per_study.append((i, sentences))
        if not per_study:
            return scores, skipped
        texts = list(hypotheses) + [c for c in (contrasts or []) if c]
        unique_sentences = sorted({s for _, sents in per_study for s in sents})
        vectors = self.encoder.encode(unique_sentences + texts, batch_size=self.batch_size)
        sent_index = {s: k for k, s in enumerate(unique_sentences)}
        sent_vecs = vectors[: len(unique_sentences)]
        text_vecs = {t: vectors[len(unique_sentences) + k] for k, t in enumerate(texts)}
        mention_cache = {s: label_sentence(s) for s in unique_sentences}
        targets = [(hyp, (contrasts[j] if contrasts else None)) for j, hyp in enumerate(hypotheses)]
        labels = {t: _hypothesis_labels(t) for pair in targets for t in pair if t}
        for i, sentences in per_study:
            rows = [sent_index[s] for s in sentences]
            mentions = [mention_cache[s] for s in sentences]
            for j, (hyp, contrast) in enumerate(targets):
                value = self._one(sent_vecs[rows], mentions, text_vecs[hyp], labels[hyp], sentences)
                if contrast:
                    value -= self._one(sent_vecs[rows], mentions, text_vecs[contrast], labels[contrast], sentences)
                scores[i, j] = value
        return scores, skipped

    def _one(
        self,
        sent_vecs: np.ndarray,
        mentions: list[list[Mention]],
        text_vec: np.ndarray,
        hyp: _HypothesisLabels,
        sentences: Sequence[str],
    ) -> float:
        sims = sent_vecs @ text_vec
        if not hyp.present and not hyp.absent:
            # free text: a sentence that negates the phrase contradicts it (see tools.reports.phrases.negates); for a
            # negated phrase ("no shunt tubing") the negating sentences are the support
            negated = [_negates(sentence, hyp.phrase) for sentence in sentences]
            agree = [sim for sim, neg in zip(sims.tolist(), negated, strict=True) if neg == hyp.phrase_negated]
            against = [sim for sim, neg in zip(sims.tolist(), negated, strict=True) if neg != hyp.phrase_negated]
            best = max(agree) if agree else 0.0
            return float(best - max(against)) if not agree else float(best)
        support: list[float] = []
        contradiction: list[float] = []
        agreed = False
        for sim, sentence_mentions in zip(sims.tolist(), mentions, strict=True):
            verdict, weight = self._verdict(sentence_mentions, hyp)
            if verdict == "contradicts":
                contradiction.append(sim)
            else:
                support.append(sim * weight)
                agreed = agreed or verdict == "agrees"
        best_support = max(support) if support else 0.0
        if agreed or not contradiction:
            return float(best_support)
        return float(best_support - max(contradiction))

    def _verdict(self, sentence_mentions: list[Mention], hyp: _HypothesisLabels) -> tuple[str, float]:
        """'agrees', 'contradicts' or 'neutral' for one sentence, and the weight of its similarity."""
        verdict, weight = "neutral", 1.0
        for m in sentence_mentions:
            if m.finding in hyp.present:
                if m.status == "negated" or (m.status == "positive" and hyp.conflicts(m)):
                    return "contradicts", 0.0
                if m.status == "positive":
                    verdict, weight = "agrees", 1.0
                elif verdict != "agrees":
                    weight = self.uncertain_weight
            elif m.finding in hyp.absent:
                if m.status == "positive":
                    return "contradicts", 0.0
                if m.status == "negated":
                    verdict, weight = "agrees", 1.0
                elif verdict != "agrees":
                    weight = self.uncertain_weight
        return verdict, weight
