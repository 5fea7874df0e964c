"""Benchmark metrics and tables, overall and per difficulty.

Over the run's **differences list** (what a user reads): acc@1 and acc@5 (a difference that states one planted
difference fully scores 2), the **false-difference rate** (differences judged 0 / differences reported, pooled
over pairs; every difference on a pair whose groups do not differ is false), **planted recall** (planted
differences named by some difference / planted differences), differences per pair, and the share of
no-difference pairs with none reported. Beside them RadDiff's protocol figures over the ranked hypotheses
(acc@1 / acc@5 / acc@N, naming one of several differences scores 1), so both compare with published numbers;
then top-hypothesis AUROC, rounds, time and model calls per pair. JSON, Markdown, and the comparison with
published figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.domain import GroupLabel

DIFFICULTY_NAMES = {1: "easy", 2: "medium", 3: "hard"}
KIND_NAMES: dict[str, Callable[[int], bool]] = {
    "one planted difference": lambda n: n == 1,
    "several planted differences": lambda n: n >= 2,
    "no difference": lambda n: n == 0,
}
"""Subsets of a suite with structured truth, by how many differences were planted."""
SIGNIFICANT_AUROC = 0.7
"""The ranked list's own false-difference figure (before there was a differences list): of the judged
hypotheses with q < 0.05 and directional AUROC at least this, the share judged 0."""


class JudgedHypothesis(BaseModel):
    """One ranked hypothesis of a pair with the judge's verdict."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=1)
    text: str
    group: GroupLabel
    auroc: float = Field(description="Directional AUROC (high = more present in the group it names).")
    q_value: float | None = Field(default=None, description="BH q-value across the run's hypotheses.")
    region: str | None = None
    score: int | None = Field(default=None, description="Judge score 0/1/2; None when the judge failed.")
    reason: str = ""
    judge_error: str | None = None


class JudgedDifference(BaseModel):
    """One entry of a pair's differences list with the judge's verdict and the planted differences it names."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=1)
    text: str
    group: GroupLabel
    auroc: float
    q_value: float
    basis: str = ""
    score: int | None = Field(default=None, description="Judge score 0/1/2; None when the judge failed.")
    reason: str = ""
    judge_error: str | None = None
    matches: list[int] = Field(
        default_factory=list, description="Planted differences (indices) it names in the right direction."
    )


class PairResult(BaseModel):
    """Everything recorded for one benchmark pair (written to ``<out>/pairs/<pair_id>.json``)."""

    model_config = ConfigDict(extra="forbid")

    pair_id: str
    index: int
    suite: str
    status: str = Field(description="'ok', or 'error' when loading or running the agent failed.")
    error: str | None = None
    difficulty: int | None = None
    purity: float | None = None
    set1: str = ""
    set2: str = ""
    judge: str = ""
    ablations: list[str] = Field(default_factory=list)
    hypotheses: list[JudgedHypothesis] = Field(default_factory=list)
    differences: list[JudgedDifference] = Field(default_factory=list, description="The run's differences, judged.")
    n_covarying: int = 0
    planted: int | None = Field(default=None, description="Planted differences (structured truth only).")
    planted_found: int | None = Field(default=None, description="Planted differences some difference names.")
    diff_acc1: float | None = Field(default=None, description="acc@1 over the differences list.")
    diff_acc5: float | None = None
    acc1: float | None = None
    acc5: float | None = None
    accn: float | None = None
    top_auroc: float | None = None
    rounds: int = 0
    stop_reason: str = ""
    seconds: float = 0.0
    tool_calls: int = 0
    llm_calls: int = 0
    llm_tool_calls: int = 0
    llm_tool_errors: int = 0
    tokens: int = 0
    n_a: int = 0
    n_b: int = 0
    n_skipped: int = 0
    confounder_flags: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


def accuracy_at(scores: Sequence[int | None], k: int | None) -> float | None:
    """Best score among the first ``k`` (all when ``None``) / 2; ``None`` when a judge error could change it.

    No hypotheses at all is an accuracy of 0 (the system said nothing right), not an error.
    """
    window = list(scores if k is None else scores[:k])
    known = [s for s in window if s is not None]
    best = max(known, default=0)
    if len(known) < len(window) and best < 2:
        return None
    return best / 2.0


def _mean(values: Iterable[float | int | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def summarize(results: Sequence[PairResult]) -> dict[str, Any]:
    """Aggregate figures of a set of pair results (errors and judge errors counted, not averaged in)."""
    ok = [r for r in results if r.status == "ok"]
    null = [r for r in ok if r.planted == 0]
    differing = [r for r in ok if r.planted != 0]
    judge_errors = sum(
        any(h.judge_error for h in r.hypotheses) or any(d.judge_error for d in r.differences) for r in ok
    )
    judged_differences = [d for r in ok for d in r.differences if d.score is not None]
    planted = [r for r in differing if r.planted is not None and r.planted_found is not None]
    significant = [
        h
        for r in ok
        for h in r.hypotheses
        if h.score is not None and h.q_value is not None and h.q_value < 0.05 and h.auroc >= SIGNIFICANT_AUROC
    ]
    return {
        "n_pairs": len(results),
        "n_ok": len(ok),
        "n_errors": len(results) - len(ok),
        "n_judge_errors": judge_errors,
        "diff_acc1": _mean(r.diff_acc1 for r in differing),
        "diff_acc5": _mean(r.diff_acc5 for r in differing),
        "false_difference_rate": (
            sum(d.score == 0 for d in judged_differences) / len(judged_differences) if judged_differences else None
        ),
        "planted_recall": (
            sum(r.planted_found or 0 for r in planted) / sum(r.planted or 0 for r in planted) if planted else None
        ),
        "differences_per_pair": _mean(len(r.differences) for r in ok),
        "n_null_pairs": len(null),
        "null_clean": _mean(float(not r.differences) for r in null),
        "ranked_false_rate": (sum(h.score == 0 for h in significant) / len(significant) if significant else None),
        "acc1": _mean(r.acc1 for r in differing),
        "acc5": _mean(r.acc5 for r in differing),
        "accn": _mean(r.accn for r in differing),
        "top_auroc": _mean(r.top_auroc for r in ok),
        "rounds": _mean(r.rounds for r in ok),
        "seconds": _mean(r.seconds for r in ok),
        "tool_calls": _mean(r.tool_calls for r in ok),
        "llm_calls": _mean(r.llm_calls for r in ok),
        "llm_tool_calls": _mean(r.llm_tool_calls for r in ok),
        "llm_tool_valid": _valid_share(ok),
        "tokens": _mean(r.tokens for r in ok),
    }


def _valid_share(results: Sequence[PairResult]) -> float | None:
    """Share of the LLM's tool calls that did not come back as errors (``None`` without any)."""
    calls = sum(r.llm_tool_calls for r in results)
    return None if calls == 0 else 1.0 - sum(r.llm_tool_errors for r in results) / calls


