"""Judges: score each ranked hypothesis 0 / 1 / 2 against a pair's ground truth.

Rubric (RadDiff / VisDiff): **2** the hypothesis states the difference (same finding with the attributes the
ground truth names, in the right group); **1** it is broader or narrower (the right finding in the right
direction, but missing or adding attributes, or naming one of several differences); **0** otherwise (other
finding, wrong group, wrong side/lobe/tip, or a finding both groups share). acc@1 = score of the top
hypothesis / 2, acc@5 = best of the top five / 2.

The judges are registered in :data:`JUDGES` (``raddiff backends``):
:class:`~evals.bench.structured_judge.StructuredJudge` (offline) and :class:`~evals.bench.llm_judge.LLMJudge`;
:func:`make_judge` makes one from its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field

from tools.domain import GroupLabel, InputError, RadDiffError
from tools.plugins import Availability, Backend, Registry, openai_compatible_backends

Score = Literal[0, 1, 2]


class JudgeError(RadDiffError):
    """A judge could not produce a score (bad answers after every retry, or the service failed)."""


class Judgement(BaseModel):
    """The judge's verdict on one hypothesis: a score, or an error (never both)."""

    model_config = ConfigDict(extra="forbid")

    hypothesis: str
    group: GroupLabel
    score: int | None = Field(default=None, ge=0, le=2, description="0, 1 or 2; None when the judge failed.")
    reason: str = ""
    error: str | None = None


@dataclass
class JudgeItem:
    """A hypothesis to judge: its text and the group it says it is more present in."""

    text: str
    group: GroupLabel


@dataclass
class TruthContext:
    """What the judge compares against: the two ground-truth texts, and the structured truth if known."""

    set1: str
    set2: str
    truth: list[dict[str, Any]] | None = None


class Judge(Protocol):
    """Anything that scores hypotheses against a pair's truth."""

    name: str

    def judge(self, items: Sequence[JudgeItem], truth: TruthContext) -> list[Judgement]:
        """One judgement per item, in order."""
        ...

    def judge_differences(self, items: Sequence[JudgeItem], truth: TruthContext) -> list[Judgement]:
        """One judgement per entry of a run's differences list, in order."""
        ...


def _check_structured(argument: str) -> Availability:
    return Availability(True, "offline; needs pairs with structured truth, e.g. SynthDiffBench")


JUDGES = Registry("judge")
"""Every judge (``raddiff bench --judge``)."""


JUDGES.register(
    Backend(
        name="structured",
        syntax="structured",
        description="The offline judge: parses hypotheses into claims and compares them with structured truth.",
        factory="evals.bench.structured_judge:StructuredJudge",
        check=_check_structured,
    )
)


for _backend in openai_compatible_backends(
    what="The RadDiff LLM judge", factory="evals.bench.llm_judge:LLMJudge", flag="--judge-base-url"
):
    JUDGES.register(_backend)


def make_judge(spec: str, *, base_url: str | None = None, max_retries: int = 2) -> Judge:
    """'structured' (offline) or an LLM judge: 'openai:MODEL' or a model name (with ``base_url``); see
    :data:`JUDGES`."""
    if not spec.strip():
        raise InputError("judge: empty name (use 'structured' or 'openai:MODEL')")
    entry, _ = JUDGES.parse(spec)
    factory = JUDGES.load(entry)
    if entry.name == "structured":
        return cast(Judge, factory())
    return cast(Judge, factory(spec, base_url=base_url, max_retries=max_retries))
