""":class:`LLMJudge` asks an OpenAI-compatible chat model (langchain-openai) for a JSON answer validated by
a pydantic schema; a malformed answer is retried with the error shown; an answer that never validates, or
a transport error, is recorded as an *error* of that hypothesis, never as a 0.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evals.bench.judges import JudgeError, JudgeItem, Judgement, TruthContext
from tools.domain import InputError

log = logging.getLogger(__name__)


JUDGE_SYSTEM = (
    "You are an expert radiologist grading a system that describes how two groups of chest X-rays differ. "
    "You are given the ground-truth description of group A and of group B, and one hypothesis of the system "
    "saying a finding is more present in one group. Score it:\n"
    "2 - the hypothesis captures the ground-truth difference (same finding, same key attributes, right group);\n"
    "1 - partially: broader or narrower than the ground truth, or one of several differences, in the right "
    "direction;\n"
    "0 - otherwise: unrelated finding, wrong group or direction, or contradicting attributes.\n"
    'Answer with JSON only: {"score": 0|1|2, "reason": "<one sentence>"}'
)


class JudgeAnswer(BaseModel):
    """The schema an LLM judge must answer with."""

    model_config = ConfigDict(extra="forbid")

    score: Literal[0, 1, 2]
    reason: str = Field(default="", max_length=2000)


def judge_prompt(item: JudgeItem, truth: TruthContext) -> str:
    """The user message for one hypothesis."""
    return (
        f"Group A ground truth: {truth.set1.strip()}\n"
        f"Group B ground truth: {truth.set2.strip()}\n"
        f'Hypothesis: "{item.text.strip()}" is more present in group {item.group}.\n'
        "Score this hypothesis (JSON only)."
    )


def parse_answer(raw: str) -> JudgeAnswer:
    """Strictly parse a judge answer: one JSON object (code fences allowed) matching :class:`JudgeAnswer`."""
    text = raw.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    return JudgeAnswer.model_validate_json(text)


class LLMJudge:
    """The RadDiff protocol through langchain-openai: one call per hypothesis, strict schema, retries.

    ``model``: 'openai:MODEL' or a model name on ``base_url``. A malformed answer is sent back with the
    validation error up to ``max_retries`` times; after that, or on a transport error, the hypothesis gets
    an ``error`` (never a 0).
    """

    def __init__(
        self, model: str, *, base_url: str | None = None, max_retries: int = 2, timeout_s: float = 60.0
    ) -> None:
        from agent.policies.llm import parse_llm_id

        self.model = parse_llm_id(model)
        self.name = f"llm:{self.model}"
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.calls = 0
        self._chat: Any = None

    @property
    def chat(self) -> Any:
        """The ``ChatOpenAI`` client (created on first use)."""
        if self._chat is None:
            from langchain_openai import ChatOpenAI

            from tools.settings import openai_credentials

            key, env_base = openai_credentials()
            base_url = self.base_url or env_base
            if key is None and base_url is None:
                raise InputError("LLM judge: set OPENAI_API_KEY (or give --judge-base-url), or use --judge structured")
            self._chat = ChatOpenAI(
                model=self.model,
                base_url=base_url,
                api_key=key or "not-needed",  # type: ignore[arg-type]
                temperature=0.0,
                max_retries=1,
                timeout=self.timeout_s,
            )
        return self._chat

    def score(self, item: JudgeItem, truth: TruthContext) -> JudgeAnswer:
        """Ask the model; raise :class:`JudgeError` when no valid answer comes back."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        messages: list[Any] = [SystemMessage(content=JUDGE_SYSTEM), HumanMessage(content=judge_prompt(item, truth))]
        problem = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = self.chat.invoke(messages)
            except InputError:
                raise
            except Exception as exc:  # the client raises many transport/API error types
                raise JudgeError(f"LLM judge call failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
            self.calls += 1
            raw = str(response.content or "")
            try:
                return parse_answer(raw)
            except ValidationError as exc:
                problem = str(exc).splitlines()[0] + ": " + " ".join(str(exc).splitlines()[1:3]).strip()
                log.warning("malformed judge answer (attempt %d): %s", attempt + 1, problem)
                messages = [
                    *messages,
                    AIMessage(content=raw),
                    HumanMessage(content=f"Invalid answer ({problem}). Reply with the JSON object only."),
                ]
        raise JudgeError(f"no valid judge answer after {self.max_retries + 1} attempts ({problem})")

    def judge(self, items: Sequence[JudgeItem], truth: TruthContext) -> list[Judgement]:
        """One judgement per hypothesis; failures become ``error`` entries (score None)."""
        out = []
        for item in items:
            try:
                answer = self.score(item, truth)
            except JudgeError as exc:
                out.append(Judgement(hypothesis=item.text, group=item.group, error=str(exc)))
                continue
            out.append(Judgement(hypothesis=item.text, group=item.group, score=answer.score, reason=answer.reason))
        return out

    def judge_differences(self, items: Sequence[JudgeItem], truth: TruthContext) -> list[Judgement]:
        """The differences list judged with the RadDiff rubric, one call per difference."""
        return self.judge(items, truth)
