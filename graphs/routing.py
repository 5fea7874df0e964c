"""The graph's conditional edges: ``Literal`` routers that raise on a state no route covers."""

from __future__ import annotations

from typing import Literal

from agent.state import State


def route_after_reflect(
    state: State,
) -> Literal["agent", "hypothesize", "zoom", "describe_more", "read_reports", "report"]:
    """Where to go after reflection; raises on a state no route covers."""
    if state.get("stop_reason"):
        return "report"
    if state.get("llm_turn"):
        return "agent"
    decision = state.get("decision")
    if decision is None:
        raise ValueError("reflect left neither a stop reason nor a decision")
    if decision.action == "refine":
        return "hypothesize"
    if decision.action in ("zoom", "describe_more", "read_reports"):
        return decision.action
    raise ValueError(f"unexpected decision action {decision.action!r}")


def route_after_agent(
    state: State,
) -> Literal["tools", "agent", "hypothesize", "zoom", "describe_more", "read_reports", "report"]:
    """After an LLM turn: its tool calls to the tools node, a repair back to the agent, else like reflect."""
    messages = state.get("messages", [])
    last = messages[-1] if messages else None
    if state.get("llm_turn") and last is not None:
        if getattr(last, "tool_calls", None) or getattr(last, "invalid_tool_calls", None):
            return "tools"
        return "agent"
    route = route_after_reflect(state)
    if route == "agent":
        raise ValueError("the agent loop ended without a decision")
    return route
