"""Running the radiologist graph: checkpointed, resumable by run id, with results written as JSON and Markdown.

A run's folder (``<output_dir>/<run_id>/``) holds ``checkpoints.sqlite`` (LangGraph's SQLite checkpointer),
``trace.jsonl`` (every node and tool call), ``result.json``, ``result.md``, ``scores.json`` (per-study scores of
the top hypotheses) and ``report.html`` (self-contained report, :mod:`graphs.report_html`). ``resume=True`` continues
an interrupted run from its last checkpoint: completed nodes are not re-run, so no tool result is lost or
repeated.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.context import RunContext
from agent.schemas import Decision, Proposal, ProposedHypothesis
from agent.session import RunSession
from agent.state import AgentLoop, Budget, Observation, RoundStat
from graphs.radiologist import build_graph
from tools.domain import (
    Comparison,
    ConfounderReport,
    CovaryingSignal,
    Difference,
    Hypothesis,
    HypothesisScore,
    InputError,
    Prevalence,
    RunResult,
    ScoredHypothesis,
    SkippedItem,
    Study,
    StudyMetadata,
    StudySet,
)
from tools.ranking.lines import covarying_line, difference_line, hypothesis_line, prevalence_text

log = logging.getLogger(__name__)

CHECKPOINT_TYPES = (
    Comparison,
    Difference,
    CovaryingSignal,
    Prevalence,
    StudySet,
    Study,
    StudyMetadata,
    Hypothesis,
    HypothesisScore,
    ScoredHypothesis,
    SkippedItem,
    RunResult,
    ConfounderReport,
    Observation,
    RoundStat,
    Budget,
    Decision,
    Proposal,
    ProposedHypothesis,
    AgentLoop,
)


@contextmanager
def checkpointer(path: Path) -> Iterator[Any]:
    """A SQLite checkpointer at ``path`` whose serializer accepts this project's state types only."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        serde = JsonPlusSerializer(allowed_msgpack_modules=list(CHECKPOINT_TYPES))
        yield SqliteSaver(conn, serde=serde)
    finally:
        conn.close()


def compile_graph(saver: Any = None) -> Any:
    """The compiled radiologist graph (with ``saver`` as checkpointer, if given)."""
    return build_graph().compile(checkpointer=saver)


LOCK_FILE = ".run.lock"


class RunLockedError(InputError):
    """The run id is in use by a run in progress (another process or thread)."""


