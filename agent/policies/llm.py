"""The LLM radiologist policy, through langchain-openai (OpenAI, any OpenAI-compatible server, or the local
llama.cpp server of ``--llm local``).

``propose`` asks for a :class:`~agent.schemas.Proposal` as JSON. Reflection is the graph's visible agent loop
(``agent`` <-> ``tools`` nodes in :mod:`graphs.radiologist`): :meth:`LLMPolicy.brief` writes the round's brief
(the true AUROC history, the differences found so far, tabulated prevalences), :meth:`LLMPolicy.agent_step`
makes one chat turn with the radiologist's tools bound, recovering a tool call that a small model writes as
fenced JSON text, and :func:`parse_decision` reads the final :class:`~agent.schemas.Decision`. Structured
answers are parsed strictly with pydantic; a malformed answer is sent back with the error. Hypothesis texts
are reduced to plain finding phrases ("Group A has a higher prevalence of X" -> "X").
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.context import RunContext
from agent.schemas import Decision, Proposal, ProposedHypothesis
from agent.state import Observation, RoundStat
from prompts import load_prompt
from tools.domain import GroupLabel, Hypothesis, InputError, ScoredHypothesis
from tools.llm.local import is_local, resolve_model
from tools.reports.phrasing import plain_finding_phrase
from tools.settings import openai_credentials
from tools.untrusted import UNTRUSTED_NOTICE, quote_inline, quote_untrusted, quoted_ids

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
_JSON_BLOCK = re.compile(r"\{.*\}", re.DOTALL)
_TOOL_TAG = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
TOOL_OUTPUT_CHARS = 1500  # how much of one tool result the model is shown (the state keeps it whole)
FIRST_CALL = (
    "First call one tool, to test a sharper or new wording or to answer the user's question. Reply with the tool "
    'call only, e.g. {{"name": "score_hypotheses", "arguments": {{"hypotheses": ["{text}"], "groups": ["{group}"]}}}}'
)


def parse_llm_id(llm: str) -> str:
    """'openai:gpt-4.1-mini' -> 'gpt-4.1-mini'; 'local[:MODEL]' -> the local model's name; a bare name is the
    model name on an OpenAI-compatible server."""
    if is_local(llm):
        return resolve_model(llm).name
    name = llm.split(":", 1)[1] if llm.startswith("openai:") else llm
    if not name.strip():
        raise InputError(f"llm {llm!r}: no model name (use openai:MODEL, or a model name with --llm-base-url)")
    return name.strip()


def make_chat_model(context: RunContext) -> Any:
    """A ``ChatOpenAI`` for the context's LLM; the key and base URL come only from the environment/flags (a
    local model's URL from the server the run started)."""
    from langchain_openai import ChatOpenAI

    key, env_base = openai_credentials()
    base_url: str | None
    if is_local(context.llm):
        if not context.llm_base_url:
            raise InputError(f"llm {context.llm!r}: the local server is not running (start runs with run_agent)")
        key, base_url = None, context.llm_base_url
    else:
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
        timeout=600 if is_local(context.llm) else 120,
        max_completion_tokens=context.llm_max_tokens,
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
        for candidate in (item, _shortened(item)):
            try:
                out.append(ProposedHypothesis.model_validate(candidate))
                break
            except ValidationError:
                continue
        else:
            log.info("dropped an invalid proposed hypothesis: %r", item)
    return out


def _shortened(item: object) -> object:
    """A proposed item whose text is a whole sentence (as small models write) cut to its first clause, with
    long free-text fields dropped; other items come back unchanged."""
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        return item
    clause = re.split(r"[.;:\n]", item["text"].strip(), maxsplit=1)[0].strip()
    short = {k: v for k, v in item.items() if k not in ("rationale", "contrast") or len(str(v)) <= 200}
    return {**short, "text": plain_finding_phrase(clause)[:200]}


_CONTRAST = re.compile(r"^(?:no|without|absent|absence of|normal)\b", re.IGNORECASE)


