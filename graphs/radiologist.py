"""The radiologist agent as a LangGraph state machine.

survey -> hypothesize -> verify -> reflect -> (hypothesize | zoom | describe_more | read_reports | report)
                                     reflect -> agent <-> tools; agent -> (hypothesize | zoom | ... | report)

* survey: sample studies of each group, describe them, read their reports.
* hypothesize: the policy proposes differences (or takes the refinements the last reflection chose).
* verify: score every pending hypothesis on the full sets (AUROC, CI, p, evidence studies).
* reflect: the convergence rule first (recorded in the trace); then the policy picks the next action
  (``rules``), or hands the decision to the LLM agent loop with the round's brief (LLM policies).
* agent: one LLM turn with the radiologist's tools bound, on the checkpointed ``messages``; a tool call goes
  to ``tools``, a valid decision JSON routes like reflect's, a malformed answer goes back to the model.
* tools: runs the LLM's tool calls (errors come back as tool messages); what they score joins the pool.
* zoom / describe_more / read_reports: gather more evidence, then back to hypothesize (zoom: to reflect).
* report: deduplicate, rank, q-values across the run; per-study calls (reports, descriptions) for prevalence;
  the distinct, independent differences and the co-varying signals set aside; confounder check; the run result.

Nodes are plain functions ``(state, runtime) -> update``; the run's trace, workspace (models, embeddings, tool
calls) and policy are its :class:`~agent.session.RunSession`, found from the run context and never stored in the
state, so the state checkpoints to SQLite and a run resumes by its run id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.convergence import budget_spent, run_seconds, stop_reason
from agent.policies import ReflectingPolicy
from agent.policies.llm import LLMPolicy, parse_decision, response_tokens
from agent.schemas import Decision
from agent.session import session_of
from agent.state import AgentLoop, Budget, InputState, Observation, RoundStat, State, text_sources
from agent.trace import TraceWriter
from tools.domain import GroupLabel, Hypothesis, InputError, RunResult, ScoredHypothesis
from tools.ranking.differences import summary_sentence
from tools.ranking.lines import covarying_line, difference_line, hypothesis_line
from tools.ranking.ranking import rank_scored, text_support
from tools.workspace import Workspace

log = logging.getLogger(__name__)

NODES = (
    "survey",
    "hypothesize",
    "verify",
    "reflect",
    "agent",
    "tools",
    "zoom",
    "describe_more",
    "read_reports",
    "report",
)


def trace_for(context: RunContext) -> TraceWriter:
    """The run's trace writer (its session's)."""
    return session_of(context).trace


def workspace_for(context: RunContext, state: State) -> Workspace:
    """The run's workspace (its session's): opened on first use, shared by the nodes of the run."""
    return session_of(context).workspace(state["comparison"], state.get("load_skipped") or [])


def _node(name: str) -> Callable[[Callable[[State, Runtime[RunContext]], dict[str, Any]]], Any]:
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
                update=_summary(update),
            )
            return update

        run.__name__ = name
        run.__doc__ = fn.__doc__
        return run

    return wrap


def _summary(update: dict[str, Any]) -> dict[str, Any]:
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


def _sample_observations(
    ws: Workspace, context: RunContext, round_: int, n: int, exclude: set[str]
) -> list[Observation]:
    out: list[Observation] = []
    for group in ("A", "B"):
        if context.use_images:
            ids, texts = ws.describe(group, n=n, seed=context.seed + round_, exclude=exclude)
            if ids:
                out.append(Observation(kind="description", round=round_, group=group, study_ids=ids, texts=texts))
        if context.use_reports:
            rids, reports = ws.reports(group, n=n, seed=context.seed + round_, exclude=exclude)
            if rids:
                out.append(Observation(kind="reports", round=round_, group=group, study_ids=rids, texts=reports))
    return out


@_node("survey")
def survey(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Sample studies of each group, describe them and read their reports."""
    context = runtime.context
    ws = workspace_for(context, state)
    observations = _sample_observations(ws, context, 0, context.samples_per_group, set())
    if state.get("question"):
        observations.append(Observation(kind="user", round=0, texts=[state["question"]]))
    return {
        "round": 0,
        "observations": observations,
        "budget": state.get("budget") or Budget(started_at=time.time()),
        "stop_reason": "",
        "decision": None,
    }


