"""The LLM radiologist policy, through langchain-openai (OpenAI, or any OpenAI-compatible server).

``propose`` asks for a :class:`~agent.schemas.Proposal` as JSON; ``reflect`` lets the model call the
radiologist's tools (within ``tool_call_budget``) and then asks for a :class:`~agent.schemas.Decision`.
Structured answers are parsed strictly with pydantic; a malformed answer is sent back with the validation
error and retried up to ``max_repairs`` times; after that the valid items are kept (or the policy stops
cleanly). Tool errors come back to the model as tool messages, never as exceptions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.context import RunContext
from agent.schemas import Decision, Proposal, ProposedHypothesis
from agent.state import Observation
from prompts import load_prompt
from tools.domain import Hypothesis, InputError, ScoredHypothesis
from tools.settings import openai_credentials
from tools.untrusted import UNTRUSTED_NOTICE, quote_inline, quote_untrusted, quoted_ids

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
_JSON_BLOCK = re.compile(r"\{.*\}", re.DOTALL)


def parse_llm_id(llm: str) -> str:
    """'openai:gpt-4.1-mini' -> 'gpt-4.1-mini'; a bare name is the model name on an OpenAI-compatible server."""
    name = llm.split(":", 1)[1] if llm.startswith("openai:") else llm
    if not name.strip():
        raise InputError(f"llm {llm!r}: no model name (use openai:MODEL, or a model name with --llm-base-url)")
    return name.strip()


def make_chat_model(context: RunContext) -> Any:
    """A ``ChatOpenAI`` for the context's LLM; the key and base URL come only from the environment/flags."""
    from langchain_openai import ChatOpenAI

    key, env_base = openai_credentials()
    base_url = context.llm_base_url or env_base
    if key is None and base_url is None:
        raise InputError(
            f"llm {context.llm!r}: set OPENAI_API_KEY (or give --llm-base-url for a local server), or use --llm rules"
        )
    return ChatOpenAI(
        model=parse_llm_id(context.llm),
        base_url=base_url,
        api_key=key or "not-needed",  # type: ignore[arg-type]
        temperature=0.0,
        max_retries=2,
        timeout=120,
    )


def extract_json(text: str) -> str:
    """The JSON object inside an answer (code fences and prose around it are dropped)."""
    match = _JSON_BLOCK.search(text or "")
    if not match:
        raise ValueError("no JSON object in the answer")
    return match.group(0)


def _salvage_hypotheses(raw: str) -> list[ProposedHypothesis]:
    """Valid hypotheses from a malformed proposal (items that validate on their own)."""
    try:
        data = json.loads(extract_json(raw))
    except (ValueError, json.JSONDecodeError):
        return []
    items = data.get("hypotheses", []) if isinstance(data, dict) else []
    out = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(ProposedHypothesis.model_validate(item))
        except ValidationError:
            log.info("dropped an invalid proposed hypothesis: %r", item)
    return out


class LLMPolicy:
    """Policy that asks an LLM (tool calling + structured JSON answers)."""

    name = "llm"

    def __init__(self, context: RunContext, chat_model: Any = None) -> None:
        self.context = context
        self._chat = chat_model
        self.tokens = 0
        self.calls = 0
        self.repairs = 0

    @property
    def chat(self) -> Any:
        """The chat model (created on first use)."""
        if self._chat is None:
            self._chat = make_chat_model(self.context)
        return self._chat

    def _invoke(self, model: Any, messages: list[Any]) -> Any:
        response = model.invoke(messages)
        self.calls += 1
        usage = getattr(response, "usage_metadata", None) or {}
        self.tokens += int(usage.get("total_tokens", 0))
        return response

    def structured(self, messages: list[Any], schema: type[ModelT], max_repairs: int) -> tuple[ModelT | None, str]:
        """Ask for ``schema`` as JSON; repair up to ``max_repairs`` times. Returns (parsed or None, last raw)."""
        from langchain_core.messages import AIMessage, HumanMessage

        raw = ""
        for attempt in range(max_repairs + 1):
            response = self._invoke(self.chat, messages)
            raw = str(response.content or "")
            try:
                return schema.model_validate_json(extract_json(raw)), raw
            except (ValueError, ValidationError) as exc:
                problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("malformed %s from the LLM (attempt %d): %s", schema.__name__, attempt + 1, problem)
                if attempt == max_repairs:
                    break
                self.repairs += 1
                messages = [
                    *messages,
                    AIMessage(content=raw),
                    HumanMessage(content=f"That answer is not valid ({problem}). Reply again with the JSON only."),
                ]
        return None, raw

    def _system(self) -> Any:
        from langchain_core.messages import SystemMessage

        return SystemMessage(content=load_prompt("system.md"))

    def propose(
        self,
        observations: Sequence[Observation],
        scored: Sequence[ScoredHypothesis],
        context: RunContext,
        round_: int,
        ws: Any = None,
    ) -> list[Hypothesis]:
        """Ask the LLM for new hypotheses from the evidence; malformed answers are repaired, then salvaged."""
        from langchain_core.messages import HumanMessage

        comparison = ws.comparison if ws is not None else None
        prompt = load_prompt("hypothesize.md").format(
            question=_question(observations) or "(none: describe the main differences)",
            name_a=quote_inline(comparison.set_a.name) if comparison else '"A"',
            name_b=quote_inline(comparison.set_b.name) if comparison else '"B"',
            n_a=len(comparison.set_a) if comparison else "?",
            n_b=len(comparison.set_b) if comparison else "?",
            evidence=render_evidence(observations),
            scored=_render_scored(scored, context.top_k * 2) or "(none yet)",
            n=context.hypotheses_per_round,
        )
        content: Any = prompt
        if context.image_grids and ws is not None:
            content = [{"type": "text", "text": prompt}, *grid_parts(ws, context.seed + round_)]
        proposal, raw = self.structured([self._system(), HumanMessage(content=content)], Proposal, context.max_repairs)
        items = proposal.hypotheses if proposal is not None else _salvage_hypotheses(raw)
        return [h.to_hypothesis(f"llm/round{round_}") for h in items[: context.hypotheses_per_round]]

    def reflect(
        self,
        scored: Sequence[ScoredHypothesis],
        observations: Sequence[Observation],
        context: RunContext,
        round_: int,
        ws: Any = None,
    ) -> Decision:
        """Let the LLM inspect evidence with tools, then decide the next action (strict JSON)."""
        from langchain_core.messages import HumanMessage, ToolMessage

        from tools.agent_tools import make_tools
        from tools.workspace import rank_scored

        top = rank_scored(scored)[: context.top_k]
        history = ", ".join(f"{s.directional_auroc:.3f}" for s in top[:1]) or "-"
        prompt = load_prompt("reflect.md").format(
            round=round_, top=_render_scored(top, context.top_k), history=history, budget=context.tool_call_budget
        )
        messages: list[Any] = [self._system(), HumanMessage(content=prompt)]
        if ws is not None and context.tool_call_budget > 0:
            tools = {t.name: t for t in make_tools(ws)}
            model = self.chat.bind_tools(list(tools.values()))
            used = 0
            while used < context.tool_call_budget:
                response = self._invoke(model, messages)
                messages.append(response)
                calls = getattr(response, "tool_calls", None) or []
                if not calls:
                    try:  # the model answered without tools: that answer may already be the decision
                        return Decision.model_validate_json(extract_json(str(response.content or "")))
                    except (ValueError, ValidationError):
                        break
                for call in calls:
                    used += 1
                    tool = tools.get(call["name"])
                    if tool is None:
                        output = f"error: no tool named {call['name']!r}; tools: {', '.join(tools)}"
                    elif used > context.tool_call_budget:
                        output = "error: tool-call budget spent; answer with the decision JSON now"
                    else:
                        output = str(tool.invoke(call["args"]))
                    messages.append(ToolMessage(content=output, tool_call_id=call["id"], name=call["name"]))
            messages.append(HumanMessage(content="Now answer with the decision JSON only."))
        decision, _raw = self.structured(messages, Decision, context.max_repairs)
        if decision is None:
            return Decision(action="stop", reason="the LLM gave no valid decision after repairs")
        return decision