def plain_proposal(item: ProposedHypothesis) -> ProposedHypothesis:
    """The proposed hypothesis with its text reduced to a plain finding phrase; a contrast that is not a short
    negation ("no pleural effusion") is dropped, so the scorer derives its own."""
    contrast = item.contrast.strip() if item.contrast else None
    if contrast is not None and (len(contrast) > 80 or not _CONTRAST.match(contrast) or "group" in contrast.lower()):
        contrast = None
    return item.model_copy(update={"text": plain_finding_phrase(item.text), "contrast": contrast})


def parse_decision(text: str) -> Decision:
    """The reflection's decision from an answer's JSON (hypothesis texts as plain phrases); ValueError if none."""
    try:
        decision = Decision.model_validate_json(extract_json(text))
    except ValidationError as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else "invalid decision") from exc
    return decision.model_copy(update={"hypotheses": [plain_proposal(h) for h in decision.hypotheses]})


def recover_tool_calls(message: Any, tool_names: Sequence[str]) -> Any:
    """An AI message whose tool call came as text (a fenced JSON ``{"name": ..., "arguments": {...}}`` or a
    ``<tool_call>`` tag, as small models often write it) turned into a structured tool call; other messages
    come back unchanged. A call to an unknown tool is kept (the tools node answers it with an error)."""
    if getattr(message, "tool_calls", None) or not isinstance(message.content, str):
        return message
    text = message.content
    blobs = _TOOL_TAG.findall(text) or [m for m in (_first_json(text),) if m]
    calls = []
    for blob in blobs:
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or "action" in data or not isinstance(data.get("name"), str):
            continue
        args = data.get("arguments", data.get("args", data.get("parameters", {})))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = {"_unparsed": args}
        if data["name"] in tool_names or "arguments" in data or "args" in data:
            calls.append(
                {
                    "name": data["name"],
                    "args": args if isinstance(args, dict) else {"_unparsed": args},
                    "id": f"text-call-{uuid.uuid4().hex[:10]}",
                    "type": "tool_call",
                }
            )
    if not calls:
        return message
    return message.model_copy(update={"tool_calls": calls, "content": ""})


def _first_json(text: str) -> str | None:
    """The first complete JSON object in a text (prose or a second object after it is ignored)."""
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            _value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        return text[start:end]
    return None


