"""``raddiff bench run|list|report|diff|sweep|agreement|reproduce`` (light to import; work happens in ``_run_*``)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from raddiff.cli.common import add_model_arguments, settings_from
from tools.domain import InputError


def _agent_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, rounds_help="Most hypothesize-verify-refine rounds per pair.")
    parser.add_argument("--samples-per-group", type=int, help="Studies described per group in the survey.")
    parser.add_argument(
        "--ablation",
        action="append",
        default=[],
        choices=["single_pass", "no_zoom", "no_reports", "reports_only", "single_prompt"],
        help="Switch a part of the agent off (repeatable).",
    )
    parser.add_argument("--judge", help="'structured' (offline, needs structured truth) or 'openai:MODEL'.")
    parser.add_argument("--judge-base-url", help="OpenAI-compatible server for the judge.")
    parser.add_argument("--judge-top", type=int, default=10, help="Hypotheses judged per pair (acc@N); >= 5.")
    parser.add_argument("--workers", type=int, default=2, help="Pairs run in parallel (threads sharing models).")
    parser.add_argument("--output-dir", "--out", dest="out", type=Path, help="Benchmark folder (resumable).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--synth-n", type=int, default=20, help="SynthDiffBench studies per group.")
    parser.add_argument("--synth-size", type=int, default=256, help="SynthDiffBench image size in pixels.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of ``raddiff bench``."""
    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)

    run = sub.add_parser("run", help="Run a suite: raddiffbench, synthdiffbench, or a JSONL pair file.")
    run.add_argument("suite", help="raddiffbench | synthdiffbench | path/to/pairs.jsonl")
    run.add_argument("--mimic-root", type=Path, help="MIMIC-CXR-JPG root (holding files/pXX/...).")
    run.add_argument("--reports-root", type=Path, help="MIMIC-CXR reports root (files/pXX/pXXXXXXXX/sXXXXXXXX.txt).")
    run.add_argument("--image-root", type=Path, help="Root of relative image paths of a JSONL file.")
    run.add_argument("--limit", type=int, help="Run only the first N (selected) pairs.")
    run.add_argument("--pairs", help="Comma-separated pair ids or 0-based indices to run.")
    _synth_arguments(run)
    _agent_arguments(run)
    run.set_defaults(run=_run)

    lst = sub.add_parser("list", help="List a suite's pairs (id, difficulty, ground truth).")
    lst.add_argument("suite")
    lst.add_argument("--mimic-root", type=Path)
    _synth_arguments(lst)
    lst.set_defaults(run=_list)

    report = sub.add_parser("report", help="Rebuild summary.md / summary.json of benchmark folders.")
    report.add_argument("folders", type=Path, nargs="+", help="Benchmark folders (with pairs/*.json).")
    report.set_defaults(run=_report)

    diff = sub.add_parser("diff", help="Compare two benchmark folders pair by pair (behaviour unchanged?).")
    diff.add_argument("before", type=Path, help="Benchmark folder of the baseline run.")
    diff.add_argument("after", type=Path, help="Benchmark folder of the run to compare.")
    diff.add_argument("--limit", type=int, default=50, help="Most changed fields printed.")
    diff.set_defaults(run=_diff)

    sweep = sub.add_parser("sweep", help="Robustness sweep on SynthDiffBench: purity, size or confounded.")
    sweep.add_argument("kind", choices=["purity", "size", "confounded"])
    sweep.add_argument("--bases", help="Comma-separated base pairs of the default suite.")
    sweep.add_argument("--values", help="Comma-separated values (purity fractions, or studies per group).")
    _synth_arguments(sweep)
    _agent_arguments(sweep)
    sweep.set_defaults(run=_sweep)

    agree = sub.add_parser("agreement", help="Agreement of the structured judge with hand-labelled cases.")
    agree.add_argument("gold", type=Path, nargs="?", help="Gold JSONL (default: tests/data/judge_gold.jsonl).")
    agree.set_defaults(run=_agreement)

    repro = sub.add_parser("reproduce", help="Regenerate evals/RESULTS.md offline (suite, ablations, sweeps).")
    repro.add_argument("--out", type=Path, help="Work folder (default: <output-dir>/bench-reproduce).")
    repro.add_argument("--results", type=Path, help="Where to write RESULTS.md (default: evals/RESULTS.md).")
    repro.add_argument("--workers", type=int, default=2, help="Pairs run in parallel.")
    repro.add_argument("--quick", action="store_true", help="A tiny smoke version (2 pairs, small sweeps).")
    repro.set_defaults(run=_reproduce)


def _settings(args: argparse.Namespace) -> Any:

    return settings_from(args)


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    from evals.bench.ablations import ablation_overrides

    out: dict[str, object] = {
        "max_rounds": getattr(args, "rounds", None),
        "samples_per_group": getattr(args, "samples_per_group", None),
    }
    out.update(ablation_overrides(getattr(args, "ablation", []) or []))
    return {k: v for k, v in out.items() if v is not None}


def _make_judge(args: argparse.Namespace, settings: Any, has_truth: bool) -> Any:
    from evals.bench.judges import make_judge

    spec = args.judge
    if spec is None:
        if has_truth:
            spec = "structured"
        elif settings.llm != "rules":
            spec = settings.llm
        else:
            raise InputError("this suite has no structured truth: give --judge openai:MODEL (or --llm openai:MODEL)")
    base_url = args.judge_base_url or (settings.llm_base_url if spec == settings.llm else None)
    return make_judge(spec, base_url=base_url)


