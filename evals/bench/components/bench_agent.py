"""Agent benchmark: a full offline run on a SynthCXR preset, and the agent's own overhead per round.

Run:  python -m evals.bench.components.bench_agent [--preset effusion] [--n 30]

Prints the wall time of the run, the time spent inside tools (describe, embed, score, zoom...: model time),
and the agent's overhead per round = (node time - tool time) / rounds: graph bookkeeping, checkpointing,
policy decisions, labelling descriptions. Run it twice to see warm-cache figures (the first run renders the
SynthCXR pair and embeds it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Run the benchmark and print its figures."""
    from agent.context import RunContext
    from agent.trace import read_trace
    from evals.synth.bench import build_pair
    from evals.synth.pairs import PRESETS
    from graphs.run import run_agent
    from tools.data.jsonl_pairs import load_jsonl_pair
    from tools.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="effusion")
    parser.add_argument("--n", type=int, default=30, help="studies per group")
    args = parser.parse_args()
    settings = load_settings()
    spec = PRESETS[args.preset].model_copy(update={"n_a": args.n, "n_b": args.n})
    started = time.perf_counter()
    jsonl = build_pair(spec, settings.cache_dir / "bench-agent", seed=0, cache_dir=settings.cache_dir)
    comparison = load_jsonl_pair(jsonl, 0).comparison
    built = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        context = RunContext(run_id="bench", run_dir=Path(tmp) / "bench")
        t0 = time.perf_counter()
        result = run_agent(comparison, context)
        wall = time.perf_counter() - t0
        events = read_trace(context.run_dir / "trace.jsonl")
    node_s = sum(e["seconds"] for e in events if e["event"] == "node_end")
    tool_s = sum(e["seconds"] for e in events if e["event"] == "tool")
    rounds = max(result.rounds, 1)
    top = result.ranked[0] if result.ranked else None
    print(f"preset {args.preset!r}, {args.n} vs {args.n} studies; pair ready in {built:.1f} s")
    print(f"run: {wall:.2f} s wall, {result.rounds} rounds ({result.stop_reason})")
    print(f"nodes {node_s:.2f} s, of which tools (model time) {tool_s:.2f} s")
    print(f"agent overhead per round, excluding model time: {(node_s - tool_s) / rounds * 1000:.0f} ms")
    print(f"graph + checkpointing outside the nodes: {(wall - node_s) / rounds * 1000:.0f} ms per round")
    if top is not None:
        print(f"top: {top.hypothesis.text} (more in {top.hypothesis.group}) AUROC {top.directional_auroc:.3f}")


if __name__ == "__main__":
    main()
