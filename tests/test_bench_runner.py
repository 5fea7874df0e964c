"""The benchmark runner: per-pair results, resume, errors recorded, judge errors, tables, ablations; smoke run."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from evals.bench.ablations import ablation_overrides
from evals.bench.judges import JudgeItem, Judgement, TruthContext
from evals.bench.metrics import comparison_markdown, load_pair_results, summarize_suite, summary_markdown
from evals.bench.runner import BenchRunner
from evals.bench.structured_judge import StructuredJudge
from evals.bench.suites import BenchPair, jsonl_suite
from tools.data.jsonl_pairs import PairSpec
from tools.domain import Hypothesis, HypothesisScore, InputError, RunResult, ScoredHypothesis


def _pair(i: int, name: str, truth_finding: str, difficulty: int) -> BenchPair:
    spec = PairSpec(set1=truth_finding.replace("_", " "), set2="none", set1_images=["a.png"], set2_images=["b.png"])
    truth = [{"finding": truth_finding, "attributes": {}, "group": "A"}]
    return BenchPair(pair_id=name, index=i, spec=spec, difficulty=difficulty, truth=truth)


def _result(texts: list[tuple[str, str, float]]) -> RunResult:
    ranked = [
        ScoredHypothesis(
            hypothesis=Hypothesis(text=t, group=g),  # type: ignore[arg-type]
            score=HypothesisScore(auroc=a, ci_low=a, ci_high=a, p_value=0.01, q_value=0.01, mean_a=0, mean_b=0),
        )
        for t, g, a in texts
    ]
    return RunResult(run_id="r", set_a_name="A", set_b_name="B", n_a=5, n_b=5, ranked=ranked, rounds=2)


class FakeAgent:
    """Stands in for the agent: a canned result per pair, a failure for one, call counting (thread-safe)."""

    def __init__(self, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.fail = fail
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeAgent:
        monkeypatch.setattr(BenchRunner, "_run_agent", lambda runner, pair: self.run(pair))
        return self

    def run(self, pair: BenchPair) -> RunResult:
        with self.lock:
            self.calls.append(pair.pair_id)
        if pair.pair_id in self.fail:
            raise InputError(f"pair {pair.pair_id}: broken images")
        finding = pair.truth[0]["finding"]  # type: ignore[index]
        if finding == "pleural_effusion":
            return _result([("pleural effusion", "A", 0.95), ("cardiomegaly", "B", 0.6)])
        others = [(f"rib fracture {i}", "A", 0.7) for i in range(6)]
        return _result([("cardiomegaly", "A", 0.8), *others, ("pneumothorax", "A", 0.55)])


PAIRS = [
    _pair(0, "eff", "pleural_effusion", 1),
    _pair(1, "ptx", "pneumothorax", 3),
    _pair(2, "bad", "nodule", 2),
    _pair(3, "eff2", "pleural_effusion", 2),
]


def _runner(tmp_path: Path, judge: object = None, **kw: object) -> BenchRunner:
    return BenchRunner(tmp_path / "bench", suite="toy", judge=judge or StructuredJudge(), **kw)  # type: ignore[arg-type]


def test_runner_writes_each_pair_records_errors_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = FakeAgent(fail={"bad"}).install(monkeypatch)
    runner = _runner(tmp_path, workers=3)
    results = runner.run(PAIRS, progress=False)
    assert sorted(agent.calls) == ["bad", "eff", "eff2", "ptx"]
    by_id = {r.pair_id: r for r in results}
    assert by_id["eff"].acc1 == 1.0 and by_id["eff"].top_auroc == 0.95
    assert by_id["ptx"].acc1 == 0.0 and by_id["ptx"].acc5 == 0.0  # the right finding is 8th
    assert by_id["ptx"].accn == 1.0
    assert by_id["bad"].status == "error" and "broken images" in (by_id["bad"].error or "")
    for pair in PAIRS:
        stored = json.loads((tmp_path / "bench" / "pairs" / f"{pair.pair_id}.json").read_text())
        assert stored["pair_id"] == pair.pair_id
    assert not list((tmp_path / "bench" / "pairs").glob(".*tmp"))
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert summary["overall"]["n_errors"] == 1 and summary["overall"]["acc1"] == pytest.approx(2 / 3)
    assert summary["by_difficulty"]["hard"]["acc1"] == 0.0
    assert "| all |" in (tmp_path / "bench" / "summary.md").read_text()

    # resume: finished pairs (errors included) are not run again; a deleted result is
    (tmp_path / "bench" / "pairs" / "ptx.json").unlink()
    agent.calls.clear()
    again = runner.run(PAIRS, progress=False)
    assert agent.calls == ["ptx"] and len(again) == 4
    timing = runner.timing()
    assert (timing["pairs_run"], timing["invocations"]) == (5, 2) and timing["seconds"] >= 0
    runner.run(PAIRS, progress=False)  # nothing left to run: the timing is unchanged
    assert runner.timing() == timing


def test_runner_refuses_to_mix_configurations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeAgent().install(monkeypatch)
    _runner(tmp_path).run(PAIRS[:1], progress=False)
    other = _runner(tmp_path, ablations=["no_zoom"], context_overrides=ablation_overrides(["no_zoom"]))
    with pytest.raises(InputError, match="another ablations"):
        other.run(PAIRS[:1], progress=False)
    # retrained weights: stored results are not resumed into the new run
    monkeypatch.setattr("evals.bench.runner.weights_fingerprint", lambda: {"mini-cxr-clip.safetensors": "0" * 16})
    with pytest.raises(InputError, match="another weights"):
        _runner(tmp_path).run(PAIRS[:1], progress=False)
    monkeypatch.undo()
    FakeAgent().install(monkeypatch)
    _runner(tmp_path).run(PAIRS[:1], progress=False)  # the same configuration resumes
    # changed code (another policy, scorer or judge): stored results are not resumed either
    monkeypatch.setattr("evals.bench.runner.code_fingerprint", lambda: "1" * 16)
    with pytest.raises(InputError, match="another code"):
        _runner(tmp_path).run(PAIRS[:1], progress=False)


def test_code_fingerprint_follows_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from evals.bench import runner

    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runner, "CODE_PACKAGES", ("fakepkg",))
    runner.code_fingerprint.cache_clear()
    first = runner.code_fingerprint()
    (package / "notes.md").write_text("a document, not code\n")
    runner.code_fingerprint.cache_clear()
    assert runner.code_fingerprint() == first
    (package / "policy.py").write_text("THRESHOLD = 0.5\n")
    runner.code_fingerprint.cache_clear()
    assert runner.code_fingerprint() != first
    runner.code_fingerprint.cache_clear()
    sys.modules.pop("fakepkg", None)


class BrokenJudge:
    """A judge whose service fails on every hypothesis."""

    name = "broken"

    def judge(self, items: list[JudgeItem], truth: TruthContext) -> list[Judgement]:
        return [Judgement(hypothesis=i.text, group=i.group, error="service down") for i in items]


def test_judge_errors_are_not_zeros(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeAgent().install(monkeypatch)
    results = _runner(tmp_path, judge=BrokenJudge()).run(PAIRS[:2], progress=False)
    assert all(r.status == "ok" and r.acc1 is None and r.acc5 is None for r in results)
    assert all(h.judge_error == "service down" and h.score is None for r in results for h in r.hypotheses)
    overall = summarize_suite(results)["overall"]
    assert overall["n_judge_errors"] == 2 and overall["acc1"] is None


def test_tables_and_comparison() -> None:
    assert "not run here (needs credentialed MIMIC-CXR access)" in comparison_markdown({})
    summary = {"overall": {"n_ok": 3, "acc1": 0.5, "acc5": 1.0}, "by_difficulty": {"easy": {"n_ok": 1, "acc1": 1.0}}}
    table = comparison_markdown({"synthdiffbench": summary})
    assert "| VisDiff (paper) | VisDiffBench (general images) | hard | 0.61 | 0.80 | no (published)" in table
    assert "SynthDiffBench (synthetic) | all | 0.50 | 1.00 | yes" in table
    assert "| easy | 1 | - | 1.000 |" in summary_markdown(summary)


def test_ablation_overrides() -> None:
    assert ablation_overrides(["single_pass", "no_zoom"]) == {"refine": False, "use_zoom": False}
    assert ablation_overrides(["reports_only"]) == {"use_images": False, "scorer": "reports"}
    assert ablation_overrides(["single_prompt"]) == {"contrast_scoring": False}
    with pytest.raises(InputError, match="unknown"):
        ablation_overrides(["no_brain"])
    with pytest.raises(InputError, match="exclude"):
        ablation_overrides(["no_reports", "reports_only"])


def _weights_present() -> bool:
    from tools.scorers.mini import WEIGHTS_FILE, weights_dir

    return (weights_dir() / WEIGHTS_FILE).is_file()


@pytest.mark.slow
@pytest.mark.skipif(not _weights_present(), reason="mini model weights not trained yet")
def test_smoke_offline_stack_on_tiny_synth_pairs(tmp_path: Path) -> None:
    from evals.synth.bench import build_pair
    from evals.synth.pairs import PRESETS
    from tools.settings import Settings

    specs = [PRESETS["cardiomegaly"].model_copy(update={"n_a": 8, "n_b": 8, "size": 128})]
    jsonl = build_pair(specs[0], tmp_path / "synth", seed=0, cache_dir=tmp_path / "cache")
    suite = jsonl_suite(jsonl)
    settings = Settings(cache_dir=tmp_path / "cache", output_dir=tmp_path / "runs")
    runner = BenchRunner(
        tmp_path / "bench",
        suite="smoke",
        judge=StructuredJudge(),
        settings=settings,
        context_overrides={"llm": "rules", "scorer": "mini", "describer": "mini", "max_rounds": 2},
        workers=1,
    )
    (result,) = runner.run(suite.pairs, progress=False)
    assert result.status == "ok", result.error
    assert result.hypotheses and all(h.score is not None for h in result.hypotheses)
    assert result.tool_calls > 0 and result.rounds >= 1
    assert (tmp_path / "bench" / "runs" / result.pair_id / "result.json").is_file()
    assert load_pair_results(tmp_path / "bench")[0].pair_id == result.pair_id


def test_sweep_tables_and_confounded_outcome(tmp_path: Path) -> None:
    from evals.bench.metrics import JudgedHypothesis, PairResult
    from evals.bench.sweeps import _add_device_flag, confounded_outcome, sweep_markdown

    def judged(text: str, score: int) -> JudgedHypothesis:
        return JudgedHypothesis(rank=1, text=text, group="A", auroc=0.9, score=score)

    conf = PairResult(
        pair_id="eff_conf_pacemaker",
        index=0,
        suite="s",
        status="ok",
        acc1=0.0,
        acc5=1.0,
        hypotheses=[judged("pacemaker", 0), judged("pleural effusion", 2)],
        confounder_flags=["Metadata alone separates the groups: pacemaker = 'True' in 80% of group A ..."],
        extra={"sweep": {"kind": "confounded", "base": "eff", "value": "pacemaker"}},
    )
    assert confounded_outcome(conf, "pacemaker") == {
        "finding_top1": False,
        "finding_top5": True,
        "nuisance_top5": True,
        "flagged": True,
    }
    # a warning that two hypotheses follow each other is not a warning about the pacemaker field
    overlap = "Hypothesis 'pacemaker': its scores follow those of 'pleural effusion' within the groups ..."
    assert not confounded_outcome(conf.model_copy(update={"confounder_flags": [overlap]}), "pacemaker")["flagged"]
    view = conf.model_copy(update={"confounder_flags": [], "extra": {"sweep": {"base": "eff", "value": "view"}}})
    assert confounded_outcome(view, "view")["nuisance_top5"] is None
    table = sweep_markdown("confounded", [conf, view])
    assert "| eff | pacemaker | 0.00 | 1.00 | yes | yes | yes |" in table
    assert "| eff | view | 0.00 | 1.00 | yes | n/a (not a finding) | no |" in table

    rows = [
        conf.model_copy(update={"index": i, "acc1": a, "extra": {"sweep": {"base": "eff", "value": p}}})
        for i, (p, a) in enumerate([(1.0, 1.0), (0.5, 0.0)])
    ]
    purity = sweep_markdown("purity", rows)
    assert "| 1.0 | 1.00 | 1.00 |" in purity and "| 0.5 | 0.00 | 1.00 |" in purity

    image = tmp_path / "x.png"
    image.with_suffix(".json").write_text(json.dumps({"findings": [{"finding": "pacemaker"}], "view_position": "AP"}))
    _add_device_flag(image, "pacemaker")
    assert json.loads(image.with_suffix(".json").read_text())["pacemaker"] is True


def test_results_markdown_renders_every_section() -> None:
    from evals.bench.metrics import PairResult, summarize
    from evals.bench.reproduce import Plan, judge_agreement, render_results
    from evals.bench.suites import Suite

    main = [
        PairResult(pair_id=f"p{i}", index=i, suite="synthdiffbench", status="ok", difficulty=1 + i % 3,
                   acc1=a, acc5=1.0, accn=1.0, top_auroc=0.9, seconds=10.0)
        for i, a in enumerate([1.0, 0.5, 1.0])
    ]  # fmt: skip
    text = render_results(
        suite=Suite("synthdiffbench", []),
        main=main,
        main_summary=summarize_suite(main),
        timings={"build_suite_s": 60.0, "main_run_s": 2000.0},
        ablation_rows=[("full agent", summarize(main)), ("no_zoom", summarize(main[:1]))],
        n_subset=3,
        sweeps={"purity": "PURITY TABLE", "size": "SIZE TABLE", "confounded": "CONF TABLE"},
        sweep_seconds={"purity": 60.0},
        agreement=judge_agreement(Path(__file__).parent / "data" / "judge_gold.jsonl"),
        plan=Plan(),
        workers=2,
        quick=False,
        second={"seed": 1, "results": main[1:], "summary": summarize_suite(main[1:])},
    )
    assert "acc@1 0.833 (target >= 0.80: reached)" in text
    assert "## SynthDiffBench, second draw (seed 1)" in text and "acc@1 0.750, acc@5 1.000." in text
    assert "(acc@1 < 1): `p1` (acc@1 0.5, acc@5 1.0)." in text
    assert "acc@5 1.000 (target >= 0.95: reached)" in text
    assert "suite wall time 33.3 min (target <= 30 min: NOT reached)" in text
    assert "| no_zoom | no localize-and-zoom | 1 | - | - | - | 1.000 |" in text and "+0.167" in text
    assert "Over the differences list: acc@1 - (target >= 0.90: NOT reached), false-difference rate -" in text
    for part in ("PURITY TABLE", "SIZE TABLE", "CONF TABLE", "Cohen's kappa", "VisDiff (paper)", "raddiff bench"):
        assert part in text