def _bar(desc: str) -> Any:
    from raddiff.cli.synth import _Bar

    return _Bar(desc)


def _load(args: argparse.Namespace, settings: Any, names: list[str] | None = None) -> Any:
    from evals.bench.suites import load_suite

    bar = _bar("building SynthDiffBench") if args.suite == "synthdiffbench" and not getattr(args, "quiet", 0) else None
    try:
        return load_suite(
            args.suite,
            mimic_root=getattr(args, "mimic_root", None),
            reports_root=getattr(args, "reports_root", None),
            image_root=getattr(args, "image_root", None),
            synth_n=args.synth_n,
            synth_size=args.synth_size,
            seed=settings.seed,
            names=names,
            cache_dir=settings.cache_dir,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()


def _default_out(settings: Any, name: str, ablations: list[str]) -> Path:
    suffix = ("-" + "+".join(sorted(ablations))) if ablations else ""
    return Path(settings.output_dir) / "bench" / f"{name}{suffix}"


def _run(args: argparse.Namespace) -> int:
    from evals.bench.metrics import summary_markdown
    from evals.bench.runner import BenchRunner

    settings = _settings(args)
    wanted = [p for p in (args.pairs or "").split(",") if p.strip()] or None
    names = wanted if args.suite == "synthdiffbench" and wanted and not any(w.isdigit() for w in wanted) else None
    suite = _load(args, settings, names)
    pairs = suite.select(wanted, args.limit)
    if args.suite == "raddiffbench" and args.mimic_root is None:
        raise InputError("raddiffbench: give --mimic-root (MIMIC-CXR-JPG) and --reports-root (MIMIC-CXR reports)")
    judge = _make_judge(args, settings, has_truth=all(p.truth is not None for p in pairs))
    out = args.out or _default_out(settings, Path(suite.name).stem, args.ablation)
    runner = BenchRunner(
        out,
        suite=suite.name,
        judge=judge,
        settings=settings,
        context_overrides=_overrides(args),
        ablations=args.ablation,
        judge_top=args.judge_top,
        workers=args.workers,
    )
    started = time.perf_counter()
    results = runner.run(pairs, progress=not args.quiet)
    summary = runner.write_summary(results)
    print(summary_markdown(summary, f"{suite.name}: {len(results)} pairs"))
    if suite.name == "iureports":
        from evals.bench.iureports import split_figures, split_markdown

        figures = split_figures(out, results)
        (Path(out) / "split.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
        print("\n" + split_markdown(figures))
    print(f"wall time {time.perf_counter() - started:.1f} s; results in {out}/pairs, tables in {out}/summary.md")
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    args.quiet = True
    suite = _load(args, settings)
    for pair in suite.pairs:
        print(f"{pair.index:3d} {pair.pair_id:40s} d={pair.difficulty or '-'}  A: {pair.set1}  |  B: {pair.set2}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from evals.bench.metrics import load_pair_results, summary_markdown
    from evals.bench.runner import write_summary

    for folder in args.folders:
        results = load_pair_results(folder)
        if not results:
            raise InputError(f"{folder}: no pair results (pairs/*.json)")
        summary = write_summary(folder, results, title=str(folder))
        print(summary_markdown(summary, str(folder)))
    return 0


def _diff(args: argparse.Namespace) -> int:
    from evals.bench.compare import diff_bench_dirs

    found = diff_bench_dirs(args.before, args.after)
    print("\n".join(found.lines(args.limit)))
    return 0 if found.identical else 1


def _sweep(args: argparse.Namespace) -> int:
    from evals.bench.runner import BenchRunner
    from evals.bench.suites import jsonl_suite
    from evals.bench.sweeps import DEFAULT_BASES, build_sweep, sweep_build_dir, sweep_markdown

    settings = _settings(args)
    bases = [b.strip() for b in (args.bases or ",".join(DEFAULT_BASES)).split(",") if b.strip()]
    values = [float(v) for v in args.values.split(",")] if args.values else None
    build_dir = sweep_build_dir(settings.cache_dir, args.synth_n, args.synth_size)
    bar = None if args.quiet else _bar(f"building {args.kind} sweep")
    try:
        jsonl = build_sweep(
            args.kind,
            build_dir,
            bases=bases,
            values=values,
            n=args.synth_n,
            size=args.synth_size,
            seed=settings.seed,
            cache_dir=settings.cache_dir,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    suite = jsonl_suite(jsonl)
    out = args.out or _default_out(settings, f"sweep-{args.kind}", args.ablation)
    runner = BenchRunner(
        out,
        suite=f"sweep-{args.kind}",
        judge=_make_judge(args, settings, True),
        settings=settings,
        context_overrides=_overrides(args),
        ablations=args.ablation,
        judge_top=args.judge_top,
        workers=args.workers,
    )
    results = runner.run(suite.pairs, progress=not args.quiet)
    print(sweep_markdown(args.kind, results))
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from evals.bench.reproduce import default_gold_path, judge_agreement

    report = judge_agreement(args.gold or default_gold_path())
    print(json.dumps({k: v for k, v in report.items() if k != "disagreements"}, indent=2))
    for row in report["disagreements"]:
        print(f"  gold {row['gold']} judge {row['judge']}: {row['hypothesis']!r} ({row['group']}) on {row['pair']}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from evals.bench.reproduce import reproduce

    settings = _settings(args)
    path = reproduce(settings, out=args.out, results_path=args.results, workers=args.workers, quick=args.quick)
    print(f"wrote {path}")
    return 0
