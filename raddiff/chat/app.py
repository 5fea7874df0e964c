"""``raddiff chat``: a local Gradio app to explore two cohorts in a conversation with the agent.

* Choose the two sets: two folders, a CSV, a JSONL benchmark pair, or a SynthCXR preset.
* Chat: each message is routed (:func:`route_message`) to a new agent run with the message as its question,
  a test of the user's own hypothesis, a zoom into a named region, or more rounds of the last run. The
  agent's steps stream in as they happen (read from the run's trace), tool calls as collapsible steps.
* A live table of hypotheses (AUROC, CI, q-value); selecting one shows the most and least typical images of
  each group for it and the two score distributions.
* Conversations persist: every run is a checkpointed LangGraph thread in the output folder, and the chat
  transcript (``chat.json``) sits next to it; the thread list reopens them.

Safety: only files under the configured roots are read (named paths outside them, and datasets that point
outside them, are refused with a message); every text from data or models is escaped and shown as text;
the server binds 127.0.0.1 unless the user passes another host.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.context import RunContext
from graphs.report_html import ScoreRows, distribution_figure, read_score_rows, score_rows, typical_studies
from tools.data.loaders import LoadedComparison, inside_roots
from tools.domain import Comparison, GroupLabel, Hypothesis, InputError, RunResult, ScoredHypothesis, SkippedItem
from tools.ranking.lines import covarying_line, difference_line, hypothesis_line
from tools.settings import Settings
from tools.vocabulary import REGIONS

log = logging.getLogger(__name__)

SOURCE_KINDS = ("SynthCXR preset", "Two folders", "CSV file", "Benchmark pair (JSONL)")
TABLE_COLUMNS = ["#", "difference", "more in", "AUROC", "95% CI", "q-value", "region", "source"]
CHAT_FILE = "chat.json"
LOOPBACK = "127.0.0.1"


class AppConfig(BaseModel):
    """Settings of the chat app: readable roots, output folder, models, run sizes."""

    model_config = ConfigDict(extra="forbid")

    roots: list[Path] = Field(default_factory=list, description="Folders the app may read data from.")
    output_dir: Path = Field(default=Path("raddiff-runs"), description="Where run folders (threads) are written.")
    cache_dir: Path = Field(description="Cache folder; SynthCXR presets are rendered under <cache_dir>/demo.")
    llm: str = "rules"
    llm_base_url: str | None = None
    scorer: str = "mini"
    describer: str = "mini"
    max_rounds: int = Field(default=3, ge=1, le=50)
    seed: int = 0
    preset_n: int | None = Field(default=None, ge=2, description="Studies per group of presets (None: preset's).")
    context: dict[str, Any] = Field(default_factory=dict, description="Further RunContext overrides.")
    settings: Settings | None = Field(
        default=None,
        description="The project settings the app was started with (device, dtype, batch size, remote code); "
        "the fields above override theirs. None: the defaults.",
    )

    def run_settings(self) -> Settings:
        """The one settings object of this app's runs: ``settings`` with this config's models, seed and cache."""
        base = self.settings if self.settings is not None else Settings(cache_dir=self.cache_dir)
        return base.model_copy(
            update={
                "cache_dir": self.cache_dir,
                "output_dir": self.output_dir,
                "llm": self.llm,
                "llm_base_url": self.llm_base_url,
                "scorer": self.scorer,
                "describer": self.describer,
                "seed": self.seed,
            }
        )

    @property
    def preset_dir(self) -> Path:
        """Folder of the rendered SynthCXR presets (always readable)."""
        return self.cache_dir / "demo"

    def readable_roots(self) -> list[Path]:
        """The configured roots plus the preset folder, resolved."""
        return [p.resolve() for p in [*self.roots, self.preset_dir]]


# ---------------------------------------------------------------- safety


def as_text(value: object) -> str:
    """Text from data or a model, made inert for a Markdown+HTML chat: HTML-escaped, Markdown syntax escaped."""
    escaped = html.escape(str(value), quote=True)
    return re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", escaped)


def check_path(raw: str | Path, roots: list[Path], what: str = "path") -> Path:
    """The resolved path if it lies under one of ``roots``; else an :class:`InputError` saying so."""
    text = str(raw).strip()
    if not text:
        raise InputError(f"{what}: empty; give a file or folder path")
    path = Path(text).expanduser().resolve()
    if inside_roots(path, roots):
        return path
    shown = ", ".join(str(r) for r in roots) or "(none)"
    raise InputError(
        f"{what} {text!r} is outside the folders this app may read ({shown}); restart with --root to allow it"
    )


def check_comparison_paths(comparison: Comparison, roots: list[Path]) -> None:
    """Refuse a comparison any of whose image or report files lies outside the roots."""
    for _, study in comparison.all_studies():
        for path in [*study.image_paths, *([study.report_path] if study.report_path else [])]:
            check_path(path, roots, what=f"study {study.study_id}: file")


def load_source(
    config: AppConfig, kind: str, first: str = "", second: str = "", preset: str = "effusion", pair_index: int = 0
) -> Comparison:
    """Load the two sets chosen in the app (every path checked against the roots)."""
    return load_source_with_skips(config, kind, first, second, preset, pair_index).comparison


def load_source_with_skips(
    config: AppConfig, kind: str, first: str = "", second: str = "", preset: str = "effusion", pair_index: int = 0
) -> LoadedComparison:
    """:func:`load_source` with what the loader skipped (the runs list those inputs in their results)."""
    from tools.data.loaders import load_comparison, load_jsonl_pair

    roots = config.readable_roots()
    if kind == "SynthCXR preset":
        from evals.synth.bench import PRESETS, build_pair

        if preset not in PRESETS:
            raise InputError(f"preset {preset!r}: unknown (known: {', '.join(PRESETS)})")
        spec = PRESETS[preset]
        if config.preset_n is not None:
            spec = spec.model_copy(update={"n_a": config.preset_n, "n_b": config.preset_n})
        jsonl = build_pair(spec, config.preset_dir, seed=config.seed, cache_dir=config.cache_dir)
        loaded = load_jsonl_pair(jsonl, 0, allowed_roots=roots)
    elif kind == "Two folders":
        folders = (check_path(first, roots, "folder A"), check_path(second, roots, "folder B"))
        loaded = load_comparison(*folders, allowed_roots=roots)
    elif kind == "CSV file":
        loaded = load_comparison(check_path(first, roots, "CSV file"), allowed_roots=roots)
    elif kind == "Benchmark pair (JSONL)":
        path = check_path(first, roots, "JSONL file")
        loaded = load_jsonl_pair(path, int(pair_index), image_root=path.parent, allowed_roots=roots)
    else:
        raise InputError(f"source kind {kind!r}: unknown (choose one of {', '.join(SOURCE_KINDS)})")
    check_comparison_paths(loaded.comparison, roots)
    return loaded


# ---------------------------------------------------------------- message routing


@dataclass
class Intent:
    """What a chat message asks for."""

    kind: str  # "question" | "hypothesis" | "zoom" | "more"
    text: str = ""
    region: str | None = None
    group: GroupLabel | None = None


_REGION_WORDS = {
    "base": "lower_zone",
    "bases": "lower_zones",
    "lower zone": "lower_zone",
    "mid zone": "mid_zone",
    "upper zone": "upper_zone",
    "apex": "apex",
    "apices": "apices",
    "hilum": "hilum",
    "hila": "hila",
    "costophrenic angle": "costophrenic_angle",
    "costophrenic angles": "costophrenic_angles",
    "heart": "cardiac_silhouette",
    "cardiac silhouette": "cardiac_silhouette",
    "mediastinum": "mediastinum",
    "trachea": "trachea_carina",
    "carina": "trachea_carina",
    "diaphragm": "diaphragm",
    "abdomen": "upper_abdomen",
    "stomach": "upper_abdomen",
}
_SIDED = ("lower_zone", "mid_zone", "upper_zone", "apex", "hilum", "costophrenic_angle")
_MORE = re.compile(r"\b(more rounds?|another round|keep going|continue|go on|dig deeper)\b", re.I)
_HYPOTHESIS = re.compile(
    r"^\s*(?:please\s+)?(?:test|check|score|try)\s+(?:my\s+|the\s+|this\s+)?(?:hypothesis\s*)?(?:that\s+)?[:\-]?\s*(.+)$",
    re.I,
)
_ZOOM = re.compile(r"\b(?:look at|zoom(?: in)?(?: on| into| to)?|focus on|examine)\s+(?:the\s+)?(.+)$", re.I)
_GROUP = re.compile(r"\s*[,;(]?\s*(?:is\s+)?more\s+(?:in|common in|frequent in)\s+(?:group\s+)?([AB])\b\)?", re.I)


def region_from_text(text: str) -> str | None:
    """A region key of :data:`tools.vocabulary.REGIONS` named in free text ("left base" -> lower_zone_left)."""
    lowered = text.lower().replace("-", " ")
    for key, name in REGIONS.items():
        if key.replace("_", " ") in lowered or name in lowered:
            return key
    side = "left" if re.search(r"\bleft\b", lowered) else "right" if re.search(r"\bright\b", lowered) else None
    for word in sorted(_REGION_WORDS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(word)}\b", lowered):
            base = _REGION_WORDS[word]
            if base in _SIDED:
                if side is None:
                    plural = {"apex": "apices", "hilum": "hila", "lower_zone": "lower_zones"}
                    return plural.get(base, f"{base}s" if f"{base}s" in REGIONS else None)
                return f"{base}_{side}"
            return base
    return None


def route_message(text: str) -> Intent:
    """Route a chat message: more rounds, test a hypothesis, zoom into a region, or a new question."""
    message = text.strip()
    if not message:
        raise InputError("message: empty")
    if _MORE.search(message) and len(message) < 80:
        return Intent(kind="more", text=message)
    match = _HYPOTHESIS.match(message)
    if match:
        claim = match.group(1).strip().rstrip("?.! ")
        group_match = _GROUP.search(claim)
        group: GroupLabel | None = None
        if group_match:
            group = "A" if group_match.group(1).upper() == "A" else "B"
            claim = (claim[: group_match.start()] + claim[group_match.end() :]).strip().rstrip(",;")
        if claim:
            return Intent(kind="hypothesis", text=claim, group=group)
    match = _ZOOM.search(message)
    if match:
        region = region_from_text(match.group(1))
        if region is not None:
            return Intent(kind="zoom", text=message, region=region)
    return Intent(kind="question", text=message)


# ---------------------------------------------------------------- sessions (threads)


@dataclass
class ChatSession:
    """One conversation: its comparison, its runs (checkpointed threads), and what the user tested."""

    thread: str
    config: AppConfig
    comparison: Comparison
    runs: list[str] = field(default_factory=list)
    load_skipped: list[SkippedItem] = field(default_factory=list)  # inputs the loader skipped
    user_scored: list[ScoredHypothesis] = field(default_factory=list)
    result: RunResult | None = None
    rows: ScoreRows = field(default_factory=dict)
    live_pool: list[ScoredHypothesis] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    _workspace: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def thread_dir(self) -> Path:
        """Folder of the conversation (the folder of its first run)."""
        return self.config.output_dir / self.thread

    def context(self, run_id: str, max_rounds: int | None = None) -> RunContext:
        """The run context of one of this conversation's runs."""
        values: dict[str, Any] = {
            "llm": self.config.llm,
            "llm_base_url": self.config.llm_base_url,
            "scorer": self.config.scorer,
            "describer": self.config.describer,
            "max_rounds": max_rounds or self.config.max_rounds,
            "seed": self.config.seed,
            "settings": self.config.run_settings(),
            **self.config.context,
            "run_id": run_id,
            "run_dir": self.config.output_dir / run_id,
        }
        return RunContext.model_validate(values)

    def workspace(self) -> Any:
        """A workspace on the comparison for the user's own tests (models load on first use)."""
        if self._workspace is None:
            from tools.workspace import open_workspace

            ctx = self.context(self.thread)
            self._workspace = open_workspace(
                self.comparison,
                settings=ctx.settings,
                scorer=ctx.scorer,
                describer=ctx.describer,
                seed=ctx.seed,
                evidence_k=ctx.evidence_k,
                contrast=ctx.contrast_scoring,
            )
        return self._workspace

    def table_items(self) -> list[ScoredHypothesis]:
        """Hypotheses shown in the table: the user's tests first, then the run's ranking (or the live pool)."""
        from tools.ranking.ranking import rank_scored

        ranked = self.result.ranked if self.result is not None else rank_scored(self.live_pool)
        return [*self.user_scored, *ranked]

    def save(self) -> None:
        """Write the transcript and run list (``chat.json``) atomically into the thread folder."""
        self.thread_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "thread": self.thread,
            "runs": self.runs,
            "messages": self.messages,
            "user_scored": [s.model_dump(mode="json") for s in self.user_scored],
        }
        tmp = self.thread_dir / f".{CHAT_FILE}.tmp"
        tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
        tmp.replace(self.thread_dir / CHAT_FILE)


