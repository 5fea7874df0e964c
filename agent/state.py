"""Graph state: the input state a caller provides, and the full state the agent keeps (checkpointed).

Everything here is serialisable (pydantic models and plain values), so a run can be resumed from its
SQLite checkpoint. Heavy objects (models, embeddings) live in the run's workspace, never in the state.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated, Literal, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field

from agent.schemas import Decision
from tools.domain import Comparison, GroupLabel, Hypothesis, RunResult, ScoredHypothesis, SkippedItem


class Observation(BaseModel):
    """Something the agent learned from a tool: descriptions, report tables, zoom results, notes."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["description", "reports", "zoom", "grid", "note", "user"]
    round: int = Field(ge=0)
    group: GroupLabel | None = None
    study_ids: list[str] = Field(default_factory=list)
    texts: list[str] = Field(default_factory=list, description="One text per study id (or a single text).")
    data: dict[str, object] = Field(default_factory=dict, description="Structured payload (tables, AUROCs).")


TEXT_KINDS = ("description", "reports")
"""The observation kinds whose texts are descriptions or reports of studies (the sources of text backing)."""


def observed_texts(observations: Sequence[Observation], kind: str | None = None) -> dict[str, list[str]]:
    """The description and report texts of the observations per group (only those of ``kind`` if given)."""
    texts: dict[str, list[str]] = {"A": [], "B": []}
    for obs in observations:
        if obs.kind in TEXT_KINDS and obs.group is not None and kind in (None, obs.kind):
            texts[obs.group].extend(obs.texts)
    return texts


def text_sources(observations: Sequence[Observation]) -> list[dict[str, list[str]]]:
    """The texts of each source (descriptions, then reports) per group (:func:`tools.ranking.ranking.text_support`)."""
    return [observed_texts(observations, kind) for kind in TEXT_KINDS]


class RoundStat(BaseModel):
    """AUROC summary after one round's verification (the convergence rule reads these)."""

    model_config = ConfigDict(extra="forbid")

    round: int
    best_auroc: float
    topk_mean: float
    best_text: str
    n_scored: int
    seconds: float


class Budget(BaseModel):
    """What the run has spent so far."""

    model_config = ConfigDict(extra="forbid")

    started_at: float = Field(description="time.time() when the run started.")
    llm_calls: int = 0
    tokens: int = 0
    llm_tool_calls: int = Field(default=0, description="Tool calls the LLM made (valid or not).")
    llm_tool_errors: int = Field(default=0, description="Of those, the ones that came back as errors.")


class AgentLoop(BaseModel):
    """Counters of the LLM agent's current tool loop (one per reflection), checkpointed with the state."""

    model_config = ConfigDict(extra="forbid")

    round: int = 0
    start: int = Field(default=0, description="Index in ``messages`` of this loop's first message (its brief).")
    turns: int = 0
    tool_calls: int = 0
    repairs: int = 0


class InputState(TypedDict):
    """What a caller gives the graph."""

    comparison: Comparison  # the two study sets to contrast
    question: str  # the user's question or focus ("" for a general comparison)
    load_skipped: NotRequired[list[SkippedItem]]  # inputs the loader reported and skipped (they reach the result)


class State(InputState, total=False):
    """The full agent state."""

    round: int  # current round (0 = survey)
    observations: Annotated[list[Observation], operator.add]  # everything tools returned, in order
    pending: list[Hypothesis]  # hypotheses proposed and not yet verified
    pool: Annotated[list[ScoredHypothesis], operator.add]  # every scored hypothesis, all rounds
    history: Annotated[list[RoundStat], operator.add]  # AUROC summary per round
    decision: Decision | None  # the latest reflection decision
    stop_reason: str  # why the loop ended ("" while running)
    budget: Budget  # calls, tokens and time spent
    messages: Annotated[list[AnyMessage], add_messages]  # LLM conversation, every turn and tool result (LLM policy)
    llm_turn: bool  # reflect handed the decision to the LLM agent loop (agent <-> tools)
    loop: AgentLoop  # counters of the current agent loop
    result: RunResult | None  # the final report