def summarize_suite(results: Sequence[PairResult]) -> dict[str, Any]:
    """Overall figures plus one block per difficulty (pairs without a difficulty only count overall) and one per
    kind of pair (:data:`KIND_NAMES`; pairs with structured truth only)."""
    by_difficulty = {}
    for level, name in DIFFICULTY_NAMES.items():
        subset = [r for r in results if r.difficulty == level]
        if subset:
            by_difficulty[name] = summarize(subset)
    by_kind = {}
    for name, test in KIND_NAMES.items():
        subset = [r for r in results if r.planted is not None and test(r.planted)]
        if subset:
            by_kind[name] = summarize(subset)
    return {"overall": summarize(results), "by_difficulty": by_difficulty, "by_kind": by_kind}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


DIFFERENCE_COLUMNS = (
    ("pairs", "n_ok", 0),
    ("errors", "n_errors", 0),
    ("acc@1 (differences)", "diff_acc1", 3),
    ("acc@5 (differences)", "diff_acc5", 3),
    ("false-difference rate", "false_difference_rate", 3),
    ("planted recall", "planted_recall", 3),
    ("differences / pair", "differences_per_pair", 2),
    ("no-difference pairs", "n_null_pairs", 0),
    ("of them with none reported", "null_clean", 2),
)
"""The differences list: what a user reads."""

METRIC_COLUMNS = (
    ("pairs", "n_ok", 0),
    ("errors", "n_errors", 0),
    ("acc@1", "acc1", 3),
    ("acc@5", "acc5", 3),
    ("acc@N", "accn", 3),
    ("false rate of significant ranked", "ranked_false_rate", 3),
    ("top AUROC", "top_auroc", 3),
    ("rounds", "rounds", 2),
    ("s / pair", "seconds", 1),
    ("tool calls", "tool_calls", 1),
    ("LLM calls", "llm_calls", 1),
)
"""RadDiff's protocol over the ranked hypotheses, and the cost of a pair."""