_SESSIONS: dict[str, ChatSession] = {}
_SESSIONS_LOCK = threading.Lock()


def new_thread_id() -> str:
    """A fresh thread id (time-based, unique within the process)."""
    base = time.strftime("chat-%Y%m%d-%H%M%S")
    with _SESSIONS_LOCK:
        n = 1
        candidate = base
        while candidate in _SESSIONS:
            n += 1
            candidate = f"{base}-{n}"
    return candidate


def list_threads(output_dir: Path) -> list[str]:
    """Threads and runs that can be reopened (folders with a chat transcript or a checkpoint), newest first."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if (p / CHAT_FILE).is_file() or (p / "checkpoints.sqlite").is_file()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def _checkpoint_values(run_dir: Path, run_id: str) -> dict[str, Any]:
    from graphs.run import checkpointer, compile_graph

    with checkpointer(run_dir / "checkpoints.sqlite") as saver:
        return dict(compile_graph(saver).get_state({"configurable": {"thread_id": run_id}}).values)


def reopen_thread(config: AppConfig, thread: str) -> ChatSession:
    """Reopen a conversation (or a CLI run) from its folder: comparison from the checkpoint, transcript, result."""
    from graphs.run import load_result

    folder = check_path(config.output_dir / thread, [config.output_dir.resolve()], "thread")
    chat_path = folder / CHAT_FILE
    data: dict[str, Any] = json.loads(chat_path.read_text(encoding="utf-8")) if chat_path.is_file() else {}
    runs = list(data.get("runs") or [thread])
    comparison = None
    for run_id in runs:
        run_dir = config.output_dir / run_id
        if (run_dir / "checkpoints.sqlite").is_file():
            comparison = _checkpoint_values(run_dir, run_id).get("comparison")
            if comparison is not None:
                break
    if not isinstance(comparison, Comparison):
        raise InputError(f"thread {thread!r}: no checkpoint with a comparison in {folder}")
    check_comparison_paths(comparison, config.readable_roots())
    session = ChatSession(thread=thread, config=config, comparison=comparison, runs=runs)
    session.user_scored = [ScoredHypothesis.model_validate(s) for s in data.get("user_scored", [])]
    last = config.output_dir / runs[-1]
    if (last / "result.json").is_file():
        session.result = load_result(last)
        session.rows = read_score_rows(last)
    session.messages = list(data.get("messages") or []) or _messages_from_trace(last, session.result)
    with _SESSIONS_LOCK:
        _SESSIONS[thread] = session
    return session


def _messages_from_trace(run_dir: Path, result: RunResult | None) -> list[dict[str, Any]]:
    from agent.trace import read_trace

    out: list[dict[str, Any]] = []
    if (run_dir / "trace.jsonl").is_file():
        view = _TraceView(run_dir.name, out)
        for event in read_trace(run_dir / "trace.jsonl"):
            view.add(event)
    if result is not None:
        out.append({"role": "assistant", "content": _result_text(result)})
    return out


# ---------------------------------------------------------------- streaming steps


class _TraceView:
    """Turns trace events into chat messages: a collapsible step per node, nested tool calls."""

    def __init__(self, run_id: str, messages: list[dict[str, Any]]) -> None:
        self.run_id = run_id
        self.messages = messages
        self.step: dict[str, Any] | None = None
        self.n = 0

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "run_start":
            question = event.get("question") or "what differs between the two groups"
            self._note(f"Run {as_text(self.run_id)} started: {as_text(question)}", "Agent run")
        elif kind == "resume":
            self._note(f"Run {as_text(self.run_id)} resumed at {as_text(', '.join(event.get('next') or []))}", "Resume")
        elif kind == "node_start":
            self.n += 1
            step_id = f"{self.run_id}-{self.n}"
            round_ = event.get("round", 0)
            self.step = {
                "role": "assistant",
                "content": "",
                "metadata": {
                    "title": f"Step: {event.get('node')} (round {round_})",
                    "id": step_id,
                    "status": "pending",
                },
            }
            self.messages.append(self.step)
        elif kind == "tool" and self.step is not None:
            text = event.get("error") or event.get("summary") or ""
            self.messages.append(
                {
                    "role": "assistant",
                    "content": as_text(text),
                    "metadata": {
                        "title": f"Tool call: {event.get('tool')}",
                        "parent_id": self.step["metadata"]["id"],
                        "duration": float(event.get("seconds") or 0.0),
                        "status": "done",
                    },
                }
            )
        elif kind == "node_end" and self.step is not None:
            self.step["metadata"]["status"] = "done"
            self.step["metadata"]["duration"] = float(event.get("seconds") or 0.0)
            self.step["content"] = self.step["content"] + _node_summary(event.get("update") or {})
        elif kind in ("convergence", "decision") and self.step is not None:
            if kind == "decision":
                d = event.get("decision") or {}
                line = f"decision: {d.get('action')} {d.get('region') or ''} - {d.get('reason', '')}"
            else:
                line = f"convergence rule: {event.get('stop_reason') or 'continue'}"
            self.step["content"] += as_text(line) + "\n\n"
        elif kind == "node_error" and self.step is not None:
            self.step["metadata"]["status"] = "done"
            self.step["content"] += "error: " + as_text(event.get("error")) + "\n\n"

    def _note(self, text: str, title: str) -> None:
        self.messages.append({"role": "assistant", "content": text, "metadata": {"title": title, "status": "done"}})


def _node_summary(update: dict[str, Any]) -> str:
    lines = []
    for text in (update.get("pending") or [])[:12]:
        lines.append(f"proposed: {text}")
    history = update.get("history") or []
    if history and isinstance(history[-1], dict):
        h = history[-1]
        lines.append(f"best AUROC {h.get('best_auroc', 0):.3f} ({h.get('best_text', '')})")
    for text in (update.get("observations") or [])[:8]:
        lines.append(f"observed: {text}")
    if update.get("stop_reason"):
        lines.append(f"stop: {update['stop_reason']}")
    return "".join(as_text(line) + "\n\n" for line in lines)


def _result_text(result: RunResult, top: int = 5) -> str:
    if not result.ranked:
        return "No difference could be scored."
    lines = [f"**{as_text(result.summary)}**" if result.summary else ""]
    lines.append(f"**Differences** ({result.rounds} round(s); stopped: {as_text(result.stop_reason)}):")
    lines += [f"{i}\\. {as_text(difference_line(d))}" for i, d in enumerate(result.differences, start=1)]
    if not result.differences:
        lines.append("No independent difference.")
    if result.covarying:
        lines.append(f"**Co-varying signals, not differences** ({len(result.covarying)}):")
        lines += [f"- {as_text(covarying_line(c))}" for c in result.covarying[:top]]
    if result.skipped:
        from graphs.run import skipped_summary

        lines.append(f"{skipped_summary(result)} (see the report).")
    lines.append(
        f"The table lists every tested hypothesis ({len(result.ranked)}); select a row to see its images and score "
        "distributions."
    )
    return "\n\n".join(line for line in lines if line)


def table_rows(items: list[ScoredHypothesis], n_user: int = 0) -> list[list[Any]]:
    """Rows of the hypotheses table (plain text cells)."""
    rows = []
    for i, s in enumerate(items, start=1):
        lo, hi = s.directional_ci
        rows.append(
            [
                i,
                s.hypothesis.text,
                s.hypothesis.group,
                f"{s.directional_auroc:.3f}",
                f"{lo:.3f}-{hi:.3f}",
                f"{s.score.q_value:.2g}",
                s.region or "full image",
                "you" if i <= n_user else f"agent, round {s.round}",
            ]
        )
    return rows


def _read_new_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    if not path.is_file():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].decode("utf-8").splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events, offset + end + 1


def stream_run(
    session: ChatSession, run_id: str, question: str, *, resume: bool = False, max_rounds: int | None = None
) -> Iterator[None]:
    """Run (or resume) an agent run in a worker thread; yields each time new steps reached the transcript."""
    from graphs.run import run_agent

    ctx = session.context(run_id, max_rounds)
    trace_path = Path(ctx.run_dir) / "trace.jsonl"
    offset = trace_path.stat().st_size if trace_path.is_file() else 0
    box: dict[str, Any] = {}
    if not resume:
        session.live_pool = []
        session.result = None

    def on_event(node: str, update: dict[str, Any]) -> None:
        for item in update.get("pool") or []:
            if isinstance(item, ScoredHypothesis):
                session.live_pool.append(item)

    def work() -> None:
        try:
            comparison = None if resume else session.comparison
            box["result"] = run_agent(
                comparison, ctx, question=question, resume=resume, on_event=on_event, skipped=session.load_skipped
            )
        except Exception as exc:  # reported in the chat below, with its type
            log.exception("run %s failed", run_id)
            box["error"] = exc

    view = _TraceView(run_id, session.messages)
    worker = threading.Thread(target=work, name=f"raddiff-run-{run_id}", daemon=True)
    worker.start()
    while True:
        alive = worker.is_alive()
        events, offset = _read_new_events(trace_path, offset)
        for event in events:
            view.add(event)
        if events:
            yield None
        if not alive:
            break
        time.sleep(0.25)
    if "error" in box:
        exc = box["error"]
        session.messages.append({"role": "assistant", "content": f"The run failed: {as_text(exc)}"})
    else:
        result: RunResult = box["result"]
        session.result = result
        session.rows = read_score_rows(Path(ctx.run_dir))
        report = Path(ctx.run_dir) / "report.html"
        session.messages.append(
            {"role": "assistant", "content": _result_text(result) + f"\n\nReport: {as_text(report)}"}
        )
    session.save()
    yield None


def _user_tool(session: ChatSession, title: str, fn: Any) -> Any:
    """Run one of the user's own tool calls, shown as a collapsible step."""
    started = time.perf_counter()
    step: dict[str, Any] = {"role": "assistant", "content": "", "metadata": {"title": title, "status": "pending"}}
    session.messages.append(step)
    try:
        value = fn()
    except InputError as exc:
        step["metadata"]["status"] = "done"
        step["content"] = f"refused: {as_text(exc)}"
        raise
    step["metadata"].update({"status": "done", "duration": round(time.perf_counter() - started, 3)})
    return value, step


