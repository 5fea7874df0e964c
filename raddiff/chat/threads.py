"""Conversations that persist: a chat thread, its runs (checkpointed LangGraph threads) and ``chat.json``."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.context import RunContext
from graphs.report_html import ScoreRows, read_score_rows
from raddiff.chat.config import AppConfig, check_comparison_paths, check_path
from raddiff.chat.transcript import TraceView, result_text
from tools.domain import Comparison, InputError, RunResult, ScoredHypothesis, SkippedItem

CHAT_FILE = "chat.json"


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
            from agent.session import context_workspace

            self._workspace = context_workspace(self.comparison, self.context(self.thread))
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


_SESSIONS: dict[str, ChatSession] = {}  # the open chat threads of this app process, by thread id
_SESSIONS_LOCK = threading.Lock()


def open_session(thread: str | None) -> ChatSession | None:
    """The open chat thread ``thread`` of this process, if any."""
    if not thread:
        return None
    with _SESSIONS_LOCK:
        return _SESSIONS.get(thread)


def register_session(session: ChatSession) -> None:
    """Keep ``session`` open under its thread id (a new conversation, or one reopened from disk)."""
    with _SESSIONS_LOCK:
        _SESSIONS[session.thread] = session


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
        view = TraceView(run_dir.name, out)
        for event in read_trace(run_dir / "trace.jsonl"):
            view.add(event)
    if result is not None:
        out.append({"role": "assistant", "content": result_text(result)})
    return out
