"""Carrying out a chat message: a streamed agent run (its steps read from the run's trace as they happen),
the user's own hypothesis test, a zoom, more rounds; the table rows and the typical images behind them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graphs.report_html import read_score_rows, score_rows, typical_studies
from raddiff.chat.config import as_text, check_path
from raddiff.chat.intents import Intent, route_message
from raddiff.chat.threads import ChatSession
from raddiff.chat.transcript import TraceView, result_text
from tools.domain import Hypothesis, InputError, RunResult, ScoredHypothesis
from tools.ranking.lines import hypothesis_line
from tools.vocabulary import REGIONS

log = logging.getLogger(__name__)


TABLE_COLUMNS = ["#", "difference", "more in", "AUROC", "95% CI", "q-value", "region", "source"]


def table_rows(items: list[ScoredHypothesis], n_user: int = 0) -> list[list[Any]]:
    """Rows of the hypotheses table (plain text cells)."""
    rows = []
    for i, s in enumerate(items, start=1):
        lo, hi = s.directional_ci
        rows.append(
            [
                i,
                s.hypothesis.text,
                s.hypothesis.group,
                f"{s.directional_auroc:.3f}",
                f"{lo:.3f}-{hi:.3f}",
                f"{s.score.q_value:.2g}",
                s.region or "full image",
                "you" if i <= n_user else f"agent, round {s.round}",
            ]
        )
    return rows


def _read_new_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    if not path.is_file():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].decode("utf-8").splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events, offset + end + 1


def stream_run(
    session: ChatSession, run_id: str, question: str, *, resume: bool = False, max_rounds: int | None = None
) -> Iterator[None]:
    """Run (or resume) an agent run in a worker thread; yields each time new steps reached the transcript."""
    from graphs.run import run_agent

    ctx = session.context(run_id, max_rounds)
    trace_path = Path(ctx.run_dir) / "trace.jsonl"
    offset = trace_path.stat().st_size if trace_path.is_file() else 0
    box: dict[str, Any] = {}
    if not resume:
        session.live_pool = []
        session.result = None

    def on_event(node: str, update: dict[str, Any]) -> None:
        for item in update.get("pool") or []:
            if isinstance(item, ScoredHypothesis):
                session.live_pool.append(item)

    def work() -> None:
        try:
            comparison = None if resume else session.comparison
            box["result"] = run_agent(
                comparison, ctx, question=question, resume=resume, on_event=on_event, skipped=session.load_skipped
            )
        except Exception as exc:  # reported in the chat below, with its type
            log.exception("run %s failed", run_id)
            box["error"] = exc

    view = TraceView(run_id, session.messages)
    worker = threading.Thread(target=work, name=f"raddiff-run-{run_id}", daemon=True)
    worker.start()
    while True:
        alive = worker.is_alive()
        events, offset = _read_new_events(trace_path, offset)
        for event in events:
            view.add(event)
        if events:
            yield None
        if not alive:
            break
        time.sleep(0.25)
    if "error" in box:
        exc = box["error"]
        session.messages.append({"role": "assistant", "content": f"The run failed: {as_text(exc)}"})
    else:
        result: RunResult = box["result"]
        session.result = result
        session.rows = read_score_rows(Path(ctx.run_dir))
        report = Path(ctx.run_dir) / "report.html"
        session.messages.append(
            {"role": "assistant", "content": result_text(result) + f"\n\nReport: {as_text(report)}"}
        )
    session.save()
    yield None


def _user_tool(session: ChatSession, title: str, fn: Any) -> Any:
    """Run one of the user's own tool calls, shown as a collapsible step."""
    started = time.perf_counter()
    step: dict[str, Any] = {"role": "assistant", "content": "", "metadata": {"title": title, "status": "pending"}}
    session.messages.append(step)
    try:
        value = fn()
    except InputError as exc:
        step["metadata"]["status"] = "done"
        step["content"] = f"refused: {as_text(exc)}"
        raise
    step["metadata"].update({"status": "done", "duration": round(time.perf_counter() - started, 3)})
    return value, step