def _table(summary: dict[str, Any], columns: Sequence[tuple[str, str, int]]) -> list[str]:
    head = "| subset | " + " | ".join(c[0] for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    rows = [("all", summary["overall"])] + list(summary.get("by_difficulty", {}).items())
    rows += list(summary.get("by_kind", {}).items())
    for name, block in rows:
        cells = [_fmt(block.get(key), digits) if digits else _fmt(block.get(key)) for _h, key, digits in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def summary_markdown(summary: dict[str, Any], title: str = "") -> str:
    """Two Markdown tables, one row overall and one per difficulty each: the differences list
    (:data:`DIFFERENCE_COLUMNS`), then RadDiff's protocol over the ranked hypotheses (:data:`METRIC_COLUMNS`)."""
    lines = [f"### {title}", ""] if title else []
    lines += ["Differences list:", ""] + _table(summary, DIFFERENCE_COLUMNS)
    lines += ["", "Ranked hypotheses (RadDiff protocol):", ""] + _table(summary, METRIC_COLUMNS)
    return "\n".join(lines) + "\n"


def pairs_markdown(results: Sequence[PairResult], top: int = 1) -> str:
    """Per-pair table: ground truth, the differences reported (judge score of each), the top hypothesis."""
    lines = [
        "| pair | diff. | ground truth (A / B) | differences reported (score) | top hypothesis | score | AUROC | "
        "acc@5 | rounds | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda x: x.index):
        if r.status != "ok":
            lines.append(
                f"| {r.pair_id} | {r.difficulty or '-'} | {r.set1} / {r.set2} | ERROR: {r.error} | | | | | | |"
            )
            continue
        hyp = r.hypotheses[0] if r.hypotheses else None
        text = f"{hyp.text} (more in {hyp.group})" if hyp else "(none)"
        score = "-" if hyp is None else (_fmt(hyp.score) if hyp.judge_error is None else "judge error")
        reported = "; ".join(f"{d.text} ({d.group}) [{_fmt(d.score)}]" for d in r.differences) or "none"
        lines.append(
            f"| {r.pair_id} | {r.difficulty or '-'} | {r.set1} / {r.set2} | {reported} | {text} | {score} | "
            f"{_fmt(r.top_auroc)} | {_fmt(r.acc5, 2)} | {r.rounds} | {r.seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"


# Published figures (not run here unless a row says so).
PUBLISHED: list[dict[str, Any]] = [
    {
        "system": "RadDiff (paper)",
        "benchmark": "RadDiffBench (57 MIMIC-CXR pairs)",
        "subset": "all",
        "acc1": 0.47,
        "acc5": None,
        "note": "reported accuracy 47%",
    },
    {
        "system": "RadDiff + ground-truth reports (paper)",
        "benchmark": "RadDiffBench (57 MIMIC-CXR pairs)",
        "subset": "all",
        "acc1": 0.50,
        "acc5": None,
        "note": "reported accuracy 50%",
    },
    {
        "system": "VisDiff (paper)",
        "benchmark": "VisDiffBench (general images)",
        "subset": "easy",
        "acc1": 0.88,
        "acc5": 0.99,
        "note": "",
    },
    {
        "system": "VisDiff (paper)",
        "benchmark": "VisDiffBench (general images)",
        "subset": "medium",
        "acc1": 0.75,
        "acc5": 0.86,
        "note": "",
    },
    {
        "system": "VisDiff (paper)",
        "benchmark": "VisDiffBench (general images)",
        "subset": "hard",
        "acc1": 0.61,
        "acc5": 0.80,
        "note": "",
    },
]


def comparison_markdown(ours: dict[str, dict[str, Any]], system: str = "raddiff (this project)") -> str:
    """Published RadDiff / VisDiff figures next to ours; ``ours`` maps suite name -> :func:`summarize_suite`.

    Every row states whether it was run here. RadDiffBench rows for this project appear as 'not run' unless
    ``ours`` holds a raddiffbench summary.
    """
    lines = [
        "| system | benchmark | subset | acc@1 | acc@5 | run here? | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in PUBLISHED:
        lines.append(
            f"| {row['system']} | {row['benchmark']} | {row['subset']} | {_fmt(row['acc1'], 2)} | "
            f"{_fmt(row['acc5'], 2)} | no (published) | {row['note']} |"
        )
    for suite in ("raddiffbench", "synthdiffbench"):
        summary = ours.get(suite)
        bench = "RadDiffBench (57 MIMIC-CXR pairs)" if suite == "raddiffbench" else "SynthDiffBench (synthetic)"
        if summary is None:
            lines.append(
                f"| {system} | {bench} | all | - | - | no | not run here"
                + (" (needs credentialed MIMIC-CXR access)" if suite == "raddiffbench" else "")
                + " |"
            )
            continue
        rows = [("all", summary["overall"])] + list(summary.get("by_difficulty", {}).items())
        for name, block in rows:
            lines.append(
                f"| {system} | {bench} | {name} | {_fmt(block.get('acc1'), 2)} | {_fmt(block.get('acc5'), 2)} | "
                f"yes | {block.get('n_ok')} pairs |"
            )
    lines.append("")
    lines.append(
        "Published figures come from different benchmarks and judges; they are context, not a head-to-head "
        "comparison. SynthDiffBench is synthetic (SynthCXR renderings), so its figures say nothing about real "
        "radiographs."
    )
    return "\n".join(lines) + "\n"


def load_pair_results(out_dir: Path) -> list[PairResult]:
    """Every stored pair result of a benchmark run folder, in suite order."""
    folder = Path(out_dir) / "pairs"
    results = [
        PairResult.model_validate(json.loads(p.read_text(encoding="utf-8"))) for p in sorted(folder.glob("*.json"))
    ]
    return sorted(results, key=lambda r: r.index)