def grid_parts(ws: Any, seed: int, rows: int = 4, cols: int = 5) -> list[dict[str, Any]]:
    """RadDiff's per-group image grids as chat content parts (a caption and an inline PNG per group)."""
    import numpy as np

    from tools.describers.base import png_data_url
    from tools.grids import build_image_grid, sample_studies, study_images
    from tools.images import load_image

    parts: list[dict[str, Any]] = []
    for label in ("A", "B"):
        studies = sample_studies(ws.comparison.group(label), rows * cols, seed)
        grid = build_image_grid([load_image(p) for p in study_images(studies)], rows=rows, cols=cols, label=label)
        array = np.asarray(grid.convert("L"), dtype=np.float32) / 255.0
        parts.append({"type": "text", "text": f"Grid of {len(studies)} sampled studies of group {label}:"})
        parts.append({"type": "image_url", "image_url": {"url": png_data_url(array, max_side=1024)}})
    return parts


def _question(observations: Sequence[Observation]) -> str:
    return " ".join(t for o in observations if o.kind == "user" for t in o.texts)


def render_evidence(observations: Sequence[Observation], max_chars: int = 12000) -> str:
    """Descriptions, reports and zoom results as prompt text (reports quoted as untrusted data)."""
    parts: list[str] = []
    for obs in observations:
        if obs.kind == "description":
            body = "\n".join(
                f"  [{quote_inline(sid)}] {quote_untrusted(t, 'description')}"
                for sid, t in zip(obs.study_ids, obs.texts, strict=False)
            )
            parts.append(f"{UNTRUSTED_NOTICE}\nImage descriptions, group {obs.group} (round {obs.round}):\n{body}")
        elif obs.kind == "reports":
            body = "\n".join(
                f"  [{quote_inline(sid)}] {quote_untrusted(t, 'report')}"
                for sid, t in zip(obs.study_ids, obs.texts, strict=False)
            )
            parts.append(f"{UNTRUSTED_NOTICE}\nReports, group {obs.group} (round {obs.round}):\n{body}")
        elif obs.kind == "zoom" and obs.data.get("error"):
            parts.append(f"Zoom into {obs.data.get('region')} failed: {obs.data['error']}")
        elif obs.kind == "zoom":
            parts.append(f"Zoom into {obs.data.get('region')}: {json.dumps(obs.data.get('aurocs', {}))}")
    text = "\n\n".join(parts)
    return text[:max_chars] + ("\n[... truncated]" if len(text) > max_chars else "")


def _render_scored(scored: Sequence[ScoredHypothesis], k: int) -> str:
    from tools.workspace import rank_scored

    lines = []
    for s in rank_scored(scored)[:k]:
        where = f" [zoomed {s.region}]" if s.region else ""
        lines.append(
            f"- {s.hypothesis.text} (more in {s.hypothesis.group}){where}: AUROC {s.directional_auroc:.3f} "
            f"CI {s.directional_ci[0]:.3f}-{s.directional_ci[1]:.3f} q={s.score.q_value:.2g}; "
            f"typical A {quoted_ids(s.evidence_a)}; typical B {quoted_ids(s.evidence_b)}"
        )
    return "\n".join(lines)
