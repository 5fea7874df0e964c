"""What every node of the radiologist graph shares: the run's trace and workspace (from its session), the
traced-node decorator, and the LLM budget and turn records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.policies.llm import response_tokens
from agent.session import session_of
from agent.state import Budget, State
from agent.trace import TraceWriter
from tools.ranking.lines import hypothesis_line
from tools.workspace import Workspace


def trace_for(context: RunContext) -> TraceWriter:
    """The run's trace writer (its session's)."""
    return session_of(context).trace


def workspace_for(context: RunContext, state: State) -> Workspace:
    """The run's workspace (its session's): opened on first use, shared by the nodes of the run."""
    return session_of(context).workspace(state["comparison"], state.get("load_skipped") or [])


def traced_node(name: str) -> Callable[[Callable[[State, Runtime[RunContext]], dict[str, Any]]], Any]:
    """Decorator: trace node start/end with timings; errors are traced and re-raised."""

    def wrap(fn: Callable[[State, Runtime[RunContext]], dict[str, Any]]) -> Any:
        def run(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
            trace = trace_for(runtime.context)
            trace.event("node_start", node=name, round=state.get("round", 0))
            started = time.perf_counter()
            try:
                update = fn(state, runtime)
            except BaseException as exc:  # recorded (Ctrl-C included) and re-raised
                trace.event("node_error", node=name, error=f"{type(exc).__name__}: {exc}")
                raise
            trace.event(
                "node_end",
                node=name,
                round=update.get("round", state.get("round", 0)),
                seconds=round(time.perf_counter() - started, 3),
                update=update_summary(update),
            )
            return update

        run.__name__ = name
        run.__doc__ = fn.__doc__
        return run

    return wrap


def update_summary(update: dict[str, Any]) -> dict[str, Any]:
    """A node's state update as the trace records it (pools and observations summarised, one line each)."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key == "pool":
            out[key] = [hypothesis_line(s, ci=False, test=None) for s in value]
        elif key == "pending":
            out[key] = [h.text for h in value]
        elif key == "observations":
            out[key] = [f"{o.kind}/{o.group or '-'}: {len(o.texts)} texts" for o in value]
        elif key == "messages":
            out[key] = [f"{type(m).__name__}: {str(m.content)[:80]}" for m in value]
        elif key in ("history", "decision", "budget", "stop_reason", "round", "loop"):
            out[key] = value
    return out


def charge(state: State, turns: list[Any], tool_calls: int = 0, tool_errors: int = 0) -> Budget:
    """The run's budget after ``turns`` (LLM responses) and the LLM's tool calls."""
    budget = state.get("budget") or Budget(started_at=time.time())
    return budget.model_copy(
        update={
            "tokens": budget.tokens + sum(response_tokens(t) for t in turns),
            "llm_calls": budget.llm_calls + len(turns),
            "llm_tool_calls": budget.llm_tool_calls + tool_calls,
            "llm_tool_errors": budget.llm_tool_errors + tool_errors,
        }
    )


def trace_turn(context: RunContext, node: str, round_: int, turn: Any) -> None:
    """One LLM turn in the trace: its text, the tool calls it made, its tokens."""
    calls = [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in getattr(turn, "tool_calls", []) or []]
    trace_for(context).event(
        "llm_turn",
        node=node,
        round=round_,
        content=str(turn.content or "")[:2000],
        tool_calls=calls,
        tokens=response_tokens(turn),
    )
