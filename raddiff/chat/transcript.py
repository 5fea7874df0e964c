"""The chat transcript: a run's steps as chat messages (from its trace events) and its answer."""

from __future__ import annotations

from typing import Any

from raddiff.chat.config import as_text
from tools.domain import RunResult
from tools.ranking.lines import covarying_line, difference_line


class TraceView:
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


def result_text(result: RunResult, top: int = 5) -> str:
    """The run's answer in the chat: its summary, the differences, the co-varying signals and the top hypotheses."""
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
