"""The LLM policy next to ``rules`` on benchmark folders: accuracy, false differences, LLM and tool calls, time.

Run the same pairs with each policy first (resumable), then compare::

    raddiff bench run synthdiffbench --llm rules --pairs 0,5,9,11 --workers 1 --out OUT/rules
    raddiff bench run synthdiffbench --llm local:qwen2.5-coder-0.5b --pairs 0,5,9,11 --workers 1 --out OUT/local
    python -m evals.bench.components.bench_local_llm OUT/rules OUT/local

Per folder: pairs done, acc@1 and acc@5, the false-difference rate (share of the top-5 differences the judge
scores 0: no finding that differs), LLM calls, LLM tool calls and the share of them that did not come back
as errors (per pair), and seconds per pair.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evals.bench.metrics import PairResult, load_pair_results


def figures(results: list[PairResult]) -> dict[str, float | int | None]:
    """The comparison's figures of one benchmark folder's pair results (errors counted, not averaged in)."""
    ok = [r for r in results if r.status == "ok"]
    top5 = [h for r in ok for h in r.hypotheses[:5] if h.score is not None]
    calls = sum(r.llm_tool_calls for r in ok)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return {
        "pairs": len(ok),
        "errors": len(results) - len(ok),
        "acc1": mean([r.acc1 for r in ok if r.acc1 is not None]),
        "acc5": mean([r.acc5 for r in ok if r.acc5 is not None]),
        "false_difference_rate": mean([float(h.score == 0) for h in top5]),
        "llm_calls": mean([float(r.llm_calls) for r in ok]),
        "llm_tool_calls": mean([float(r.llm_tool_calls) for r in ok]),
        "valid_tool_calls": None if calls == 0 else 1 - sum(r.llm_tool_errors for r in ok) / calls,
        "seconds": mean([r.seconds for r in ok]),
    }


def main(argv: list[str] | None = None) -> None:
    """Print one Markdown row per benchmark folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="Benchmark folders (with pairs/*.json).")
    args = parser.parse_args(argv)
    columns = [
        "pairs",
        "errors",
        "acc1",
        "acc5",
        "false_difference_rate",
        "llm_calls",
        "llm_tool_calls",
        "valid_tool_calls",
        "seconds",
    ]
    print("| folder | pair ids | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for folder in args.folders:
        results = load_pair_results(folder)
        row = figures(results)
        cells = [
            "-" if row[c] is None else (f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])) for c in columns
        ]
        ids = ",".join(sorted(r.pair_id for r in results))
        print(f"| {folder.name} | {ids} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
