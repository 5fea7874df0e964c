"""The LLM agent loop inside a reflection: ``agent`` (one LLM turn with the radiologist's tools bound) and
``tools`` (runs its tool calls; errors come back as tool messages), joined by edges until a decision.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.convergence import budget_spent
from agent.policies.llm import LLMPolicy, parse_decision
from agent.schemas import Decision
from agent.session import session_of
from agent.state import AgentLoop, Budget, State
from graphs.runtime import charge, trace_for, trace_turn, traced_node, workspace_for
from tools.domain import ScoredHypothesis

log = logging.getLogger(__name__)


def _agent_decided(decision: Decision, stop: str = "") -> dict[str, Any]:
    """The agent loop's end: the decision (and the stop reason when it stops)."""
    update: dict[str, Any] = {"decision": decision, "llm_turn": False}
    if decision.action == "stop":
        update["stop_reason"] = stop or f"policy stopped: {decision.reason}"
    return update


@traced_node("agent")
def agent(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One LLM turn with the radiologist's tools bound: a tool call goes to the tools node, a decision routes on,
    a malformed answer goes back to the model (at most ``max_repairs`` times); the budgets are checked first."""
    from langchain_core.messages import HumanMessage

    from tools.agent_tools import make_tools

    context = runtime.context
    trace = trace_for(context)
    policy = session_of(context).policy
    if not isinstance(policy, LLMPolicy):
        raise TypeError(f"the agent node needs an LLM policy, not {policy.name!r}")
    loop = state.get("loop") or AgentLoop(round=state.get("round", 0))
    budget = state.get("budget") or Budget(started_at=time.time())
    spent = budget_spent(budget, context)
    if spent:
        trace.event("decision", round=loop.round, decision=Decision(action="stop", reason=spent))
        return _agent_decided(Decision(action="stop", reason=spent), spent)
    messages = list(state.get("messages", []))[loop.start :]
    added: list[Any] = []
    tools = (
        []
        if loop.tool_calls >= context.tool_call_budget
        else _offered_tools(make_tools(workspace_for(context, state)), context)
    )
    if context.require_tool_call and loop.turns >= 1 and not _has(messages, "decide"):
        added.append(policy.decide_message())
    if not tools and loop.tool_calls >= context.tool_call_budget and not _has(messages, "nudge"):
        added.append(
            HumanMessage(content="The tool-call budget is spent: answer with the decision JSON now.", name="nudge")
        )
    try:
        with policy.metered() as turns:
            response = policy.agent_step([*messages, *added], tools, context.require_tool_call and loop.turns == 0)
    except Exception as exc:  # an unreachable or failing LLM ends the loop with a stop, never the run
        log.warning("LLM agent turn failed: %s", exc)
        reason = f"the LLM failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        trace.event("decision", round=loop.round, decision=Decision(action="stop", reason=reason))
        return {
            **_agent_decided(Decision(action="stop", reason=reason), f"policy stopped: {reason}"),
            "messages": added,
        }
    trace_turn(context, "agent", loop.round, response)  # as recovered: a tool call written as text is a call
    added.append(response)
    loop = loop.model_copy(update={"turns": loop.turns + 1})
    update: dict[str, Any] = {"budget": charge(state, turns), "loop": loop}
    if response.tool_calls or getattr(response, "invalid_tool_calls", None):
        return {**update, "messages": added}
    try:
        decision = parse_decision(str(response.content or ""))
    except ValueError as exc:
        if loop.repairs >= context.max_repairs:
            decision = Decision(action="stop", reason="the LLM gave no valid decision after repairs")
            trace.event("decision", round=loop.round, decision=decision)
            return {**update, **_agent_decided(decision), "messages": added}
        added.append(
            HumanMessage(
                content=f"That answer is neither a tool call nor a valid decision ({exc}). "
                "Call a tool, or reply with the decision JSON only.",
                name="repair",
            )
        )
        return {**update, "messages": added, "loop": loop.model_copy(update={"repairs": loop.repairs + 1})}
    trace.event("decision", round=loop.round, decision=decision)
    return {**update, **_agent_decided(decision), "messages": added}


def _offered_tools(tools: list[Any], context: RunContext) -> list[Any]:
    """The tools bound to the LLM (the image grid only for a multimodal proposer)."""
    return [t for t in tools if context.image_grids or t.name != "build_image_grid"]


def _has(messages: list[Any], name: str) -> bool:
    return any(getattr(m, "name", None) == name for m in messages)


@traced_node("tools")
def tools_node(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run the LLM's tool calls in order; every result (errors too) goes back as a tool message, and what the
    tools score on the full sets joins the pool. A tool error never ends the run."""
    from langchain_core.messages import ToolMessage

    from tools.agent_tools import make_tools

    context = runtime.context
    trace = trace_for(context)
    ws = workspace_for(context, state)
    loop = state.get("loop") or AgentLoop(round=state.get("round", 0))
    last = state.get("messages", [])[-1]
    scored: list[ScoredHypothesis] = []
    available = {t.name: t for t in _offered_tools(make_tools(ws, on_scored=scored.extend), context)}
    calls: list[tuple[str, dict[str, Any], str, str | None]] = [
        (c["name"], c["args"], c["id"] or f"call-{i}", None)
        for i, c in enumerate(getattr(last, "tool_calls", []) or [])
    ]
    calls += [
        (c.get("name") or "?", {}, c.get("id") or f"invalid-{i}", c.get("error") or "arguments are not valid JSON")
        for i, c in enumerate(getattr(last, "invalid_tool_calls", []) or [])
    ]
    out: list[Any] = []
    errors = 0
    for index, (name, args, call_id, problem) in enumerate(calls):
        started = time.perf_counter()
        if problem is not None:
            content = f"error: malformed call of {name!r}: {problem}; call it again with JSON arguments"
        elif loop.tool_calls + index >= context.tool_call_budget:
            content = "error: the tool-call budget is spent; answer with the decision JSON now"
        elif name not in available:
            content = f"error: no tool named {name!r}; tools: {', '.join(available)}"
        else:
            try:
                content = str(available[name].invoke(args))
            except Exception as exc:  # bad arguments (validation) or a failing backend: the model is told
                log.warning("tool %s failed on %r: %s", name, args, exc)
                content = f"error: {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        failed = content.startswith("error")
        errors += failed
        trace.event(
            "llm_tool_call",
            round=loop.round,
            name=name,
            args=args,
            id=call_id,
            ok=not failed,
            output=content[:1000],
            seconds=round(time.perf_counter() - started, 3),
        )
        out.append(
            ToolMessage(content=content, tool_call_id=call_id, name=name, status="error" if failed else "success")
        )
    tested = {(s.hypothesis.key, s.region) for s in state.get("pool", [])}
    joined: list[ScoredHypothesis] = []
    for item in scored:
        if (item.hypothesis.key, item.region) in tested:
            continue
        tested.add((item.hypothesis.key, item.region))
        hypothesis = item.hypothesis.model_copy(update={"source": f"llm-tool/round{loop.round}"})
        joined.append(item.model_copy(update={"hypothesis": hypothesis, "round": loop.round}))
    return {
        "messages": out,
        "pool": joined,
        "loop": loop.model_copy(update={"tool_calls": loop.tool_calls + len(calls)}),
        "budget": charge(state, [], tool_calls=len(calls), tool_errors=errors),
    }