def score_user_hypothesis(session: ChatSession, intent: Intent) -> None:
    """Score the user's own hypothesis on the full sets (direction from the data unless the user gave one)."""
    ws = session.workspace()
    hyp = ws.annotate(
        Hypothesis(text=intent.text, group=intent.group or "A", source="user", orient_by_data=intent.group is None)
    )
    scored, step = _user_tool(session, f"Tool call: score_hypotheses ({intent.text[:60]})", lambda: ws.score([hyp]))
    item = scored[0]
    session.user_scored.insert(0, item)
    session.rows.update(score_rows(ws, [item]))
    lo = item.directional_ci[0]
    step["content"] = as_text(f"{hypothesis_line(item, test='p')}; a single test, no correction")
    verdict = "supported" if lo > 0.5 else "not supported (the CI includes 0.5)"
    session.messages.append(
        {
            "role": "assistant",
            "content": f"Your hypothesis **{as_text(item.hypothesis.text)}** is {verdict}: "
            f"{as_text(hypothesis_line(item, test=None))}. It is the first row of the table.",
        }
    )


def zoom_region(session: ChatSession, intent: Intent) -> None:
    """Crop the region in both groups and re-score the best hypotheses there."""
    assert intent.region is not None
    ws = session.workspace()
    best = [s.hypothesis for s in session.table_items() if s.region is None][:5]
    n = int(session.config.context.get("zoom_samples", 40))
    (scored, data), step = _user_tool(
        session, f"Tool call: localize_and_zoom ({intent.region})", lambda: ws.zoom(intent.region, best, n_per_group=n)
    )
    step["content"] = as_text(f"{data.get('n_a')} and {data.get('n_b')} crops of {REGIONS[intent.region]}")
    session.user_scored[:0] = scored
    if scored:
        lines = [
            f"{as_text(s.hypothesis.text)}: AUROC {s.directional_auroc:.3f} in the {as_text(REGIONS[intent.region])}"
            for s in scored
        ]
        text = "Zoomed into the " + as_text(REGIONS[intent.region]) + ":\n\n" + "\n\n".join(lines)
    else:
        text = f"Zoomed into the {as_text(REGIONS[intent.region])}; no hypothesis to re-score there yet."
    session.messages.append({"role": "assistant", "content": text})


