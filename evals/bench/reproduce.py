"""Regenerate ``evals/RESULTS.md`` offline: ``raddiff bench reproduce``.

Steps: structured-judge agreement on the hand-labelled cases; the SynthDiffBench default suite with the
offline stack (rules policy, mini scorer, mini describer) and the structured judge; every ablation on a
subset of the suite; the purity, size and confounded sweeps; then the Markdown report. Every step stores
per-pair results under the work folder, so an interrupted reproduction resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.bench.metrics import PairResult, comparison_markdown, summarize, summarize_suite, summary_markdown
from evals.bench.runner import (
    BenchRunner,
    code_fingerprint,
    weights_fingerprint,
    write_json_atomic,
    write_text_atomic,
)
from evals.bench.suites import Suite
from tools.domain import InputError

ABLATION_ORDER = ("single_pass", "no_zoom", "single_prompt", "no_reports", "reports_only")


def default_gold_path() -> Path:
    """``tests/data/judge_gold.jsonl`` of the source checkout."""
    return Path(__file__).resolve().parents[2] / "tests" / "data" / "judge_gold.jsonl"


def default_results_path() -> Path:
    """``evals/RESULTS.md`` of the source checkout."""
    return Path(__file__).resolve().parents[1] / "RESULTS.md"


def judge_agreement(gold: Path) -> dict[str, Any]:
    """Agreement of the structured judge with hand labels: accuracy, Cohen's kappa, confusion, by kind."""
    from evals.bench.judges import TruthContext
    from evals.bench.structured_judge import StructuredJudge

    if not Path(gold).is_file():
        raise InputError(f"{gold}: gold file not found")
    rows = [json.loads(line) for line in Path(gold).read_text(encoding="utf-8").splitlines() if line.strip()]
    judge = StructuredJudge()
    confusion: Counter[tuple[int, int]] = Counter()
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    disagreements = []
    for row in rows:
        truth = TruthContext(row["set1"], row["set2"], row["truth"])
        score, reason = judge.score(row["hypothesis"], row["group"], truth)
        confusion[(int(row["score"]), score)] += 1
        kind = str(row.get("kind", "")).split("_")[0]
        by_kind[kind][1] += 1
        if score == row["score"]:
            by_kind[kind][0] += 1
        else:
            disagreements.append(
                {
                    **{k: row[k] for k in ("pair", "hypothesis", "group")},
                    "gold": row["score"],
                    "judge": score,
                    "reason": reason,
                }
            )
    n = len(rows)
    agree = sum(v for (g, j), v in confusion.items() if g == j)
    p_o = agree / n if n else 0.0
    gold_marg = Counter(g for (g, _j), v in confusion.items() for _ in range(v))
    judge_marg = Counter(j for (_g, j), v in confusion.items() for _ in range(v))
    p_e = sum(gold_marg[k] * judge_marg[k] for k in (0, 1, 2)) / (n * n) if n else 0.0
    kappa = (p_o - p_e) / (1 - p_e) if p_e < 1 else 1.0
    return {
        "n": n,
        "agree": agree,
        "accuracy": p_o,
        "kappa": kappa,
        "confusion": {f"gold {g} / judge {j}": confusion[(g, j)] for g in (0, 1, 2) for j in (0, 1, 2)},
        "gold_counts": {str(k): gold_marg[k] for k in (0, 1, 2)},
        "by_kind": {k: {"n": v[1], "agree": v[0]} for k, v in sorted(by_kind.items())},
        "disagreements": disagreements,
    }


