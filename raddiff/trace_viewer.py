"""A run's reasoning, read from its ``trace.jsonl``: an outline (parts, rounds, steps, tool calls), a terminal
tree (rich) and a self-contained HTML page.

A run interrupted and resumed has two parts in one trace file: the first from ``run_start``, the second
from ``resume``; both are shown, in order. Every text from the trace is escaped in the HTML page.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.trace import read_trace
from tools.domain import InputError


@dataclass
class Step:
    """One node execution: its tool calls, notes (convergence, decision) and timing."""

    node: str
    round: int
    seconds: float | None = None
    status: str = "running"
    tools: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    best_auroc: float | None = None
    best_text: str = ""


@dataclass
class Phase:
    """A group of steps: the survey, one hypothesize-verify-reflect round, or the final report."""

    title: str
    steps: list[Step] = field(default_factory=list)

    @property
    def best_auroc(self) -> float | None:
        """Best AUROC reached in this phase (from verify/zoom), if any."""
        values = [s.best_auroc for s in self.steps if s.best_auroc is not None]
        return values[-1] if values else None


@dataclass
class Part:
    """A contiguous part of the run: from ``run_start`` or from a ``resume`` to the next one."""

    kind: str
    header: str
    phases: list[Phase] = field(default_factory=list)
    ended: str = ""
    conclusion: dict[str, Any] = field(default_factory=dict)
    """The report's ``differences`` event: summary, differences and co-varying signals (one line each)."""


def conclusion_of(parts: list[Part]) -> dict[str, Any]:
    """The run's conclusion (the last part that reached the report), or {} if none did."""
    return next((p.conclusion for p in reversed(parts) if p.conclusion), {})


def resolve_run_dir(run: str | Path, output_dir: Path | None = None) -> Path:
    """The folder of a run given as a folder path or as a run id under ``output_dir``."""
    path = Path(run)
    if (path / "trace.jsonl").is_file():
        return path
    if output_dir is not None and (Path(output_dir) / str(run) / "trace.jsonl").is_file():
        return Path(output_dir) / str(run)
    where = f" or {Path(output_dir) / str(run)}" if output_dir is not None else ""
    raise InputError(f"run {str(run)!r}: no trace.jsonl in {path}{where}")


def _llm_note(event: dict[str, Any]) -> str:
    """One line for an LLM turn (the tools it called, or its answer) or for one of its tool calls."""
    if event.get("event") == "llm_turn":
        calls = ", ".join(str(c.get("name")) for c in event.get("tool_calls") or [])
        said = calls and f"calls {calls}" or f"answers {str(event.get('content') or '')[:160]!r}"
        return f"LLM turn ({event.get('tokens', 0)} tokens): {said}"
    status = "ok" if event.get("ok") else "error"
    args = json.dumps(event.get("args"))[:160]
    return f"LLM tool call {event.get('name')}({args}) -> {status}: {str(event.get('output'))[:160]}"


def _phase_title(node: str, round_: int) -> str | None:
    if node == "survey":
        return "survey"
    if node in ("hypothesize", "zoom"):
        return f"round {round_ + 1}"
    if node == "report":
        return "report"
    return None


