"""Per-run state: each run's trace, workspace and policy live in its own RunSession, closed on every exit path."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.context import RunContext
from agent.session import RunSession, session_of
from tests.test_reliability import _report_comparison


def _context(tmp_path: Path, run_id: str) -> RunContext:
    return RunContext(run_id=run_id, run_dir=tmp_path / run_id, scorer="reports", use_images=False, max_rounds=1)


def _spy_sessions(monkeypatch) -> list[RunSession]:  # type: ignore[no-untyped-def]
    import agent.session

    made: list[RunSession] = []
    original = agent.session.RunSession.__init__

    def init(self, context):  # type: ignore[no-untyped-def]
        original(self, context)
        made.append(self)

    monkeypatch.setattr(agent.session.RunSession, "__init__", init)
    return made


def test_two_runs_at_once_never_share_a_workspace_trace_or_policy(tmp_path, monkeypatch):
    import transformers

    from graphs.run import run_agent

    transformers.AutoModel  # noqa: B018 - resolve transformers' lazy attributes before two threads race to
    made = _spy_sessions(monkeypatch)
    seen: dict[str, tuple[int, int, int]] = {}
    barrier = threading.Barrier(2)

    def on_event_for(ctx: RunContext):  # type: ignore[no-untyped-def]
        def on_event(node, update):  # type: ignore[no-untyped-def]
            if node == "survey":
                barrier.wait(timeout=60)  # both runs are inside their graphs at the same time
                session = ctx.session
                assert session is not None
                ws = session.open_workspace
                seen[ctx.run_id] = (id(session), id(ws), id(session.policy))

        return on_event

    contexts = [_context(tmp_path, "one"), _context(tmp_path, "two")]
    comparison = _report_comparison(tmp_path)
    errors: list[BaseException] = []

    def work(ctx: RunContext) -> None:
        try:
            run_agent(comparison, ctx, on_event=on_event_for(ctx))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert len(made) == 2 and all(s.closed for s in made)
    one, two = seen["one"], seen["two"]
    assert one[0] != two[0] and one[1] != two[1] and one[2] != two[2]
    assert all(c.session is None for c in contexts)


def test_a_failing_run_closes_its_session_and_the_next_run_starts_clean(tmp_path, monkeypatch):
    from graphs import radiologist
    from graphs.run import run_agent

    made = _spy_sessions(monkeypatch)
    ctx = _context(tmp_path, "boom")

    def broken(state, runtime):  # type: ignore[no-untyped-def]
        raise RuntimeError("scorer exploded")

    monkeypatch.setattr(radiologist.Workspace, "score", lambda self, *a, **k: broken(None, None))
    with pytest.raises(RuntimeError, match="scorer exploded"):
        run_agent(_report_comparison(tmp_path), ctx)
    assert len(made) == 1 and made[0].closed and made[0].open_workspace is None
    assert ctx.session is None
    with pytest.raises(RuntimeError, match="session is closed"):
        made[0].workspace(_report_comparison(tmp_path))
    monkeypatch.undo()
    result = run_agent(_report_comparison(tmp_path), _context(tmp_path, "fresh"))
    assert result.differences and result.differences[0].finding == "pleural_effusion"


def test_a_context_run_outside_the_runner_gets_one_session_for_its_lifetime(tmp_path):
    ctx = _context(tmp_path, "studio")
    assert ctx.session is None
    first = session_of(ctx)
    assert session_of(ctx) is first and ctx.session is first
    assert ctx.model_copy(update={"max_rounds": 2}).session is first  # copies of a context share the run's session
    assert "session" not in ctx.model_dump() and "_session" not in ctx.model_dump_json()