@contextmanager
def run_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """Hold the run's lock file for the duration of the run: a second process (or thread) starting or resuming
    the same run id gets a one-line error instead of writing into the same trace and checkpoint thread. The
    lock dies with its process, so a killed run can be resumed at once."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0, thread_local=False, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        raise RunLockedError(f"run {run_id!r} is already running (lock held on {run_dir / LOCK_FILE})") from None
    try:
        yield
    finally:
        lock.release()


def run_agent(
    comparison: Comparison | None,
    context: RunContext,
    *,
    question: str = "",
    resume: bool = False,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    skipped: list[SkippedItem] | None = None,
) -> RunResult:
    """Run (or resume) the agent on a comparison; returns the run result and writes it to the run folder.

    ``on_event(node, update)`` is called after each node (for live progress views). ``skipped``: inputs the
    loader skipped; they are listed in the result with the ones skipped during the run. On resume, the time
    the run spent interrupted is left out of its time budget. With ``llm`` ``local`` or ``local:MODEL`` the
    local llama.cpp server runs for the run's length (shared with other runs of this process that need it at
    the same time) and is stopped after it, whatever happens.
    """
    run_dir = Path(context.run_dir)
    if resume and not (run_dir / "checkpoints.sqlite").is_file():
        raise InputError(f"run {context.run_id!r}: nothing to resume (no checkpoint in {run_dir})")
    run_dir.mkdir(parents=True, exist_ok=True)
    from tools.llm.local import is_local

    with run_lock(run_dir, context.run_id):
        if is_local(context.llm):
            from tools.llm.local import local_server

            with local_server(context.llm, context.settings.cache_dir) as server:
                local = context.model_copy(update={"llm_base_url": server.base_url})
                return _run_locked(comparison, local, question, resume, on_event, skipped or [])
        return _run_locked(comparison, context, question, resume, on_event, skipped or [])


def reopen_finished_run(context: RunContext, reason: str) -> int:
    """Make a run that has ended resumable for more rounds: its last checkpoint gets a 'describe more' decision
    (as if its reflection had chosen it), so ``run_agent(None, context, resume=True)`` goes on from there with
    a larger ``max_rounds``. A run still in progress is left as it is. Returns the rounds the run has done."""
    run_dir = Path(context.run_dir)
    config = {"configurable": {"thread_id": context.run_id}}
    with checkpointer(run_dir / "checkpoints.sqlite") as saver:
        graph = compile_graph(saver)
        state = graph.get_state(config)
        if not state.values:
            raise InputError(f"run {context.run_id!r}: no checkpoint to continue")
        if not state.next:
            decision = Decision(action="describe_more", reason=reason)
            graph.update_state(config, {"stop_reason": "", "decision": decision}, as_node="reflect")
        return int(state.values.get("round", 0))


def recursion_limit(context: RunContext) -> int:
    """Graph steps a run may take: the round loop's nodes, plus the LLM agent loop's turns and tool rounds."""
    agent_steps = 2 * (context.tool_call_budget + context.max_repairs + 2) if context.llm != "rules" else 0
    return 20 + (8 + agent_steps) * context.max_rounds


def _run_locked(
    comparison: Comparison | None,
    context: RunContext,
    question: str,
    resume: bool,
    on_event: Callable[[str, dict[str, Any]], None] | None,
    skipped: list[SkippedItem],
) -> RunResult:
    from agent.trace import downtime_s, read_trace

    run_dir = Path(context.run_dir)
    config = {"configurable": {"thread_id": context.run_id}, "recursion_limit": recursion_limit(context)}
    with checkpointer(run_dir / "checkpoints.sqlite") as saver:
        graph = compile_graph(saver)
        snapshot = graph.get_state(config)
        source = comparison if comparison is not None else (snapshot.values or {}).get("comparison")
        report_only = isinstance(source, Comparison) and source.report_only and not context.scores_reports
        if report_only:
            log.info("run %s: no study has an image; running in report-only mode", context.run_id)
            context = context.report_only()
        if resume:
            if not snapshot.values:
                raise InputError(f"run {context.run_id!r}: nothing to resume (no checkpoint in {run_dir})")
            if not snapshot.next:
                log.info("run %s already finished; returning its result", context.run_id)
                return _finish(snapshot.values, run_dir)
            trace_path = run_dir / "trace.jsonl"
            events = read_trace(trace_path) if trace_path.is_file() else []
            context = context.model_copy(update={"paused_s": round(downtime_s(events, time.time()), 3)})
            stream_input: Any = None
        else:
            if snapshot.values:
                raise InputError(f"run {context.run_id!r} exists in {run_dir}; resume it or choose another run id")
            if comparison is None:
                raise InputError("a new run needs a comparison")
            stream_input = {"comparison": comparison, "question": question, "load_skipped": list(skipped)}
        session = RunSession(context)
        context.attach_session(session)
        try:
            trace = session.trace
            if resume:
                trace.event("resume", next=list(snapshot.next), paused_s=context.paused_s)
            else:
                trace.event("run_start", context=context.model_dump(mode="json"), question=question)
            if report_only:
                trace.event("report_only", reason="no study has an image: report-text scorer, no describe or zoom")
            started = time.perf_counter()
            for chunk in graph.stream(stream_input, config=config, context=context, stream_mode="updates"):
                for node, update in chunk.items():
                    if on_event is not None:
                        on_event(node, update or {})
            values = graph.get_state(config).values
            trace.event("run_end", seconds=round(time.perf_counter() - started, 3))
            rows = _score_rows_of(session, values)
        finally:  # on every exit path (Ctrl-C and errors too): nothing of the run stays in memory
            session.close()
            context.attach_session(None)
    return _finish(values, run_dir, rows)


def _score_rows_of(session: RunSession, values: dict[str, Any]) -> dict[str, Any] | None:
    from graphs.report_html import score_rows

    result = values.get("result")
    workspace = session.open_workspace
    if workspace is None or not isinstance(result, RunResult):
        return None
    # the differences' wordings first: their distributions are drawn whatever their rank in the tested list
    chosen = {d.text for d in result.differences}
    first = [s for s in result.ranked if s.hypothesis.text in chosen and s.region is None]
    return score_rows(workspace, first + [s for s in result.ranked if s not in first])


def _finish(values: dict[str, Any], run_dir: Path, rows: dict[str, Any] | None = None) -> RunResult:
    from graphs.report_html import write_html_report, write_score_rows

    result = values.get("result")
    if not isinstance(result, RunResult):
        raise InputError(f"run in {run_dir} ended without a result")
    write_result(result, run_dir)
    if rows is not None:
        write_score_rows(rows, run_dir)
    write_html_report(result, run_dir, values.get("comparison"), rows)
    return result


def write_result(result: RunResult, run_dir: Path) -> None:
    """Write ``result.json`` and ``result.md`` into the run folder (atomically)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("result.json", result.model_dump_json(indent=2)), ("result.md", result_markdown(result))):
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(run_dir / name)