def continue_run(session: ChatSession, extra_rounds: int = 2) -> Iterator[None]:
    """More rounds of the last run: reopen it after its reflection with 'describe more', then resume it."""
    from graphs.run import reopen_finished_run

    run_id = session.runs[-1]
    rounds = reopen_finished_run(session.context(run_id), "the user asked for more rounds")
    session.messages.append(
        {"role": "assistant", "content": f"Continuing run {as_text(run_id)} for up to {extra_rounds} more rounds."}
    )
    yield from stream_run(session, run_id, "", resume=True, max_rounds=rounds + extra_rounds)


def handle_message(session: ChatSession, text: str) -> Iterator[None]:
    """Route one user message and carry it out, yielding whenever the transcript changed."""
    intent = route_message(text)
    session.messages.append({"role": "user", "content": as_text(text)})
    yield None
    if intent.kind == "more" and not session.runs:
        intent = Intent(kind="question", text=text)
    if intent.kind == "hypothesis":
        score_user_hypothesis(session, intent)
    elif intent.kind == "zoom":
        zoom_region(session, intent)
    elif intent.kind == "more":
        yield from continue_run(session)
        return
    else:
        run_id = session.thread if not session.runs else f"{session.thread}-{len(session.runs) + 1}"
        session.runs.append(run_id)
        yield from stream_run(session, run_id, intent.text)
        return
    session.save()
    yield None


