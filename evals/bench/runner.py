"""The benchmark runner: pairs in a thread pool, one result file per pair as soon as it is done, resumable.

Layout of a benchmark folder ``<out>``::

    run.json                 the run's configuration (suite, judge, ablations, agent context)
    pairs/<pair_id>.json     one :class:`~evals.bench.metrics.PairResult` per finished pair (atomic write)
    runs/<pair_id>/          the agent's run folder (checkpoints, trace, result.json / result.md)
    summary.json, summary.md tables (rewritten at the end, and by ``raddiff bench report``)

Resuming (running again with the same ``<out>``) skips pairs whose result file exists and continues an
interrupted agent run from its checkpoint. Threads share the model backends (the registries cache one model
per process); a pair that fails is recorded with ``status='error'`` and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

from evals.bench.judges import Judge, JudgeItem, TruthContext
from evals.bench.metrics import (
    JudgedDifference,
    JudgedHypothesis,
    PairResult,
    accuracy_at,
    load_pair_results,
    pairs_markdown,
    summarize_suite,
    summary_markdown,
)
from evals.bench.structured_judge import StructuredJudge, truth_differences
from evals.bench.suites import BenchPair
from tools.domain import InputError, RadDiffError, RunResult

log = logging.getLogger(__name__)

CONFIG_KEYS_MUST_MATCH = ("suite", "judge", "ablations", "context", "weights", "code")
CODE_PACKAGES = ("agent", "tools", "graphs", "evals", "prompts")
"""The packages whose source decides a benchmark result (policy, scoring, judging, prompts)."""


def weights_fingerprint() -> dict[str, str]:
    """SHA-256 (16 hex digits) of each committed model weights file: results of other weights must not mix."""
    from tools.scorers.mini import file_sha256, weights_dir

    return {p.name: file_sha256(p)[:16] for p in sorted(weights_dir().glob("*.safetensors"))}


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (16 hex digits) over the project's source files (``*.py`` and the prompt templates of
    :data:`CODE_PACKAGES`, wherever they are installed): results of other code must not mix either, so a
    resumed run or ``raddiff bench reproduce`` never reuses pair results that an older policy produced."""
    import importlib

    digest = hashlib.sha256()
    for name in CODE_PACKAGES:
        root = Path(importlib.import_module(name).__file__ or "").parent
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".md", ".txt", ".yaml") and path.is_file() and "__pycache__" not in path.parts:
                if path.suffix == ".md" and name != "prompts":
                    continue  # documents (evals/RESULTS.md, the model card) are outputs, not code
                digest.update(f"{name}/{path.relative_to(root).as_posix()}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace`` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _trace_counts(run_dir: Path) -> tuple[int, int, int]:
    """(tool calls, LLM calls, tokens) of a run, read from its trace."""
    from agent.trace import read_trace

    path = run_dir / "trace.jsonl"
    if not path.is_file():
        return 0, 0, 0
    tools = llm = tokens = 0
    for event in read_trace(path):
        if event.get("event") == "tool":
            tools += 1
        budget = (event.get("update") or {}).get("budget") if event.get("event") == "node_end" else None
        if isinstance(budget, dict):
            llm = max(llm, int(budget.get("llm_calls", 0)))
            tokens = max(tokens, int(budget.get("tokens", 0)))
    return tools, llm, tokens


class BenchRunner:
    """Runs the agent on benchmark pairs and judges the results.

    ``context_overrides`` are :class:`~agent.context.RunContext` fields (llm, scorer, describer, max_rounds,
    ablation switches...) applied on top of ``settings``.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        suite: str,
        judge: Judge,
        settings: Any = None,
        context_overrides: dict[str, object] | None = None,
        ablations: Sequence[str] = (),
        judge_top: int = 10,
        workers: int = 2,
    ) -> None:
        from tools.settings import Settings

        if workers < 1:
            raise InputError(f"--workers {workers}: must be at least 1")
        if judge_top < 5:
            raise InputError(f"--judge-top {judge_top}: must be at least 5 (acc@5 needs five)")
        self.out_dir = Path(out_dir)
        self.suite = suite
        self.judge = judge
        self.settings = settings or Settings()
        self.overrides = dict(context_overrides or {})
        self.ablations = list(ablations)
        self.judge_top = judge_top
        self.workers = workers
        self._judge_lock = threading.Lock()

    # ------------------------------------------------------------------ configuration

    def config(self) -> dict[str, Any]:
        """The run's configuration as stored in ``run.json``."""
        context = self._context("probe").model_dump(mode="json", exclude={"run_id", "run_dir"})
        return {
            "suite": self.suite,
            "judge": self.judge.name,
            "judge_top": self.judge_top,
            "ablations": sorted(self.ablations),
            "context": context,
            "weights": weights_fingerprint(),
            "code": code_fingerprint(),
        }

    def _check_config(self) -> None:
        path = self.out_dir / "run.json"
        config = self.config()
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            for key in CONFIG_KEYS_MUST_MATCH:
                if stored.get(key) != config.get(key):
                    raise InputError(
                        f"{self.out_dir}: holds a run with another {key} ({stored.get(key)!r}); "
                        "use a new --out folder to run a different configuration"
                    )
        write_json_atomic(path, config)

    def _context(self, pair_id: str) -> Any:
        from agent.context import RunContext

        return RunContext.from_settings(
            self.settings,
            run_id=f"{self.suite}-{pair_id}",
            run_dir=self.out_dir / "runs" / pair_id,
            **self.overrides,
        )

    def result_path(self, pair: BenchPair) -> Path:
        """Where a pair's result is written."""
        return self.out_dir / "pairs" / f"{pair.pair_id}.json"

    # ------------------------------------------------------------------ running

    def run(
        self, pairs: Sequence[BenchPair], *, progress: bool = True, on_done: Callable[[PairResult], None] | None = None
    ) -> list[PairResult]:
        """Run every pair not done yet (thread pool), then return all stored results of these pairs."""
        self._check_config()
        started = time.perf_counter()
        todo = [p for p in pairs if not self.result_path(p).is_file()]
        n_todo = len(todo)
        if len(todo) < len(pairs):
            log.info("resuming: %d of %d pairs already done", len(pairs) - len(todo), len(pairs))
        bar = _progress_bar(len(pairs), len(pairs) - len(todo), f"bench {self.suite}") if progress else None

        def done(result: PairResult) -> None:
            if bar is not None:
                bar.set_postfix_str(f"{result.pair_id}: acc@1 {result.acc1}", refresh=False)
                bar.update(1)
            if on_done is not None:
                on_done(result)

        try:
            with self._shared_llm(bool(todo)):
                if todo and self.workers > 1:
                    # the first pair runs alone: it loads the shared backends (lazy imports are not thread-safe)
                    done(self.run_pair(todo[0]))
                    todo = todo[1:]
                with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bench") as pool:
                    futures = {pool.submit(self.run_pair, pair): pair for pair in todo}
                    for future in as_completed(futures):
                        done(future.result())
        finally:
            if bar is not None:
                bar.close()
        if n_todo:
            self._add_timing(time.perf_counter() - started, n_todo)
        wanted = {p.pair_id for p in pairs}
        results = [r for r in load_pair_results(self.out_dir) if r.pair_id in wanted]
        self.write_summary(results)
        return results

    def _shared_llm(self, needed: bool) -> AbstractContextManager[object]:
        """With ``--llm local``: one local LLM server for the whole benchmark (each pair's run shares it)."""
        from tools.llm.local import is_local, local_server

        llm = str(self.overrides.get("llm") or getattr(self.settings, "llm", "rules"))
        if not needed or not is_local(llm):
            return nullcontext()
        return local_server(llm, Path(self.settings.cache_dir))

    def _add_timing(self, seconds: float, n_pairs: int) -> None:
        path = self.out_dir / "timing.json"
        timing = self.timing()
        timing = {
            "seconds": round(timing["seconds"] + seconds, 1),
            "pairs_run": timing["pairs_run"] + n_pairs,
            "invocations": timing["invocations"] + 1,
        }
        write_json_atomic(path, timing)

    def timing(self) -> dict[str, Any]:
        """Wall time spent running pairs in this folder, summed over the invocations that ran any pair."""
        path = self.out_dir / "timing.json"
        if path.is_file():
            stored: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return stored
        return {"seconds": 0.0, "pairs_run": 0, "invocations": 0}

    def run_pair(self, pair: BenchPair) -> PairResult:
        """Run, judge and store one pair; failures are stored as ``status='error'`` (never raised)."""
        started = time.perf_counter()
        base = PairResult(
            pair_id=pair.pair_id,
            index=pair.index,
            suite=self.suite,
            status="ok",
            difficulty=pair.difficulty,
            purity=pair.purity,
            set1=pair.set1,
            set2=pair.set2,
            judge=self.judge.name,
            ablations=sorted(self.ablations),
            extra=dict(pair.extra),
        )
        try:
            result = self._run_agent(pair)
            judged = self._judge(pair, result)
            differences, planted, found = self._judge_differences(pair, result)
        except Exception as exc:  # a failing pair is recorded as an error and the run goes on
            if not isinstance(exc, RadDiffError):
                log.exception("pair %s failed", pair.pair_id)
            else:
                log.error("pair %s failed: %s", pair.pair_id, exc)
            failed = base.model_copy(
                update={"status": "error", "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}
            )
            failed.seconds = round(time.perf_counter() - started, 2)
            write_json_atomic(self.result_path(pair), failed.model_dump(mode="json"))
            return failed
        tools, llm, tokens = _trace_counts(self.out_dir / "runs" / pair.pair_id)
        scores = [h.score for h in judged]
        null = planted == 0
        diff_scores = [d.score for d in differences]
        done = base.model_copy(
            update={
                "hypotheses": judged,
                "differences": differences,
                "n_covarying": len(result.covarying),
                "planted": planted,
                "planted_found": found,
                "diff_acc1": None if null else accuracy_at(diff_scores, 1),
                "diff_acc5": None if null else accuracy_at(diff_scores, 5),
                "acc1": None if null else accuracy_at(scores, 1),
                "acc5": None if null else accuracy_at(scores, 5),
                "accn": None if null else accuracy_at(scores, None),
                "top_auroc": judged[0].auroc if judged else None,
                "rounds": result.rounds,
                "stop_reason": result.stop_reason,
                "seconds": round(time.perf_counter() - started, 2),
                "tool_calls": tools,
                "llm_calls": max(llm, result.llm_calls),
                "llm_tool_calls": result.llm_tool_calls,
                "llm_tool_errors": result.llm_tool_errors,
                "tokens": max(tokens, result.llm_tokens),
                "n_a": result.n_a,
                "n_b": result.n_b,
                "n_skipped": result.n_skipped,
                "confounder_flags": list(result.confounders.flagged) if result.confounders else [],
            }
        )
        write_json_atomic(self.result_path(pair), done.model_dump(mode="json"))
        return done

    def _run_agent(self, pair: BenchPair) -> RunResult:
        from graphs.run import RunLockedError, load_result, run_agent

        context = self._context(pair.pair_id)
        run_dir = Path(context.run_dir)
        if (run_dir / "result.json").is_file():
            return load_result(run_dir)
        if (run_dir / "checkpoints.sqlite").is_file():
            try:
                return run_agent(None, context, resume=True)
            except RunLockedError:
                raise  # another process is running this pair: never remove its folder
            except InputError as exc:  # no checkpoint was written before the interruption: start over
                log.info("pair %s: %s; starting it again", pair.pair_id, exc)
                shutil.rmtree(run_dir)
        loaded = pair.load()
        return run_agent(loaded.comparison, context, skipped=loaded.skipped)

    def _judge(self, pair: BenchPair, result: RunResult) -> list[JudgedHypothesis]:
        top = result.ranked[: self.judge_top]
        items = [JudgeItem(text=s.hypothesis.text, group=s.hypothesis.group) for s in top]
        truth = TruthContext(set1=pair.set1, set2=pair.set2, truth=pair.truth)
        verdicts = self.judge.judge(items, truth) if items else []
        return [
            JudgedHypothesis(
                rank=i,
                text=s.hypothesis.text,
                group=s.hypothesis.group,
                auroc=round(s.directional_auroc, 4),
                q_value=s.score.q_value,
                region=s.region,
                score=v.score,
                reason=v.reason,
                judge_error=v.error,
            )
            for i, (s, v) in enumerate(zip(top, verdicts, strict=True), start=1)
        ]

    def _judge_differences(
        self, pair: BenchPair, result: RunResult
    ) -> tuple[list[JudgedDifference], int | None, int | None]:
        """The run's differences judged one by one, and (structured truth only) how many planted differences
        there are and how many some difference names in the right direction (score >= 1 against it)."""
        truth = TruthContext(set1=pair.set1, set2=pair.set2, truth=pair.truth)
        items = [JudgeItem(text=d.text, group=d.group) for d in result.differences]
        verdicts = self.judge.judge_differences(items, truth) if items else []
        matcher = StructuredJudge() if pair.truth is not None else None
        planted = len(truth_differences(truth)) if matcher is not None else None
        named: set[int] = set()
        out = []
        for i, (d, v) in enumerate(zip(result.differences, verdicts, strict=True), start=1):
            matches: list[int] = []
            if matcher is not None:
                per, _why = matcher.per_difference(d.text, d.group, truth)
                matches = [j for j, s in enumerate(per) if s >= 1]
                named.update(matches)
            out.append(
                JudgedDifference(
                    rank=i,
                    text=d.text,
                    group=d.group,
                    auroc=d.auroc,
                    q_value=d.q_value,
                    basis=d.basis,
                    score=v.score,
                    reason=v.reason,
                    judge_error=v.error,
                    matches=matches,
                )
            )
        return out, planted, (len(named) if planted is not None else None)

    # ------------------------------------------------------------------ tables

    def write_summary(self, results: Sequence[PairResult]) -> dict[str, Any]:
        """Write ``summary.json`` and ``summary.md`` for ``results``; returns the summary."""
        return write_summary(self.out_dir, results, title=f"{self.suite} ({', '.join(self.ablations) or 'full'})")


def write_summary(out_dir: Path, results: Sequence[PairResult], title: str = "") -> dict[str, Any]:
    """Summary tables of a benchmark folder (JSON and Markdown)."""
    summary = summarize_suite(results)
    write_json_atomic(Path(out_dir) / "summary.json", summary)
    text = summary_markdown(summary, title) + "\n" + pairs_markdown(results)
    write_text_atomic(Path(out_dir) / "summary.md", text)
    return summary


class _Bar:
    def __init__(self, total: int, initial: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="pair", dynamic_ncols=True)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self._bar.set_postfix_str(text, refresh=refresh)

    def close(self) -> None:
        self._bar.close()


def _progress_bar(total: int, initial: int, desc: str) -> _Bar:
    return _Bar(total, initial, desc)
