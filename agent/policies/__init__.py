"""Decision policies of the radiologist agent: the offline ``rules`` policy and the LLM policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from agent.context import RunContext
from agent.schemas import Decision
from agent.state import Observation
from tools.domain import Hypothesis, ScoredHypothesis


class Policy(Protocol):
    """What the graph asks of a policy: propose hypotheses."""

    name: str

    def propose(
        self,
        observations: Sequence[Observation],
        scored: Sequence[ScoredHypothesis],
        context: RunContext,
        round_: int,
        ws: Any = None,
    ) -> list[Hypothesis]:
        """New hypotheses from the evidence so far."""
        ...


@runtime_checkable
class ReflectingPolicy(Policy, Protocol):
    """A policy that also decides the next action itself (``rules``); the LLM policy decides in the graph's
    agent loop instead (``agent`` <-> ``tools`` nodes)."""

    def reflect(
        self,
        scored: Sequence[ScoredHypothesis],
        observations: Sequence[Observation],
        context: RunContext,
        round_: int,
        ws: Any = None,
    ) -> Decision:
        """The next action (refine, zoom, describe more, read reports, stop)."""
        ...


_POLICIES: dict[tuple[str, str | None], Policy] = {}


def get_policy(context: RunContext) -> Policy:
    """The policy named by ``context.llm`` (``rules`` or an LLM), created once per (llm, base URL)."""
    key = (context.llm, context.llm_base_url)
    if key not in _POLICIES:
        if context.llm == "rules":
            from agent.policies.rules import RulesPolicy

            _POLICIES[key] = RulesPolicy()
        else:
            from agent.policies.llm import LLMPolicy

            _POLICIES[key] = LLMPolicy(context)
    return _POLICIES[key]
