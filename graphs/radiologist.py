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

The shared node plumbing is :mod:`graphs.runtime`, the routers :mod:`graphs.routing`, the LLM agent loop's
nodes :mod:`graphs.agent_loop`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.convergence import run_seconds, stop_reason
from agent.policies import ReflectingPolicy
from agent.policies.llm import LLMPolicy
from agent.session import session_of
from agent.state import AgentLoop, Budget, InputState, Observation, RoundStat, State, text_sources
from graphs.agent_loop import agent, tools_node
from graphs.routing import route_after_agent, route_after_reflect
from graphs.runtime import charge, trace_for, trace_turn, traced_node, workspace_for
from tools.domain import GroupLabel, Hypothesis, InputError, RunResult, ScoredHypothesis
from tools.ranking.differences import summary_sentence
from tools.ranking.lines import covarying_line, difference_line
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


@traced_node("survey")
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


@traced_node("hypothesize")
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
            trace_turn(context, "hypothesize", round_, turn)
        pending = [ws.annotate(h) for h in proposed]
    else:
        proposed = policy.propose(state.get("observations", []), state.get("pool", []), context, round_, ws)
        pending = [ws.annotate(h) for h in proposed]
    tested = {(s.hypothesis.key, s.region) for s in state.get("pool", [])}
    unique: list[Hypothesis] = []
    for hyp in pending:
        if (hyp.key, None) not in tested and all(h.key != hyp.key for h in unique):
            unique.append(hyp)
    return {"pending": unique, "budget": charge(state, turns)}


@traced_node("verify")
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


@traced_node("reflect")
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
    spent = charge(state, [])
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


@traced_node("zoom")
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


@traced_node("describe_more")
def describe_more(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Describe (and read) more studies of each group that have not been looked at yet."""
    context = runtime.context
    ws = workspace_for(context, state)
    seen = {sid for o in state.get("observations", []) for sid in o.study_ids}
    return {"observations": _sample_observations(ws, context, state.get("round", 0), context.samples_per_group, seen)}


@traced_node("read_reports")
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


@traced_node("report")
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
