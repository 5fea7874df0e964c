"""One run's in-memory objects: its trace writer, its workspace (models, embeddings) and its policy.

The runner (:func:`graphs.run.run_agent`) creates a :class:`RunSession` for each run, attaches it to the run
context (nodes reach it through ``runtime.context``) and closes it on every exit path, so nothing of a run
outlives it and two runs in one process (the benchmark's thread pool, the chat app) never share a workspace,
a trace or a policy's token counters. Nothing here is checkpointed: a resumed run gets a fresh session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.context import RunContext
from agent.trace import TraceWriter
from tools.domain import Comparison, SkippedItem

if TYPE_CHECKING:
    from agent.policies import Policy
    from tools.workspace import ToolCallRecord, Workspace

log = logging.getLogger(__name__)


class RunSession:
    """The trace, workspace and policy of one run; the workspace and policy are created on first use."""

    def __init__(self, context: RunContext) -> None:
        self.run_id = context.run_id
        self.trace = TraceWriter(Path(context.run_dir) / "trace.jsonl", context.run_id)
        self._context = context
        self._workspace: Workspace | None = None
        self._policy: Policy | None = None
        self._lock = threading.Lock()
        self.closed = False

    def workspace(self, comparison: Comparison, load_skipped: Sequence[SkippedItem] = ()) -> Workspace:
        """The run's workspace on ``comparison``, opened on first use (models load lazily inside it); inputs the
        loader skipped are counted with the run's own."""
        with self._lock:
            self._check_open()
            if self._workspace is None:
                trace = self.trace
                self._workspace = context_workspace(
                    comparison,
                    self._context,
                    on_tool_call=lambda record: trace.event("tool", **record.model_dump(mode="json")),
                )
                self._workspace.skipped.extend(load_skipped)
            return self._workspace

    @property
    def open_workspace(self) -> Workspace | None:
        """The workspace if the run opened one (else None)."""
        return self._workspace

    @property
    def policy(self) -> Policy:
        """The run's policy (``rules`` or an LLM policy), made on first use; its counters are this run's."""
        with self._lock:
            self._check_open()
            if self._policy is None:
                from agent.policies import make_policy

                self._policy = make_policy(self._context)
            return self._policy

    def close(self) -> None:
        """Drop the workspace and policy (their models stay in the per-process model caches)."""
        with self._lock:
            self._workspace = None
            self._policy = None
            self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"run {self.run_id!r}: its session is closed (the run has ended)")


def context_workspace(
    comparison: Comparison, context: RunContext, on_tool_call: Callable[[ToolCallRecord], None] | None = None
) -> Workspace:
    """A workspace on ``comparison`` with the models, seed and scoring switches of ``context`` (models load on
    first use); ``on_tool_call`` gets each tool call's record."""
    from tools.workspace import open_workspace

    return open_workspace(
        comparison,
        settings=context.settings,
        scorer=context.scorer,
        describer=context.describer,
        seed=context.seed,
        evidence_k=context.evidence_k,
        contrast=context.contrast_scoring,
        on_tool_call=on_tool_call,
    )


def session_of(context: RunContext) -> RunSession:
    """The session attached to ``context``; a context run without the runner (LangGraph Studio's server) gets
    one on first use, which lives as long as that context object."""
    session = context.session
    if session is None:
        log.info("run %s: no session attached (not started by the runner); opening one", context.run_id)
        session = RunSession(context)
        context.attach_session(session)
    return session
