"""Per-run JSONL trace: every node and tool call with inputs, outputs, timings and tokens.

One file per run (``<run_dir>/trace.jsonl``), appended and flushed event by event, so an interrupted run
keeps everything up to the interruption and a resumed run continues the same file (with a ``resume``
event between the two parts).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class TraceWriter:
    """Append-only JSONL event log of one run."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def event(self, kind: str, **data: Any) -> None:
        """Append one event (``kind`` plus any JSON-able fields) and flush it to disk."""
        record = {"t": round(time.time(), 3), "run_id": self.run_id, "event": kind, **data}
        line = json.dumps(record, default=_jsonable, ensure_ascii=False)
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def read_trace(path: Path) -> list[dict[str, Any]]:
    """All events of a trace file, in order (a torn last line from a crash is ignored)."""
    events = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s:%d: unreadable trace line skipped (torn write from an interruption?)", path, number)
    return events


def downtime_s(events: list[dict[str, Any]], now: float) -> float:
    """Seconds a run spent interrupted: the gap before each ``resume`` event, plus the gap from the last event
    to ``now`` (the interruption a resume is about to end)."""
    total, last = 0.0, None
    for event in events:
        t = float(event.get("t", 0.0))
        if event.get("event") == "resume" and last is not None:
            total += max(0.0, t - last)
        last = t
    if last is not None:
        total += max(0.0, now - last)
    return total