@dataclass
class Plan:
    """What the reproduction runs (sizes chosen to keep the whole of it within about an hour on 2 cores)."""

    suite_n: int = 20
    suite_size: int = 256
    suite_pairs: list[str] | None = None
    ablation_every: int = 1  # ablations run on every k-th pair of the suite (stratified by order)
    purity_bases: list[str] = field(
        default_factory=lambda: ["effusion_right_moderate", "cardiomegaly_moderate", "rul_consolidation"]
    )
    purity_values: list[float] = field(default_factory=lambda: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    size_bases: list[str] = field(default_factory=lambda: ["ptx_small"])
    size_values: list[int] = field(default_factory=lambda: [10, 25, 50, 100, 250, 500])
    confound_bases: list[str] = field(
        default_factory=lambda: ["effusion_right_moderate", "cardiomegaly_moderate", "rul_consolidation"]
    )
    second_draw_seed: int | None = 1
    """The same pairs rendered and sampled with another seed: the default suite is also what the policy is
    developed on, so a second draw of its images tells how much of its accuracy is fitted to those images."""

    @classmethod
    def quick(cls) -> Plan:
        """A smoke plan: two pairs, ten studies per group, one-value sweeps."""
        return cls(
            suite_n=10,
            suite_pairs=["effusion_right_large", "cvc_present"],
            ablation_every=1,
            purity_bases=["effusion_right_large"],
            purity_values=[1.0, 0.5],
            size_bases=["effusion_right_large"],
            size_values=[10],
            confound_bases=["effusion_right_large"],
            second_draw_seed=None,
        )


def _runner(out: Path, suite: str, settings: Any, ablations: list[str], workers: int) -> BenchRunner:
    from evals.bench.ablations import ablation_overrides
    from evals.bench.structured_judge import StructuredJudge

    return BenchRunner(
        out,
        suite=suite,
        judge=StructuredJudge(),
        settings=settings,
        context_overrides=ablation_overrides(ablations),
        ablations=ablations,
        workers=workers,
    )


def _timed(meta_path: Path, key: str, fn: Any) -> tuple[Any, float]:
    """Run ``fn``; remember its wall time in ``meta_path`` the first time it does real work."""
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    if key not in meta or seconds > meta[key]:
        meta[key] = round(seconds, 1)
        write_json_atomic(meta_path, meta)
    return value, float(meta[key])


def reproduce(
    settings: Any,
    *,
    out: Path | None = None,
    results_path: Path | None = None,
    workers: int = 2,
    quick: bool = False,
    plan: Plan | None = None,
) -> Path:
    """Run everything RESULTS.md reports and write it; returns the path written."""
    from evals.bench.suites import jsonl_suite, synthdiffbench
    from evals.bench.sweeps import build_sweep, sweep_build_dir, sweep_markdown

    plan = plan or (Plan.quick() if quick else Plan())
    if out is None:  # one work folder per weights and code: neither retrained weights nor changed code resume
        fingerprint = {"weights": weights_fingerprint(), "code": code_fingerprint()}  # stale results
        tag = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:10]
        out = Path(settings.output_dir) / ("bench-reproduce-quick" if quick else "bench-reproduce") / tag
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = results_path or (out / "RESULTS.md" if quick else default_results_path())
    meta_path = out / "timings.json"
    agreement = judge_agreement(default_gold_path())

    def build_suite(seed: int) -> Any:
        return synthdiffbench(
            Path(settings.cache_dir) / "synthdiffbench",
            n=plan.suite_n,
            size=plan.suite_size,
            seed=seed,
            names=plan.suite_pairs,
            cache_dir=settings.cache_dir,
        )

    suite, build_s = _timed(meta_path, "build_suite_s", lambda: build_suite(settings.seed))
    main_runner = _runner(out / "full", "synthdiffbench", settings, [], workers)
    main = main_runner.run(suite.pairs)
    main_s = float(main_runner.timing()["seconds"])
    main_summary = summarize_suite(main)

    second: dict[str, Any] | None = None
    if plan.second_draw_seed is not None:
        draw_settings = settings.model_copy(update={"seed": plan.second_draw_seed})
        draw = build_suite(plan.second_draw_seed)
        draw_runner = _runner(
            out / f"second-draw-seed{plan.second_draw_seed}", "synthdiffbench", draw_settings, [], workers
        )
        second = {"seed": plan.second_draw_seed, "results": draw_runner.run(draw.pairs)}
        second["summary"] = summarize_suite(second["results"])

    subset = suite.pairs[:: plan.ablation_every]
    subset_ids = {p.pair_id for p in subset}
    ablation_rows = [("full agent", summarize([r for r in main if r.pair_id in subset_ids]))]
    for name in ABLATION_ORDER:
        results = _runner(out / f"ablation-{name}", "synthdiffbench", settings, [name], workers).run(subset)
        ablation_rows.append((name, summarize(results)))

    sweeps: dict[str, tuple[list[PairResult], float]] = {}
    for kind, bases, values in (
        ("purity", plan.purity_bases, plan.purity_values),
        ("confounded", plan.confound_bases, None),
        ("size", plan.size_bases, [float(v) for v in plan.size_values]),
    ):
        build_dir = sweep_build_dir(settings.cache_dir, plan.suite_n, plan.suite_size)
        jsonl = build_sweep(
            kind,
            build_dir,
            bases=bases,
            values=values,
            n=plan.suite_n,
            size=plan.suite_size,
            seed=settings.seed,
            cache_dir=settings.cache_dir,
        )
        sweep_suite = jsonl_suite(jsonl)
        sweep_runner = _runner(out / f"sweep-{kind}", f"sweep-{kind}", settings, [], workers)
        results = sweep_runner.run(sweep_suite.pairs)
        seconds = float(sweep_runner.timing()["seconds"])
        sweeps[kind] = (results, seconds)

    text = render_results(
        suite=suite,
        main=main,
        main_summary=main_summary,
        timings={"build_suite_s": build_s, "main_run_s": main_s},
        ablation_rows=ablation_rows,
        n_subset=len(subset),
        sweeps={k: sweep_markdown(k, v[0]) for k, v in sweeps.items()},
        sweep_seconds={k: v[1] for k, v in sweeps.items()},
        agreement=agreement,
        plan=plan,
        workers=workers,
        quick=quick,
        second=second,
    )
    write_text_atomic(results_path, text)
    write_json_atomic(
        out / "results.json",
        {
            "suite": main_summary,
            "second_draw": None if second is None else {"seed": second["seed"], "suite": second["summary"]},
            "ablations": dict(ablation_rows),
            "agreement": {k: v for k, v in agreement.items()},
        },
    )
    return results_path