def score_user_hypothesis(session: ChatSession, intent: Intent) -> None:
    """Score the user's own hypothesis on the full sets (direction from the data unless the user gave one)."""
    ws = session.workspace()
    hyp = ws.annotate(
        Hypothesis(text=intent.text, group=intent.group or "A", source="user", orient_by_data=intent.group is None)
    )
    scored, step = _user_tool(session, f"Tool call: score_hypotheses ({intent.text[:60]})", lambda: ws.score([hyp]))
    item = scored[0]
    session.user_scored.insert(0, item)
    session.rows.update(score_rows(ws, [item]))
    lo = item.directional_ci[0]
    step["content"] = as_text(f"{hypothesis_line(item, test='p')}; a single test, no correction")
    verdict = "supported" if lo > 0.5 else "not supported (the CI includes 0.5)"
    session.messages.append(
        {
            "role": "assistant",
            "content": f"Your hypothesis **{as_text(item.hypothesis.text)}** is {verdict}: "
            f"{as_text(hypothesis_line(item, test=None))}. It is the first row of the table.",
        }
    )


def zoom_region(session: ChatSession, intent: Intent) -> None:
    """Crop the region in both groups and re-score the best hypotheses there."""
    assert intent.region is not None
    ws = session.workspace()
    best = [s.hypothesis for s in session.table_items() if s.region is None][:5]
    n = int(session.config.context.get("zoom_samples", 40))
    (scored, data), step = _user_tool(
        session, f"Tool call: localize_and_zoom ({intent.region})", lambda: ws.zoom(intent.region, best, n_per_group=n)
    )
    step["content"] = as_text(f"{data.get('n_a')} and {data.get('n_b')} crops of {REGIONS[intent.region]}")
    session.user_scored[:0] = scored
    if scored:
        lines = [
            f"{as_text(s.hypothesis.text)}: AUROC {s.directional_auroc:.3f} in the {as_text(REGIONS[intent.region])}"
            for s in scored
        ]
        text = "Zoomed into the " + as_text(REGIONS[intent.region]) + ":\n\n" + "\n\n".join(lines)
    else:
        text = f"Zoomed into the {as_text(REGIONS[intent.region])}; no hypothesis to re-score there yet."
    session.messages.append({"role": "assistant", "content": text})


def continue_run(session: ChatSession, extra_rounds: int = 2) -> Iterator[None]:
    """More rounds of the last run: reopen it after its reflection with 'describe more', then resume it."""
    from graphs.run import reopen_finished_run

    run_id = session.runs[-1]
    rounds = reopen_finished_run(session.context(run_id), "the user asked for more rounds")
    session.messages.append(
        {"role": "assistant", "content": f"Continuing run {as_text(run_id)} for up to {extra_rounds} more rounds."}
    )
    yield from stream_run(session, run_id, "", resume=True, max_rounds=rounds + extra_rounds)


def handle_message(session: ChatSession, text: str) -> Iterator[None]:
    """Route one user message and carry it out, yielding whenever the transcript changed."""
    intent = route_message(text)
    session.messages.append({"role": "user", "content": as_text(text)})
    yield None
    if intent.kind == "more" and not session.runs:
        intent = Intent(kind="question", text=text)
    if intent.kind == "hypothesis":
        score_user_hypothesis(session, intent)
    elif intent.kind == "zoom":
        zoom_region(session, intent)
    elif intent.kind == "more":
        yield from continue_run(session)
        return
    else:
        run_id = session.thread if not session.runs else f"{session.thread}-{len(session.runs) + 1}"
        session.runs.append(run_id)
        yield from stream_run(session, run_id, intent.text)
        return
    session.save()
    yield None


def gallery_items(session: ChatSession, item: ScoredHypothesis, k: int = 3) -> list[tuple[Any, str]]:
    """(PIL thumbnail, caption) pairs: the most and least typical studies of each group for a hypothesis."""
    from tools.data.images import load_image, to_pil

    studies = {s.study_id: s for _, s in session.comparison.all_studies()}
    roots = session.config.readable_roots()
    picks = typical_studies(item, session.rows, k)
    out: list[tuple[Any, str]] = []
    for key, label in (
        ("most_A", "most typical of A"),
        ("least_A", "least typical of A"),
        ("most_B", "most typical of B"),
        ("least_B", "least typical of B"),
    ):
        for sid in picks.get(key, []):
            study = studies.get(sid)
            if study is None:
                continue
            path = check_path(study.primary_image, roots, f"study {sid}: image")
            image = to_pil(load_image(path))
            image.thumbnail((256, 256))
            out.append((image, f"{label}: {sid}"))
    return out