class LLMPolicy:
    """Policy that asks an LLM (structured JSON proposals; tool calling in the graph's agent loop)."""

    name = "llm"

    def __init__(self, context: RunContext, chat_model: Any = None) -> None:
        self.context = context
        self._chat = chat_model
        self.tokens = 0
        self.calls = 0
        self.repairs = 0
        self._local = threading.local()

    @property
    def chat(self) -> Any:
        """The chat model (created on first use)."""
        if self._chat is None:
            self._chat = make_chat_model(self.context)
        return self._chat

    @contextmanager
    def metered(self) -> Iterator[list[Any]]:
        """Collect the chat responses this thread gets inside the block (for the run's budget and trace)."""
        turns: list[Any] = []
        previous = getattr(self._local, "turns", None)
        self._local.turns = turns
        try:
            yield turns
        finally:
            self._local.turns = previous

    def _invoke(self, model: Any, messages: list[Any]) -> Any:
        response = model.invoke(messages)
        self.calls += 1
        self.tokens += response_tokens(response)
        turns = getattr(self._local, "turns", None)
        if turns is not None:
            turns.append(response)
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

    def system(self) -> Any:
        """The radiologist's system message."""
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
            table=prevalence_table(observations),
            evidence=render_evidence(observations, max_chars=1200, per_kind=2, max_text=160),
            scored=render_differences(scored, context.top_k * 2) or "(none yet)",
            n=context.hypotheses_per_round,
        )
        content: Any = prompt
        if context.image_grids and ws is not None:
            content = [{"type": "text", "text": prompt}, *grid_parts(ws, context.seed + round_)]
        proposal, raw = self.structured([self.system(), HumanMessage(content=content)], Proposal, context.max_repairs)
        items = proposal.hypotheses if proposal is not None else _salvage_hypotheses(raw)
        return [plain_proposal(h).to_hypothesis(f"llm/round{round_}") for h in items[: context.hypotheses_per_round]]

    def brief(
        self,
        pool: Sequence[ScoredHypothesis],
        history: Sequence[RoundStat],
        observations: Sequence[Observation],
        context: RunContext,
        round_: int,
    ) -> Any:
        """The agent loop's first message of a round: the true AUROC history, the differences found so far and
        the tabulated prevalences, the tool budget, and the decision format."""
        from langchain_core.messages import HumanMessage

        text = load_prompt("reflect.md").format(
            question=_question(observations) or "(none: describe the main differences)",
            round=round_,
            max_rounds=context.max_rounds,
            history=render_history(history),
            differences=render_differences(differences_so_far(pool, context.top_k), context.top_k) or "(none yet)",
            table=prevalence_table(observations),
            budget=context.tool_call_budget,
            next_step=FIRST_CALL.format(**untested_wording(observations, pool))
            if context.require_tool_call
            else load_prompt("decide.md"),
        )
        return HumanMessage(content=text, name="round_brief")

    def decide_message(self) -> Any:
        """The decision format, sent after the first tool results when the brief asked for a tool call first."""
        from langchain_core.messages import HumanMessage

        return HumanMessage(content=load_prompt("decide.md"), name="decide")

    def agent_step(self, messages: Sequence[Any], tools: Sequence[Any], require_tool: bool = False) -> Any:
        """One agent turn: the system message and ``messages`` (tool results cut to :data:`TOOL_OUTPUT_CHARS`)
        to the chat model with ``tools`` bound (none: answer only; ``require_tool``: it must call one); a tool
        call written as text is recovered."""
        from langchain_core.messages import ToolMessage

        shown = [
            m.model_copy(update={"content": _cut(str(m.content), TOOL_OUTPUT_CHARS)})
            if isinstance(m, ToolMessage)
            else m
            for m in messages
        ]
        if tools:
            model = self.chat.bind_tools(list(tools), tool_choice="required" if require_tool else None)
        else:
            model = self.chat
        response = self._invoke(model, [self.system(), *shown])
        return recover_tool_calls(response, [t.name for t in tools])


def response_tokens(response: Any) -> int:
    """Prompt + completion tokens of a chat response (0 when the server reports none)."""
    usage = getattr(response, "usage_metadata", None) or {}
    return int(usage.get("total_tokens", 0))


def untested_wording(observations: Sequence[Observation], pool: Sequence[ScoredHypothesis]) -> dict[str, str]:
    """A wording not scored yet for the example tool call of the brief: the finding whose prevalence differs most
    between the texts read, with the attribute values its group's texts state (all, then one, then none)."""
    from agent.policies.rules import evidence_from_observations
    from tools.reports.phrasing import annotate_hypothesis
    from tools.vocabulary import FINDINGS, describe_finding

    tested = {s.hypothesis.key for s in pool}
    rows = sorted(evidence_from_observations(observations).values(), key=lambda e: -abs(e.difference))
    for e in [r for r in rows if r.difference][:4]:
        group: GroupLabel = "A" if e.difference > 0 else "B"
        allowed = FINDINGS[e.finding].attributes
        attrs = {n: c.most_common(1)[0][0] for n, c in e.attributes[group].items() if c and n in allowed}
        for chosen in [attrs, *({n: v} for n, v in attrs.items()), {}]:
            text = describe_finding(e.finding, chosen)
            if annotate_hypothesis(Hypothesis(text=text, group=group)).key not in tested:
                return {"text": text, "group": group}
    best = differences_so_far(pool, 1)
    return {"text": best[0].hypothesis.text, "group": best[0].hypothesis.group} if best else {"text": "", "group": "A"}


def differences_so_far(pool: Sequence[ScoredHypothesis], k: int) -> list[ScoredHypothesis]:
    """The best differences of the run so far, best first (the ranked pool; one place to change the ranking the
    LLM is shown)."""
    from tools.ranking.ranking import rank_scored

    return rank_scored(pool)[:k]