def _second_draw_lines(second: dict[str, Any] | None) -> list[str]:
    """The RESULTS.md section of the second draw: its summary table and the pairs it misses."""
    if second is None:
        return []
    overall = second["summary"]["overall"]
    missed = [r for r in second["results"] if r.acc1 is not None and r.acc1 < 1.0]
    lines = [
        f"## SynthDiffBench, second draw (seed {second['seed']})",
        "",
        "The same pairs with other images and other samples (`RADDIFF_SEED="
        f"{second['seed']} raddiff bench run synthdiffbench`). The default suite is also what the policy is "
        "developed on; this draw says how much of its accuracy holds on images it was not tuned on. Differences "
        f"list: acc@1 {_f(overall.get('diff_acc1'))}, false-difference rate {_f(overall.get('false_difference_rate'))}"
        f", planted recall {_f(overall.get('planted_recall'))}, no-difference pairs with none reported "
        f"{_f(overall.get('null_clean'), 2)}; ranked hypotheses (RadDiff protocol): "
        f"acc@1 {_f(overall['acc1'])}, acc@5 {_f(overall['acc5'])}.",
        "",
        summary_markdown(second["summary"]),
        "Pairs whose top hypothesis is not the difference (acc@1 < 1): "
        + (", ".join(f"`{r.pair_id}` (acc@1 {_f(r.acc1, 1)}, acc@5 {_f(r.acc5, 1)})" for r in missed) or "none")
        + ".",
        "",
    ]
    return lines


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_results(
    *,
    suite: Suite,
    main: list[PairResult],
    main_summary: dict[str, Any],
    timings: dict[str, float],
    ablation_rows: list[tuple[str, dict[str, Any]]],
    n_subset: int,
    sweeps: dict[str, str],
    sweep_seconds: dict[str, float],
    agreement: dict[str, Any],
    plan: Plan,
    workers: int,
    quick: bool,
    second: dict[str, Any] | None = None,
) -> str:
    """The RESULTS.md text (``second``: the second draw's seed, results and summary, if it was run)."""
    from evals.bench.ablations import ABLATIONS
    from evals.bench.metrics import pairs_markdown

    overall = main_summary["overall"]
    full_row = ablation_rows[0][1]
    abl_lines = [
        "| configuration | what is switched off | pairs | acc@1 (differences) | false-difference rate | "
        "planted recall | acc@1 | acc@5 | top AUROC | rounds | s / pair | acc@1 vs full | acc@5 vs full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, block in ablation_rows:
        what = ABLATIONS[name][0] if name in ABLATIONS else "nothing"
        d1 = None if block["acc1"] is None or full_row["acc1"] is None else block["acc1"] - full_row["acc1"]
        d5 = None if block["acc5"] is None or full_row["acc5"] is None else block["acc5"] - full_row["acc5"]
        abl_lines.append(
            f"| {name} | {what} | {block['n_ok']} | {_f(block.get('diff_acc1'))} | "
            f"{_f(block.get('false_difference_rate'))} | {_f(block.get('planted_recall'))} | "
            f"{_f(block['acc1'])} | {_f(block['acc5'])} | "
            f"{_f(block['top_auroc'])} | {_f(block['rounds'], 2)} | {_f(block['seconds'], 1)} | "
            f"{'' if d1 is None else f'{d1:+.3f}'} | {'' if d5 is None else f'{d5:+.3f}'} |"
        )

    def verdict(ok: bool) -> str:
        return "reached" if ok else "NOT reached"

    fdr = overall.get("false_difference_rate")
    targets = (
        f"Over the differences list: acc@1 {_f(overall.get('diff_acc1'))} (target >= 0.90: "
        f"{verdict((overall.get('diff_acc1') or 0) >= 0.90)}), false-difference rate {_f(fdr)} (target <= 0.10: "
        f"{verdict(fdr is not None and fdr <= 0.10)}), planted recall {_f(overall.get('planted_recall'))} "
        f"(target >= 0.90: {verdict((overall.get('planted_recall') or 0) >= 0.90)}), no-difference pairs with none "
        f"reported {_f(overall.get('null_clean'), 2)} (target >= 0.90: "
        f"{verdict((overall.get('null_clean') or 0) >= 0.90)}); the ranked list's own false rate (significant "
        f"hypotheses judged 0) {_f(overall.get('ranked_false_rate'))}. RadDiff's protocol over the ranked hypotheses: "
        f"acc@1 {_f(overall['acc1'])} (target >= 0.80: {verdict((overall['acc1'] or 0) >= 0.80)}), "
        f"acc@5 {_f(overall['acc5'])} (target >= 0.95: {verdict((overall['acc5'] or 0) >= 0.95)}), "
        f"suite wall time {timings['main_run_s'] / 60:.1f} min (target <= 30 min: "
        f"{verdict(timings['main_run_s'] <= 1800)})"
    )
    kinds = ", ".join(f"{k} {v['agree']}/{v['n']}" for k, v in agreement["by_kind"].items())
    dis = "\n".join(
        f'- gold {d["gold"]}, judge {d["judge"]}: "{d["hypothesis"]}" (more in {d["group"]}) on `{d["pair"]}` '
        f"- {d['reason']}"
        for d in agreement["disagreements"]
    )
    lines = [
        "# Results" + (" (quick smoke version)" if quick else ""),
        "",
        "Generated by `raddiff bench reproduce`; do not edit by hand.",
        f"Offline stack: `--llm rules --scorer mini --describer mini`, structured judge; seed 0; {workers} worker "
        f"threads; Python {platform.python_version()} on {platform.machine()}, {_cpus()} CPU cores "
        "(timings are noisy when other jobs share the machine).",
        "",
        "## SynthDiffBench (default suite)",
        "",
        f"{len(main)} pairs, {plan.suite_n} studies per group, {plan.suite_size} px. " + targets + ".",
        f"Weights: {', '.join(f'`{k}` (sha256 {v})' for k, v in weights_fingerprint().items()) or 'none'}. "
        + (
            f"Building the suite took {timings['build_suite_s'] / 60:.1f} min (rendering; cached afterwards)."
            if timings["build_suite_s"] >= 10
            else "The suite's images were already rendered (cached)."
        )
        + " The wall "
        "time is that of the invocations that ran the pairs (rendered images cached; embeddings cached only if an "
        "earlier run with the same weights computed them).",
        "",
        summary_markdown(main_summary),
        "Per pair (top hypothesis):",
        "",
        pairs_markdown(main),
        *_second_draw_lines(second),
        "## Comparison with published figures",
        "",
        comparison_markdown({"synthdiffbench": main_summary}),
        "## Ablations",
        "",
        "Each ablation is one flag of `raddiff bench run` (`--ablation NAME`). Run on "
        + ("every pair" if plan.ablation_every == 1 else f"every {plan.ablation_every}-th pair (suite order)")
        + f" of the suite ({n_subset} pairs, all difficulties); the full-agent row is the main run restricted to "
        "the same pairs.",
        "",
        "\n".join(abl_lines),
        "",
        "## Robustness sweeps",
        "",
        f"### Purity (fraction of group A that has the finding; {sweep_seconds.get('purity', 0) / 60:.1f} min)",
        "",
        sweeps.get("purity", ""),
        f"### Set size (studies per group; {sweep_seconds.get('size', 0) / 60:.1f} min)",
        "",
        sweeps.get("size", ""),
        f"### Confounded pairs ({sweep_seconds.get('confounded', 0) / 60:.1f} min)",
        "",
        "A nuisance differs between the groups along with the true finding: the view (A all AP, B all PA) or a "
        "pacemaker (80% of A, 5% of B; a `pacemaker` flag is in the metadata). 'finding in top 5': a hypothesis "
        "judged >= 1 is among the top five; 'nuisance in top 5': a top-five hypothesis names the nuisance; "
        "'flags it': the confounder check warns about the nuisance field.",
        "",
        sweeps.get("confounded", ""),
        "## Structured judge agreement",
        "",
        f"{agreement['n']} hand-labelled (hypothesis, ground truth, score) cases in `tests/data/judge_gold.jsonl` "
        f"(labelled from the rubric before the judge was run; gold scores 0/1/2: "
        f"{agreement['gold_counts']['0']}/{agreement['gold_counts']['1']}/{agreement['gold_counts']['2']}): "
        f"agreement {agreement['agree']}/{agreement['n']} = {agreement['accuracy']:.3f}, Cohen's kappa "
        f"{agreement['kappa']:.3f}. By case kind: {kinds}.",
        "",
        "Disagreements:",
        "",
        dis or "- none",
        "",
        "## Commands",
        "",
        "```",
        "raddiff bench reproduce                      # everything above, offline (resumable)",
        "raddiff bench run synthdiffbench             # the default suite (--limit, --pairs, --workers)",
        "raddiff bench run synthdiffbench --ablation single_pass   # one ablation",
        "raddiff bench sweep purity                   # or size, confounded",
        "raddiff bench agreement                      # judge agreement",
        "raddiff bench run raddiffbench --mimic-root /data/mimic-cxr-jpg --reports-root /data/mimic-cxr \\",
        "    --llm openai:gpt-4.1-mini --describer openai:gpt-4.1-mini --scorer chexzero:/path/best_64.pt",
        "```",
        "",
    ]
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return os.cpu_count() or 1
