"""Open-vocabulary proposals: phrases mined from two groups' texts whose prevalence differs between the groups.

The vocabulary (:mod:`tools.vocabulary`) names what someone listed; a cohort can differ by something nobody
listed ("VP shunt tubing", "pectus excavatum", "bronchiectasis"). This module finds such differences in the
texts' own words:

1. Each text (a report or a description) is cut into sentences (:func:`tools.reports.labeler.split_sentences`) and
   clauses (commas, semicolons, "but", "however", "and" before a new subject; not "with", whose object
   usually belongs to the finding before it: "pacemaker with two leads").
2. Negation-aware: a clause with a negation or normality word ("no", "without", "negative for", "normal",
   "clear", "resolved"...) is skipped, and so is an uncertain one ("may", "possible", "cannot exclude").
3. A sentence that names a finding of the vocabulary (any labeler mention) is skipped as a whole: the
   vocabulary's proposals cover it, and its other clauses are mostly that finding's attributes ("with the tip
   too high, in the brachiocephalic vein").
4. The remaining clauses give runs of 1 to :data:`MAX_WORDS` consecutive content words (no stopword, verb or
   preposition inside) holding at least one word that is not anatomy or location ("right lower lobe" alone is
   no finding).
5. Per group, the share of texts with the phrase; phrases seen in at least :data:`MIN_TEXTS` texts whose
   shares differ by at least :data:`MIN_GAP` are kept, a longer phrase replacing the shorter ones it contains
   when it is nearly as frequent, best gap first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tools.reports.labeler import label_sentence, split_sentences

MAX_WORDS = 4
MIN_TEXTS = 3
MIN_GAP = 0.15
SUBSUME_FRACTION = 0.8

_CLAUSE = re.compile(
    r"[,;:()]|\b(?:but|however|although|though|whereas|which|and\s+(?:the|there|a|an)|"
    r"consistent\s+with|compatible\s+with|likely|representing|suggest\w*)\b",
    re.I,
)
_SKIP = re.compile(
    r"\b(?:no|not|without|negative|free|clear|normal|normally|unremarkable|intact|resolved|resolution|removed|"
    r"removal|absent|never|neither|nor|stable|unchanged|may|might|could|possible|possibly|probable|probably|"
    r"questionable|cannot|suspected|suspicious|versus|vs|limits|within|prior|previous|comparison|compared|"
    r"since|again|interval|redemonstrat\w*|exam\w*|view|views|film|study|technique|patient|history)\b",
    re.I,
)
STOPWORDS = frozenset(
    """a an the of in on at to for from by with and or is are was were be been being there this that these those
    it its as than then also again both each other some any all very more most less few several multiple small
    large mild mildly moderate moderately severe marked minimal slight slightly trace tiny new old chronic acute
    seen noted identified present visualized demonstrated appears appear appearing is has have had which who
    xxxx overlying projecting near noted note evidence finding findings change changes likely given impression
    over into through along across below above beneath behind under within onto toward towards via about approximately
    courses coursing extends extending terminates terminating projects overlies traverses crossing placed placement
    position positioned tip tips measuring measures measure cm mm show shows showing demonstrates demonstrating
    status post s/p likely consistent compatible represent represents representing""".split()
)
ANATOMY = frozenset(
    """left right bilateral bilaterally upper lower mid middle lobe lobes lung lungs base bases basilar bibasilar
    apex apices apical zone zones hilum hila hilar perihilar chest thorax thoracic heart cardiac mediastinum
    mediastinal region area side sided anterior posterior lateral medial inferior superior central peripheral
    lingula lingular costophrenic angle angles diaphragm hemidiaphragm hemithorax pleural pleura parenchyma
    parenchymal airspace space field fields aspect portion level body bodies segment segmental spine vertebral
    vertebrae aorta aortic soft tissue tissues bone bones bony osseous structures structure silhouette contour
    contours size volume volumes vascularity vasculature markings svc ivc vena cava cavoatrial junction atrium
    atrial ventricle brachiocephalic jugular subclavian axillary abdomen abdominal quadrant neck shoulder shoulders
    clavicle clavicles humerus humeral rib ribs stomach carina trachea bronchus lead leads""".split()
)
_TOKEN = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")


@dataclass(frozen=True)
class Phrase:
    """A mined phrase, the group where it is more common, and its share of texts in each group."""

    text: str
    group: str
    share_a: float
    share_b: float
    count_a: int
    count_b: int

    @property
    def gap(self) -> float:
        """Share in its group minus share in the other (0..1)."""
        return abs(self.share_a - self.share_b)


def _clauses(text: str) -> list[str]:
    """The clauses of the sentences that name no vocabulary finding (negated or not)."""
    out: list[str] = []
    text = re.sub(r"\b(?:findings?|impression|indication|comparison|history|technique)\s*:", ". ", text, flags=re.I)
    for sentence in split_sentences(text):
        if re.match(r"^\s*(?:indication|comparison|history|technique)\b", sentence, re.I) or label_sentence(sentence):
            continue
        out.extend(part.strip() for part in _CLAUSE.split(sentence) if part and part.strip())
    return out


def text_phrases(text: str, max_words: int = MAX_WORDS) -> set[str]:
    """The candidate phrases of one text: n-grams of its affirmed clauses that name no vocabulary finding."""
    found: set[str] = set()
    for clause in _clauses(text):
        if _SKIP.search(clause):
            continue
        words = _TOKEN.findall(clause.lower().replace("xxxx", " "))
        for n in range(1, max_words + 1):
            for i in range(len(words) - n + 1):
                gram = words[i : i + n]
                if any(w in STOPWORDS for w in gram) or len(gram[-1]) < 3:
                    continue
                if all(w in STOPWORDS or w in ANATOMY for w in gram):
                    continue
                found.add(" ".join(gram))
    return found


def mine_phrases(
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    *,
    min_texts: int = MIN_TEXTS,
    min_gap: float = MIN_GAP,
    limit: int = 5,
) -> list[Phrase]:
    """Phrases whose share of texts differs between the groups by ``min_gap`` or more, best gap first."""
    if not texts_a or not texts_b:
        return []
    counts: dict[str, list[int]] = {}
    for index, texts in enumerate((texts_a, texts_b)):
        for text in texts:
            for gram in text_phrases(text):
                counts.setdefault(gram, [0, 0])[index] += 1
    n_a, n_b = len(texts_a), len(texts_b)
    candidates: list[Phrase] = []
    for gram, (ca, cb) in counts.items():
        if max(ca, cb) < min_texts:
            continue
        share_a, share_b = ca / n_a, cb / n_b
        if abs(share_a - share_b) < min_gap:
            continue
        candidates.append(Phrase(gram, "A" if share_a > share_b else "B", share_a, share_b, ca, cb))
    candidates.sort(key=lambda p: (-p.gap, -len(p.text.split()), p.text))
    kept: list[Phrase] = []
    for phrase in candidates:
        words = f" {phrase.text} "
        mine = max(phrase.count_a, phrase.count_b)
        if any(f" {k.text} ".find(words) >= 0 and max(k.count_a, k.count_b) >= SUBSUME_FRACTION * mine for k in kept):
            continue  # a longer kept phrase says it, nearly as often
        kept = [
            k
            for k in kept
            if not (words.find(f" {k.text} ") >= 0 and mine >= SUBSUME_FRACTION * max(k.count_a, k.count_b))
        ]
        kept.append(phrase)
    kept.sort(key=lambda p: (-p.gap, -len(p.text.split()), p.text))
    return kept[:limit]


_NEGATION_BEFORE = re.compile(
    r"\b(?:no|not|without|negative\s+for|free\s+of|resolved|removed|removal\s+of|resolution\s+of|absence\s+of)\b",
    re.I,
)


def negates(sentence: str, phrase: str) -> bool:
    """True when ``sentence`` names the phrase inside a negated clause ("no shunt tubing" for "vp shunt tubing"):
    its last word and at least half of its words, after a negation trigger."""
    words = [w for w in _TOKEN.findall(phrase.lower()) if w not in STOPWORDS]
    if not words:
        return False
    for clause in re.split(r"[;:]|\bbut\b|\bhowever\b", sentence, flags=re.I):
        low = clause.lower()
        found = {w: m.start() for w in words if (m := re.search(rf"\b{re.escape(w)}", low))}
        if words[-1] in found and 2 * len(found) >= len(words):
            if _NEGATION_BEFORE.search(low[: min(found.values())]):
                return True
    return False