def build_outline(events: list[dict[str, Any]]) -> list[Part]:
    """Group trace events into parts, phases and steps, in the order they happened."""
    parts: list[Part] = []
    current: Step | None = None

    def part() -> Part:
        if not parts:
            parts.append(Part(kind="start", header="run (start not recorded)"))
        return parts[-1]

    def phase(round_: int = 0) -> Phase:
        p = part()
        if not p.phases:
            p.phases.append(Phase(title=f"round {round_} (continued)" if round_ else "steps"))
        return p.phases[-1]

    for event in events:
        kind = event.get("event")
        if kind == "run_start":
            question = event.get("question") or "(general comparison)"
            context = event.get("context") or {}
            parts.append(
                Part(
                    kind="start",
                    header=f"run started: question {question!r}; llm {context.get('llm', '?')}, "
                    f"scorer {context.get('scorer', '?')}, at most {context.get('max_rounds', '?')} rounds",
                )
            )
        elif kind == "resume":
            if current is not None and current.status == "running":
                current.status = "interrupted"
            current = None
            parts.append(Part(kind="resume", header=f"resumed at {', '.join(event.get('next') or []) or '?'}"))
        elif kind == "node_start":
            node = str(event.get("node"))
            round_ = int(event.get("round") or 0)
            title = _phase_title(node, round_)
            if title is not None and (not part().phases or part().phases[-1].title != title):
                part().phases.append(Phase(title=title))
            current = Step(node=node, round=round_)
            phase(round_).steps.append(current)
        elif kind == "node_end":
            step = current if current is not None and current.node == event.get("node") else None
            if step is None:
                step = Step(node=str(event.get("node")), round=int(event.get("round") or 0))
                phase().steps.append(step)
            step.status = "done"
            step.seconds = event.get("seconds")
            history = (event.get("update") or {}).get("history") or []
            if history and isinstance(history[-1], dict):
                step.best_auroc = history[-1].get("best_auroc")
                step.best_text = str(history[-1].get("best_text", ""))
            current = None
        elif kind == "node_error":
            if current is not None:
                error = str(event.get("error") or "")
                interrupted = error.startswith(("KeyboardInterrupt", "GraphInterrupt", "CancelledError"))
                current.status = "interrupted" if interrupted else "error"
                if not interrupted:
                    current.notes.append(f"error: {error}")
            current = None
        elif kind == "tool":
            if current is None:
                current = Step(node="(tool outside a node)", round=0)
                phase().steps.append(current)
            current.tools.append(event)
        elif kind in ("llm_turn", "llm_tool_call") and current is not None:
            current.notes.append(_llm_note(event))
        elif kind == "convergence":
            reason = event.get("stop_reason") or "continue"
            if current is not None:
                current.notes.append(f"convergence rule: {reason}")
        elif kind == "decision":
            decision = event.get("decision") or {}
            text = f"decision: {decision.get('action', '?')}"
            if decision.get("region"):
                text += f" ({decision['region']})"
            if decision.get("reason"):
                text += f" - {decision['reason']}"
            if decision.get("hypotheses"):
                text += f"; {len(decision['hypotheses'])} refinements"
            if current is not None:
                current.notes.append(text)
        elif kind == "differences":
            part().conclusion = {
                "summary": str(event.get("summary") or ""),
                "differences": [str(x) for x in event.get("differences") or []],
                "covarying": [str(x) for x in event.get("covarying") or []],
            }
        elif kind == "run_end":
            part().ended = f"run ended after {event.get('seconds', '?')} s"
    return parts


def load_outline(run_dir: Path) -> list[Part]:
    """The outline of the run in ``run_dir``."""
    return build_outline(read_trace(Path(run_dir) / "trace.jsonl"))


def _tool_line(tool: dict[str, Any]) -> str:
    line = f"{tool.get('tool')} ({tool.get('backend', '')}, {tool.get('seconds', '?')} s)"
    if tool.get("error"):
        line += f" ERROR {tool['error']}"
    elif tool.get("summary"):
        line += f": {str(tool['summary'])[:160]}"
    return line


def _step_line(step: Step) -> str:
    line = f"{step.node}"
    if step.seconds is not None:
        line += f" ({step.seconds:.2f} s)"
    if step.status != "done":
        line += f" [{step.status}]"
    if step.best_auroc is not None:
        line += f": best AUROC {step.best_auroc:.3f} ({step.best_text})"
    return line