@_node("hypothesize")
def hypothesize(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Propose differences: the refinements chosen by the last reflection, or new ones from the evidence."""
    context = runtime.context
    round_ = state.get("round", 0)
    decision = state.get("decision")
    ws = workspace_for(context, state)
    policy = session_of(context).policy
    turns: list[Any] = []
    if decision is not None and decision.action == "refine" and decision.hypotheses:
        pending = [ws.annotate(h.to_hypothesis(f"refine/round{round_}")) for h in decision.hypotheses]
    elif isinstance(policy, LLMPolicy):
        with policy.metered() as turns:
            proposed = policy.propose(state.get("observations", []), state.get("pool", []), context, round_, ws)
        for turn in turns:
            _trace_turn(context, "hypothesize", round_, turn)
        pending = [ws.annotate(h) for h in proposed]
    else:
        proposed = policy.propose(state.get("observations", []), state.get("pool", []), context, round_, ws)
        pending = [ws.annotate(h) for h in proposed]
    tested = {(s.hypothesis.key, s.region) for s in state.get("pool", [])}
    unique: list[Hypothesis] = []
    for hyp in pending:
        if (hyp.key, None) not in tested and all(h.key != hyp.key for h in unique):
            unique.append(hyp)
    return {"pending": unique, "budget": _charge(state, turns)}


def _charge(state: State, turns: list[Any], tool_calls: int = 0, tool_errors: int = 0) -> Budget:
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


def _trace_turn(context: RunContext, node: str, round_: int, turn: Any) -> None:
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


@_node("verify")
def verify(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Score every pending hypothesis on the full sets; update the AUROC history."""
    context = runtime.context
    ws = workspace_for(context, state)
    round_ = state.get("round", 0) + 1
    started = time.perf_counter()
    scored = ws.score(state.get("pending", []), round_=round_) if state.get("pending") else []
    pool = [*state.get("pool", []), *scored]
    return {
        "pending": [],
        "pool": scored,
        "round": round_,
        "history": [_round_stat(pool, round_, context.top_k, time.perf_counter() - started)],
    }


def _round_stat(pool: list[ScoredHypothesis], round_: int, top_k: int, seconds: float) -> RoundStat:
    ranked = rank_scored(pool)
    values = [s.directional_auroc for s in ranked[:top_k]]
    return RoundStat(
        round=round_,
        best_auroc=round(values[0], 4) if values else 0.5,
        topk_mean=round(sum(values) / len(values), 4) if values else 0.5,
        best_text=ranked[0].hypothesis.text if ranked else "",
        n_scored=len(pool),
        seconds=round(seconds, 3),
    )


@_node("reflect")
def reflect(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Apply the convergence rule, then let the policy choose the next action."""
    context = runtime.context
    trace = trace_for(context)
    history = state.get("history", [])
    budget = state.get("budget") or Budget(started_at=time.time())
    reason = stop_reason(history, budget, context) or _failed_tools_reason(state.get("observations", []))
    trace.event("convergence", round=state.get("round", 0), history=history, stop_reason=reason)
    if reason:
        return {"stop_reason": reason, "decision": None}
    if not context.refine:
        return {"stop_reason": "single pass (refinement disabled)", "decision": None}
    policy = session_of(context).policy
    round_ = state.get("round", 0)
    if isinstance(policy, LLMPolicy):  # the decision is the agent loop's (agent <-> tools)
        brief = policy.brief(state.get("pool", []), history, state.get("observations", []), context, round_)
        return {
            "llm_turn": True,
            "decision": None,
            "messages": [brief],
            "loop": AgentLoop(round=round_, start=len(state.get("messages", []))),
        }
    if not isinstance(policy, ReflectingPolicy):
        raise TypeError(f"policy {policy.name!r} neither reflects nor drives the agent loop")
    ws = workspace_for(context, state)
    decision = policy.reflect(state.get("observations", []), state.get("pool", []), context, round_, ws)
    trace.event("decision", round=round_, decision=decision)
    spent = _charge(state, [])
    if decision.action == "stop":
        return {"stop_reason": f"policy stopped: {decision.reason}", "decision": decision, "budget": spent}
    return {"decision": decision, "budget": spent}


MAX_FAILED_TOOL_CALLS = 3
"""Failed zooms after which the run stops (a policy that keeps choosing unusable regions learns nothing)."""


def _failed_tools_reason(observations: list[Observation]) -> str:
    failed = [o for o in observations if o.kind == "zoom" and o.data.get("error")]
    if len(failed) < MAX_FAILED_TOOL_CALLS:
        return ""
    return f"{len(failed)} zooms failed (last: {failed[-1].data['error']})"


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


def _agent_decided(decision: Decision, stop: str = "") -> dict[str, Any]:
    """The agent loop's end: the decision (and the stop reason when it stops)."""
    update: dict[str, Any] = {"decision": decision, "llm_turn": False}
    if decision.action == "stop":
        update["stop_reason"] = stop or f"policy stopped: {decision.reason}"
    return update


@_node("agent")
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
    _trace_turn(context, "agent", loop.round, response)  # as recovered: a tool call written as text is a call
    added.append(response)
    loop = loop.model_copy(update={"turns": loop.turns + 1})
    update: dict[str, Any] = {"budget": _charge(state, turns), "loop": loop}
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


@_node("tools")
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
        "budget": _charge(state, [], tool_calls=len(calls), tool_errors=errors),
    }


@_node("zoom")
def zoom(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Zoom into the chosen region on both groups and re-score the best hypotheses there."""
    context = runtime.context
    ws = workspace_for(context, state)
    decision = state.get("decision")
    region = decision.region if decision is not None and decision.region else "mediastinum"
    best = [s.hypothesis for s in rank_scored(state.get("pool", []))[: context.top_k] if s.region is None]
    round_ = state.get("round", 0) + 1
    started = time.perf_counter()
    try:
        scored, data = ws.zoom(region, best, n_per_group=context.zoom_samples, round_=round_)
    except InputError as exc:  # a failed tool call is evidence for the policy, not the end of the run
        log.warning("zoom into %r failed: %s", region, exc)
        failed = Observation(kind="zoom", round=state.get("round", 0), data={"region": region, "error": str(exc)})
        return {"observations": [failed]}
    pool = [*state.get("pool", []), *scored]
    observation = Observation(kind="zoom", round=round_, data={"region": region, **data})
    return {
        "pool": scored,
        "observations": [observation],
        "round": round_,
        "history": [_round_stat(pool, round_, context.top_k, time.perf_counter() - started)],
    }


@_node("describe_more")
def describe_more(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Describe (and read) more studies of each group that have not been looked at yet."""
    context = runtime.context
    ws = workspace_for(context, state)
    seen = {sid for o in state.get("observations", []) for sid in o.study_ids}
    return {"observations": _sample_observations(ws, context, state.get("round", 0), context.samples_per_group, seen)}


@_node("read_reports")
def read_reports(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Read more reports of each group (studies not read yet)."""
    context = runtime.context
    ws = workspace_for(context, state)
    seen = {sid for o in state.get("observations", []) if o.kind == "reports" for sid in o.study_ids}
    out = []
    for group in ("A", "B"):
        ids, texts = ws.reports(
            group, n=context.samples_per_group, seed=context.seed + state.get("round", 0), exclude=seen
        )
        if ids:
            out.append(
                Observation(kind="reports", round=state.get("round", 0), group=group, study_ids=ids, texts=texts)
            )
    return {"observations": out}


@_node("report")
def report(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Deduplicate and rank, recompute q-values across the run, run the confounder check, build the result."""
    context = runtime.context
    ws = workspace_for(context, state)
    pool = state.get("pool", [])
    support = text_support([s.hypothesis for s in pool], text_sources(state.get("observations", [])))
    ranked = ws.finalize(pool, support)
    channels = ws.prevalence_channels(
        context.prevalence_describe_max if context.use_images else 0, use_reports=context.use_reports
    )
    differences, covarying = ws.differences(ranked, channels)
    names: dict[GroupLabel, str] = {"A": state["comparison"].set_a.name, "B": state["comparison"].set_b.name}
    summary = summary_sentence(differences, names, len(ranked))
    trace_for(context).event(
        "differences",
        summary=summary,
        differences=[difference_line(d) for d in differences],
        covarying=[covarying_line(c) for c in covarying],
    )
    budget = state.get("budget") or Budget(started_at=time.time())
    result = RunResult(
        run_id=context.run_id,
        set_a_name=state["comparison"].set_a.name,
        set_b_name=state["comparison"].set_b.name,
        n_a=len(state["comparison"].set_a),
        n_b=len(state["comparison"].set_b),
        question=state.get("question", ""),
        summary=summary,
        differences=differences,
        covarying=covarying,
        ranked=ranked,
        rounds=state.get("round", 0),
        stop_reason=state.get("stop_reason", ""),
        auroc_history=[h.best_auroc for h in state.get("history", [])],
        skipped=ws.skipped,
        confounders=ws.confounders(ranked[: context.top_k]),
        settings=context.model_dump(mode="json"),
        seconds=round(run_seconds(budget, context), 2),
        mode="reports" if context.scores_reports else "images",
        llm_calls=budget.llm_calls,
        llm_tool_calls=budget.llm_tool_calls,
        llm_tool_errors=budget.llm_tool_errors,
        llm_tokens=budget.tokens,
    )
    return {"result": result}


def build_graph() -> StateGraph[State, RunContext, InputState, State]:
    """The uncompiled graph (nodes and edges); compile it with a checkpointer to run."""
    graph = StateGraph(State, context_schema=RunContext, input_schema=InputState)
    graph.add_node("survey", survey)
    graph.add_node("hypothesize", hypothesize)
    graph.add_node("verify", verify)
    graph.add_node("reflect", reflect)
    graph.add_node("agent", agent)
    graph.add_node("tools", tools_node)
    graph.add_node("zoom", zoom)
    graph.add_node("describe_more", describe_more)
    graph.add_node("read_reports", read_reports)
    graph.add_node("report", report)
    graph.add_edge(START, "survey")
    graph.add_edge("survey", "hypothesize")
    graph.add_edge("hypothesize", "verify")
    graph.add_edge("verify", "reflect")
    graph.add_conditional_edges("reflect", route_after_reflect)
    graph.add_conditional_edges("agent", route_after_agent)
    graph.add_edge("tools", "agent")
    graph.add_edge("zoom", "reflect")
    graph.add_edge("describe_more", "hypothesize")
    graph.add_edge("read_reports", "hypothesize")
    graph.add_edge("report", END)
    return graph