def render_history(history: Sequence[RoundStat]) -> str:
    """The AUROC history, one line per verified round: best AUROC, top-k mean and the best wording."""
    lines = [
        f"- round {h.round}: best {h.best_auroc:.3f} ({h.best_text}), top-k mean {h.topk_mean:.3f}" for h in history
    ]
    return "\n".join(lines) or "(no round verified yet)"


def prevalence_table(observations: Sequence[Observation], max_rows: int = 8) -> str:
    """Per finding, the share of the descriptions and reports read that call it positive in A and in B (the
    largest differences first, with the commonest attribute values), as a Markdown table."""
    from agent.policies.rules import evidence_from_observations

    table = evidence_from_observations(observations)
    rows = [e for e in table.values() if e.positive["A"] or e.positive["B"]]
    rows.sort(key=lambda e: -abs(e.difference))
    if not rows:
        return "(no finding named in the texts read)"
    lines = ["| finding | A | B | attributes in A | attributes in B |", "|---|---|---|---|---|"]
    for e in rows[:max_rows]:
        attrs = [
            ", ".join(f"{name} {counts.most_common(1)[0][0]}" for name, counts in e.attributes[g].items()) or "-"
            for g in ("A", "B")
        ]
        label = e.finding.replace("_", " ")
        lines.append(f"| {label} | {e.fraction('A'):.0%} | {e.fraction('B'):.0%} | {attrs[0]} | {attrs[1]} |")
    seen = rows[0].seen
    lines.append(f"({seen['A']} texts of A, {seen['B']} of B)")
    return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " [... cut]"


def grid_parts(ws: Any, seed: int, rows: int = 4, cols: int = 5) -> list[dict[str, Any]]:
    """RadDiff's per-group image grids as chat content parts (a caption and an inline PNG per group)."""
    import numpy as np

    from tools.data.grids import build_image_grid, sample_studies, study_images
    from tools.data.images import load_image
    from tools.describers.base import png_data_url

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


def render_evidence(
    observations: Sequence[Observation], max_chars: int = 12000, per_kind: int | None = None, max_text: int = 2000
) -> str:
    """Descriptions, reports and zoom results as prompt text (reports quoted as untrusted data); at most
    ``per_kind`` texts of each observation, each cut to ``max_text`` characters."""
    parts: list[str] = []
    for obs in observations:
        pairs = list(zip(obs.study_ids, obs.texts, strict=False))[:per_kind]
        if obs.kind == "description":
            body = "\n".join(
                f"  [{quote_inline(sid)}] {quote_untrusted(_cut(t, max_text), 'description')}" for sid, t in pairs
            )
            parts.append(f"{UNTRUSTED_NOTICE}\nImage descriptions, group {obs.group} (round {obs.round}):\n{body}")
        elif obs.kind == "reports":
            body = "\n".join(
                f"  [{quote_inline(sid)}] {quote_untrusted(_cut(t, max_text), 'report')}" for sid, t in pairs
            )
            parts.append(f"{UNTRUSTED_NOTICE}\nReports, group {obs.group} (round {obs.round}):\n{body}")
        elif obs.kind == "zoom" and obs.data.get("error"):
            parts.append(f"Zoom into {obs.data.get('region')} failed: {obs.data['error']}")
        elif obs.kind == "zoom":
            parts.append(f"Zoom into {obs.data.get('region')}: {json.dumps(obs.data.get('aurocs', {}))}")
    text = "\n\n".join(parts)
    return text[:max_chars] + ("\n[... truncated]" if len(text) > max_chars else "")


def render_differences(scored: Sequence[ScoredHypothesis], k: int) -> str:
    """The best ``k`` scored hypotheses as short numbered lines: AUROC in the claimed direction, 95% CI, q-value
    and the most typical study of each group."""
    from tools.ranking.lines import hypothesis_line
    from tools.ranking.ranking import rank_scored

    lines = [
        f"{i}. {hypothesis_line(s)}; typical A {quoted_ids(s.evidence_a[:1])}, typical B {quoted_ids(s.evidence_b[:1])}"
        for i, s in enumerate(rank_scored(scored)[:k], start=1)
    ]
    return "\n".join(lines)