def gallery_items(session: ChatSession, item: ScoredHypothesis, k: int = 3) -> list[tuple[Any, str]]:
    """(PIL thumbnail, caption) pairs: the most and least typical studies of each group for a hypothesis."""
    from tools.data.images import load_image, to_pil

    studies = {s.study_id: s for _, s in session.comparison.all_studies()}
    roots = session.config.readable_roots()
    picks = typical_studies(item, session.rows, k)
    out: list[tuple[Any, str]] = []
    for key, label in (
        ("most_A", "most typical of A"),
        ("least_A", "least typical of A"),
        ("most_B", "most typical of B"),
        ("least_B", "least typical of B"),
    ):
        for sid in picks.get(key, []):
            study = studies.get(sid)
            if study is None:
                continue
            path = check_path(study.primary_image, roots, f"study {sid}: image")
            image = to_pil(load_image(path))
            image.thumbnail((256, 256))
            out.append((image, f"{label}: {sid}"))
    return out


# ---------------------------------------------------------------- the Gradio app


def build_app(config: AppConfig) -> Any:
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    from evals.synth.bench import PRESETS

    def session_of(thread: str | None) -> ChatSession | None:
        if not thread:
            return None
        with _SESSIONS_LOCK:
            return _SESSIONS.get(thread)

    def views(session: ChatSession | None) -> tuple[Any, ...]:
        if session is None:
            return [], [], None
        items = session.table_items()
        return session.messages, table_rows(items, len(session.user_scored)), session.thread

    def on_send(
        message: str, thread: str | None, kind: str, first: str, second: str, preset: str, pair_index: float
    ) -> Iterator[tuple[Any, ...]]:
        session = session_of(thread)
        try:
            if session is None:
                loaded = load_source_with_skips(config, kind, first, second, preset, int(pair_index or 0))
                comparison = loaded.comparison
                session = ChatSession(
                    thread=new_thread_id(), config=config, comparison=comparison, load_skipped=list(loaded.skipped)
                )
                with _SESSIONS_LOCK:
                    _SESSIONS[session.thread] = session
                a, b = comparison.set_a, comparison.set_b
                session.messages.append(
                    {
                        "role": "assistant",
                        "content": f"Loaded A: {as_text(a.name)} ({len(a)} studies) and B: {as_text(b.name)} "
                        f"({len(b)} studies); {len(loaded.skipped)} inputs skipped while loading (listed in the "
                        f"run's result). Thread {as_text(session.thread)}.",
                    }
                )
            for _ in handle_message(session, message):
                yield (*views(session), "")
        except InputError as exc:
            if session is None:
                yield [{"role": "assistant", "content": f"Refused: {as_text(exc)}"}], [], None, message
                return
            session.messages.append({"role": "assistant", "content": f"Refused: {as_text(exc)}"})
            yield (*views(session), "")

    def on_select(thread: str | None, evt: gr.SelectData) -> tuple[Any, Any, str]:
        session = session_of(thread)
        if session is None:
            return [], None, ""
        row = evt.index[0] if isinstance(evt.index, list | tuple) else int(evt.index)
        items = session.table_items()
        if not 0 <= row < len(items):
            return [], None, ""
        item = items[row]
        fig = distribution_figure(item, session.rows, (session.comparison.set_a.name, session.comparison.set_b.name))
        note = f"**{as_text(hypothesis_line(item, test=None))}**"
        if fig is None:
            note += " - no per-study scores recorded for it (zoomed subset): showing its evidence studies."
        return gallery_items(session, item), fig, note

    on_select.__annotations__["evt"] = gr.SelectData  # gradio finds the event argument by its annotation

    def on_new() -> tuple[Any, ...]:
        return [], [], None, gr.update(choices=list_threads(config.output_dir))

    def on_reopen(thread: str | None) -> tuple[Any, ...]:
        if not thread:
            return [], [], None
        try:
            session = reopen_thread(config, thread)
        except InputError as exc:
            return [{"role": "assistant", "content": f"Refused: {as_text(exc)}"}], [], None
        return views(session)

    def on_kind(kind: str) -> tuple[Any, ...]:
        preset = kind == "SynthCXR preset"
        labels = {
            "Two folders": ("Folder of group A", "Folder of group B"),
            "CSV file": ("CSV file (columns: path, group_name, report, ...)", "(unused)"),
            "Benchmark pair (JSONL)": ("JSONL pair file", "(unused)"),
        }.get(kind, ("(unused)", "(unused)"))
        return (
            gr.update(visible=preset),
            gr.update(visible=not preset, label=labels[0]),
            gr.update(visible=kind == "Two folders", label=labels[1]),
            gr.update(visible=kind == "Benchmark pair (JSONL)"),
        )

    roots_text = ", ".join(str(r) for r in config.readable_roots())
    with gr.Blocks(title="raddiff chat") as demo:
        thread_state = gr.State(None)
        gr.Markdown(
            "## raddiff: how do two sets of chest radiographs differ?\n"
            f"Models: policy `{as_text(config.llm)}`, scorer `{as_text(config.scorer)}`, "
            f"describer `{as_text(config.describer)}`. Readable folders: {as_text(roots_text)}"
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                kind = gr.Radio(list(SOURCE_KINDS), value=SOURCE_KINDS[0], label="The two sets", elem_id="source-kind")
                preset = gr.Dropdown(list(PRESETS), value="effusion", label="SynthCXR preset", elem_id="preset")
                first = gr.Textbox(label="(unused)", visible=False, elem_id="source-first")
                second = gr.Textbox(label="(unused)", visible=False, elem_id="source-second")
                pair_index = gr.Number(value=0, precision=0, label="Pair (0-based line)", visible=False)
                gr.Markdown(
                    "Ask anything to start a run (*what differs?*, *look at the left base*, "
                    "*test my hypothesis: right pleural effusion*, *more rounds*)."
                )
                new_btn = gr.Button("New conversation")
                threads = gr.Dropdown(
                    list_threads(config.output_dir),
                    label="Reopen a thread",
                    elem_id="threads",
                    allow_custom_value=False,
                )
                reopen_btn = gr.Button("Reopen")
            with gr.Column(scale=3):
                chat = gr.Chatbot(
                    label="Conversation",
                    height=520,
                    sanitize_html=True,
                    allow_tags=False,
                    elem_id="chat",
                    group_consecutive_messages=False,
                )
                with gr.Row():
                    box = gr.Textbox(
                        placeholder="e.g. what are the differences?", show_label=False, scale=5, elem_id="message"
                    )
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        table = gr.Dataframe(
            headers=TABLE_COLUMNS,
            label="Hypotheses (select a row)",
            interactive=False,
            wrap=True,
            elem_id="hypotheses",
        )
        selected = gr.Markdown(elem_id="selected")
        with gr.Row():
            gallery = gr.Gallery(
                label="Most and least typical studies", columns=6, height="auto", scale=3, elem_id="gallery"
            )
            plot = gr.Plot(label="Score distributions", scale=2, elem_id="plot")

        kind.change(on_kind, [kind], [preset, first, second, pair_index])
        inputs = [box, thread_state, kind, first, second, preset, pair_index]
        outputs = [chat, table, thread_state, box]
        send.click(on_send, inputs, outputs)
        box.submit(on_send, inputs, outputs)
        table.select(on_select, [thread_state], [gallery, plot, selected])
        new_btn.click(on_new, None, [chat, table, thread_state, threads])
        reopen_btn.click(on_reopen, [threads], [chat, table, thread_state])
    return demo


def launch(
    config: AppConfig, host: str = LOOPBACK, port: int | None = None, *, block: bool = True, quiet: bool = False
) -> Any:
    """Start the app on ``host:port`` (loopback by default); returns the Blocks object (when not blocking)."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if host not in (LOOPBACK, "localhost", "::1"):
        log.warning("raddiff chat listens on %s: reachable from other machines", host)
    demo = build_app(config)
    demo.queue(default_concurrency_limit=2)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        allowed_paths=[],
        prevent_thread_lock=not block,
        show_error=True,
        quiet=quiet,
        ssr_mode=False,
    )
    return demo
