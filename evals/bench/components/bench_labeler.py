"""Accuracy of the report labeler on hand-labelled IU report sentences (``tests/data/labeler_gold.jsonl``).

Each gold item is a real sentence from the IU reports that ``torchxrayvision`` ships, a finding key of
:mod:`tools.vocabulary` and the status a reader gave it (positive / negated / uncertain), labelled by hand
before the labeler was run on it. The labeler's status for that finding in that sentence (the report-level
summary of the sentence: positive > uncertain > negated; ``none`` when it finds no mention) is compared
with the gold status. Items are split in ``dev`` (the sentences the rules were developed against, so its
figure is optimistic) and ``heldout`` (labelled afterwards, on fresh sentences, and never used to change the
rules; the held-out items of the real-radiograph findings beyond SynthCXR's 18 were labelled in five rounds:
each round's items, once measured (round 1: 0.903, round 2: 0.929, round 3: 0.872, round 4: 0.905), were used
to fix the rules and moved to ``dev``, and a fresh round was labelled (sentences not in the gold set, chosen by
keyword per finding, labelled by hand before the labeler was run on them); round 5 is the held-out set now and
was not used to change the rules). Prints, for all items and for each split, overall accuracy, accuracy on
SynthCXR's plantable findings and on the other findings, per-status recall and precision, a
confusion matrix, the accuracy of a bag-of-words baseline on the same items, and (with ``--errors``) every disagreement.

Run: ``python -m evals.bench.components.bench_labeler [--gold FILE] [--errors]``
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tools.domain import InputError
from tools.reports.labeler import STATUSES, label_report
from tools.vocabulary import FINDINGS

DEFAULT_GOLD = Path(__file__).resolve().parents[3] / "tests" / "data" / "labeler_gold.jsonl"
PREDICTED = (*STATUSES, "none")


@dataclass(frozen=True)
class GoldItem:
    """One hand-labelled (sentence, finding, status) item."""

    sentence: str
    finding: str
    status: str
    source_report_id: str
    split: str = "dev"


@dataclass
class LabelerScores:
    """Accuracy figures of one labeler on the gold items."""

    n: int
    correct: int
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[tuple[GoldItem, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Fraction of items whose predicted status equals the gold status."""
        return self.correct / self.n if self.n else 0.0

    def recall(self, status: str) -> float:
        """Accuracy on the items whose gold status is ``status``."""
        total = sum(v for (g, _), v in self.confusion.items() if g == status)
        return self.confusion[(status, status)] / total if total else 0.0

    def precision(self, status: str) -> float:
        """Fraction of the items predicted ``status`` that are ``status``."""
        total = sum(v for (_, p), v in self.confusion.items() if p == status)
        return self.confusion[(status, status)] / total if total else 0.0


def load_gold(path: Path = DEFAULT_GOLD) -> list[GoldItem]:
    """Read and validate the gold JSONL file."""
    if not path.is_file():
        raise InputError(f"{path}: gold file not found")
    items: list[GoldItem] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        raw = json.loads(line)
        item = GoldItem(
            raw["sentence"], raw["finding"], raw["status"], str(raw["source_report_id"]), raw.get("split", "dev")
        )
        if item.finding not in FINDINGS:
            raise InputError(f"{path}:{n}: unknown finding {item.finding!r}")
        if item.status not in STATUSES:
            raise InputError(f"{path}:{n}: unknown status {item.status!r}")
        items.append(item)
    return items


def labeler_status(item: GoldItem) -> str:
    """The labeler's status for the item's finding in its sentence (``none`` when not mentioned)."""
    return label_report(item.sentence).summary.get(item.finding, "none")


_BASELINE_NEG = re.compile(r"\b(?:no|not|without|negative|free|clear|resolved|removed|removal)\b", re.I)
_BASELINE_UNC = re.compile(r"\b(?:may|possible|possibly|probable|likely|suggest\w*|versus|questionable|or)\b", re.I)


def baseline_status(item: GoldItem) -> str:
    """Bag-of-words baseline: negated if any negation word in the sentence, uncertain if a hedge word, else positive."""
    if _BASELINE_NEG.search(item.sentence):
        return "negated"
    if _BASELINE_UNC.search(item.sentence):
        return "uncertain"
    return "positive"


def evaluate(items: list[GoldItem], predict: object = labeler_status) -> LabelerScores:
    """Score ``predict`` (item -> status) on the gold items."""
    assert callable(predict)
    scores = LabelerScores(n=len(items), correct=0)
    for item in items:
        pred = str(predict(item))
        scores.confusion[(item.status, pred)] += 1
        if pred == item.status:
            scores.correct += 1
        else:
            scores.errors.append((item, pred))
    return scores


def _emit(*parts: object) -> None:
    """Write one line of the benchmark's output to stdout (this is a script: its output is the result)."""
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


def _report(items: list[GoldItem], scores: LabelerScores) -> None:
    base = evaluate(items, baseline_status)
    counts = Counter(i.status for i in items)
    _emit(
        f"gold items: {len(items)} ({', '.join(f'{s} {counts[s]}' for s in STATUSES)}), "
        f"findings covered: {len({i.finding for i in items})}/{len(FINDINGS)}, "
        f"reports: {len({i.source_report_id for i in items})}"
    )
    _emit(f"labeler accuracy: {scores.accuracy:.3f} ({scores.correct}/{scores.n})")
    for status in STATUSES:
        _emit(
            f"  {status:<9} recall {scores.recall(status):.3f}  precision {scores.precision(status):.3f}"
            f"  (n={counts[status]})"
        )
    _emit("confusion (rows gold, columns predicted):")
    _emit("  " + " " * 10 + "".join(f"{p:>10}" for p in PREDICTED))
    for g in STATUSES:
        _emit("  " + f"{g:<10}" + "".join(f"{scores.confusion[(g, p)]:>10}" for p in PREDICTED))
    for name, part in (
        ("SynthCXR's plantable findings", [i for i in items if FINDINGS[i.finding].plantable]),
        ("real-radiograph findings beyond them", [i for i in items if not FINDINGS[i.finding].plantable]),
    ):
        if part:
            sub = evaluate(part)
            _emit(f"  {name}: accuracy {sub.accuracy:.3f} ({sub.correct}/{sub.n})")
    ratio = scores.accuracy / base.accuracy if base.accuracy else float("inf")
    _emit(f"bag-of-words baseline accuracy: {base.accuracy:.3f}; labeler / baseline = {ratio:.2f}")
    per_finding = Counter(i.finding for i in items)
    wrong = Counter(i.finding for i, _ in scores.errors)
    _emit(
        "per finding (correct/total): "
        + ", ".join(f"{k} {per_finding[k] - wrong[k]}/{per_finding[k]}" for k in sorted(per_finding))
    )


def main(argv: list[str] | None = None) -> int:
    """Print the labeler's accuracy on the gold set (overall, per status, confusion matrix, baseline)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help="gold JSONL file")
    parser.add_argument("--errors", action="store_true", help="list every disagreement")
    args = parser.parse_args(argv)
    items = load_gold(args.gold)
    scores = evaluate(items)
    for split in sorted({i.split for i in items}):
        part = [i for i in items if i.split == split]
        _emit(f"== split {split}")
        _report(part, evaluate(part))
    _emit("== all items")
    _report(items, scores)
    if args.errors:
        for item, pred in scores.errors:
            where = f"[{item.split} {item.source_report_id}] {item.finding}"
            _emit(f"  {where}: gold {item.status}, got {pred}: {item.sentence}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