def trace_tree(parts: list[Part], title: str = "run") -> Any:
    """A rich ``Tree`` of the outline: parts > phases (with best AUROC) > steps > tool calls and notes."""
    from rich.markup import escape
    from rich.tree import Tree

    root = Tree(f"[bold]{escape(title)}[/bold]")
    conclusion = conclusion_of(parts)
    if conclusion:
        block = root.add(f"[bold green]conclusion: {escape(conclusion['summary'])}[/bold green]")
        for i, line in enumerate(conclusion["differences"], start=1):
            block.add(f"[green]difference {i}. {escape(line)}[/green]")
        for line in conclusion["covarying"]:
            block.add(f"[dim]co-varying, not a difference: {escape(line)}[/dim]")
    for p in parts:
        branch = root.add(f"[bold cyan]{escape(p.header)}[/bold cyan]")
        for ph in p.phases:
            label = ph.title + (f" - best AUROC {ph.best_auroc:.3f}" if ph.best_auroc is not None else "")
            phase_node = branch.add(f"[bold]{escape(label)}[/bold]")
            for step in ph.steps:
                style = "red" if step.status == "error" else "green" if step.status == "done" else "yellow"
                step_node = phase_node.add(f"[{style}]{escape(_step_line(step))}[/{style}]")
                for tool in step.tools:
                    step_node.add(f"[dim]tool[/dim] {escape(_tool_line(tool))}")
                for note in step.notes:
                    step_node.add(f"[magenta]{escape(note)}[/magenta]")
        if p.ended:
            branch.add(f"[dim]{escape(p.ended)}[/dim]")
    return root


def render_tree_text(parts: list[Part], title: str = "run", width: int = 120) -> str:
    """The tree as plain text (for tests, logs and terminals without colour)."""
    from rich.console import Console

    console = Console(
        width=width, record=True, color_system=None, force_terminal=False, force_jupyter=False, file=io.StringIO()
    )
    console.print(trace_tree(parts, title))
    return console.export_text()


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}h2{font-size:1.1em}
details{margin-left:1.2em}summary{cursor:pointer}.part{border-left:3px solid #2a7;padding-left:.6em;margin:1em 0}
.resume{border-color:#d80}.tool{color:#555;font-family:monospace;font-size:12px;margin-left:1.2em}
.note{color:#808;margin-left:1.2em}.error{color:#a00}.auroc{color:#06c;font-weight:bold}
"""


def trace_html(parts: list[Part], title: str = "run") -> str:
    """A self-contained HTML page of the outline (collapsible; every text escaped; no external resource)."""
    e = html.escape
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>trace {e(title)}</title><style>{_CSS}</style></head><body><h1>Trace of {e(title)}</h1>",
    ]
    conclusion = conclusion_of(parts)
    if conclusion:
        out.append(f"<div class='conclusion'><h2>Conclusion</h2><p><b>{e(conclusion['summary'])}</b></p><ol>")
        out += [f"<li>{e(line)}</li>" for line in conclusion["differences"]]
        out.append("</ol>")
        if conclusion["covarying"]:
            out.append(f"<details><summary>Co-varying signals ({len(conclusion['covarying'])})</summary><ul>")
            out += [f"<li>{e(line)}</li>" for line in conclusion["covarying"]]
            out.append("</ul></details>")
        out.append("</div>")
    for p in parts:
        out.append(f'<div class="part {e(p.kind)}"><h2>{e(p.header)}</h2>')
        for ph in p.phases:
            best = f' <span class="auroc">best AUROC {ph.best_auroc:.3f}</span>' if ph.best_auroc is not None else ""
            out.append(f"<details open><summary><b>{e(ph.title)}</b>{best}</summary>")
            for step in ph.steps:
                cls = "error" if step.status == "error" else ""
                opened = " open" if step.tools or step.notes else ""
                out.append(f'<details{opened}><summary class="{cls}">{e(_step_line(step))}</summary>')
                out += [f'<div class="tool">tool {e(_tool_line(t))}</div>' for t in step.tools]
                out += [f'<div class="note">{e(n)}</div>' for n in step.notes]
                out.append("</details>")
            out.append("</details>")
        if p.ended:
            out.append(f"<p><i>{e(p.ended)}</i></p>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)