def result_markdown(result: RunResult, top: int = 15) -> str:
    """The run as Markdown: the summary, the differences, the co-varying signals, then (collapsed) every tested
    hypothesis, the confounder check and the skipped inputs."""
    lines = [
        f"# Differences between '{result.set_a_name}' (A, n={result.n_a}) and "
        f"'{result.set_b_name}' (B, n={result.n_b})",
        "",
        result.summary or "(no summary)",
        "",
        f"Run `{result.run_id}`: {result.rounds} rounds, stopped because {result.stop_reason or 'done'}; "
        f"{skipped_summary(result)}; {result.seconds:.1f} s.",
        "",
        *(
            ["Report-only mode: hypotheses were scored on report text; no image was described or scored.", ""]
            if result.mode == "reports"
            else []
        ),
        "## Differences",
        "",
    ]
    if result.differences:
        lines += [
            "| # | difference | more in | prevalence (A vs B) | AUROC | 95% CI | q-value | basis | evidence A | "
            "evidence B |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for i, d in enumerate(result.differences, start=1):
            lines.append(
                f"| {i} | {d.text} | {d.group} | {prevalence_text(d.prevalence) or '-'} | {d.auroc:.3f} | "
                f"{d.ci_low:.3f}-{d.ci_high:.3f} | {d.q_value:.2g} | {d.basis} | {', '.join(d.evidence_a)} | "
                f"{', '.join(d.evidence_b)} |"
            )
        for i, d in enumerate(result.differences, start=1):
            if d.wordings:
                lines += ["", f"<details><summary>#{i}: {len(d.wordings)} other wordings tested</summary>", ""]
                lines += [f"- {w}" for w in d.wordings] + ["", "</details>"]
    else:
        lines.append("No independent difference.")
    lines += ["", "## Co-varying signals (separate the groups, not shown to be differences of their own)", ""]
    if result.covarying:
        lines += ["| signal | more in | AUROC | q-value | why not a difference |", "|---|---|---|---|---|"]
        lines += [f"| {c.text} | {c.group} | {c.auroc:.3f} | {c.q_value:.2g} | {c.reason} |" for c in result.covarying]
    else:
        lines.append("None.")
    lines += [
        "",
        f"<details><summary>Every tested hypothesis ({len(result.ranked)}), ranked</summary>",
        "",
        "| # | hypothesis | more in | AUROC | 95% CI | q-value | region | evidence A | evidence B |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, s in enumerate(result.ranked, start=1):
        lo, hi = s.directional_ci
        lines.append(
            f"| {i} | {s.hypothesis.text} | {s.hypothesis.group} | {s.directional_auroc:.3f} | {lo:.3f}-{hi:.3f} | "
            f"{s.score.q_value:.2g} | {s.region or 'full image'} | {', '.join(s.evidence_a)} | "
            f"{', '.join(s.evidence_b)} |"
        )
    lines += ["", "</details>"]
    if result.confounders is not None:
        lines += ["", "## Confounder check", ""]
        lines += [f"- {field}: AUROC {value:.3f}" for field, value in result.confounders.field_auroc.items()]
        lines += [f"- WARNING: {flag}" for flag in result.confounders.flagged]
    if result.skipped:
        lines += ["", "## Skipped inputs", ""] + [f"- {s.reason}" for s in result.skipped[:50]]
    lines += ["", "AUROC by round: " + ", ".join(f"{a:.3f}" for a in result.auroc_history)]
    return "\n".join(lines) + "\n"


def skipped_summary(result: RunResult) -> str:
    """The one count of skipped inputs every view shows: "N inputs skipped" (loading and running together)."""
    return f"{result.n_skipped} input{'s' if result.n_skipped != 1 else ''} skipped"


def result_summary(result: RunResult, top: int = 5) -> str:
    """A few plain lines for a terminal: the summary, the differences, the co-varying signals (the first
    ``top``), how many hypotheses were tested, then the confounder check's warnings."""
    lines = ["report-only mode: scored on report text, no images"] if result.mode == "reports" else []
    lines += [result.summary, "", "differences:"] if result.summary else ["differences:"]
    lines += [f"{i}. {difference_line(d)}" for i, d in enumerate(result.differences, start=1)] or ["(none)"]
    if result.covarying:
        lines += ["", f"co-varying signals, not differences ({len(result.covarying)}):"]
        lines += [f"- {covarying_line(c)}" for c in result.covarying[:top]]
        if len(result.covarying) > top:
            lines.append(f"- ... {len(result.covarying) - top} more in result.md")
    lines += ["", f"{len(result.ranked)} hypotheses tested (all of them in result.md); best: "]
    lines[-1] += hypothesis_line(result.ranked[0]) if result.ranked else "none"
    if result.confounders is not None and result.confounders.flagged:
        lines += ["confounder check:"] + [f"- WARNING: {flag}" for flag in result.confounders.flagged]
    return "\n".join(lines)


def load_result(run_dir: Path) -> RunResult:
    """Read a run's ``result.json``."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise InputError(f"{path}: no result (the run did not finish; resume it)")
    return RunResult.model_validate(json.loads(path.read_text(encoding="utf-8")))
