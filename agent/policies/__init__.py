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
        observations: Sequence[Observation],
        scored: Sequence[ScoredHypothesis],
        context: RunContext,
        round_: int,
        ws: Any = None,
    ) -> Decision:
        """The next action (refine, zoom, describe more, read reports, stop)."""
        ...


def get_policy(context: RunContext) -> Policy:
    """A new policy for ``context.llm`` (``rules`` or an LLM); each run's session makes its own."""
    if context.llm == "rules":
        from agent.policies.rules import RulesPolicy

        return RulesPolicy()
    from agent.policies.llm import LLMPolicy

    return LLMPolicy(context)
