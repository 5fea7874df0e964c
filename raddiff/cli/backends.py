"""``raddiff backends``: every registered backend of every kind (scorer, describer, policy, judge), its id
syntax and description, and whether it is usable on this machine and why not.

The checks are cheap: files present, optional packages importable (found, not imported), credentials set,
a CUDA device visible, at most a short TCP connect to a server on this machine. No model is loaded.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# kind -> the "module:attr" of its registry (imported only when the command runs)
REGISTRIES: dict[str, str] = {
    "scorer": "tools.scorers.registry:SCORERS",
    "describer": "tools.describers.registry:DESCRIBERS",
    "policy": "agent.policies:POLICIES",
    "judge": "evals.bench.judges:JUDGES",
}


HEADINGS = {
    "scorer": "scorers (--scorer)",
    "describer": "describers (--describer)",
    "policy": "policies (--llm)",
    "judge": "judges (raddiff bench --judge)",
}


def backends_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff backends``."""
    parser.add_argument("--kind", choices=sorted(REGISTRIES), action="append", help="Only this kind (repeatable).")
    parser.add_argument("--json", action="store_true", help="Machine-readable output: a JSON list of backends.")
    parser.set_defaults(run=_backends)


def list_backends(kinds: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per registered backend (kind, name, syntax, description, usable, reason), kinds in the order
    scorer, describer, policy, judge (or only ``kinds``)."""
    from tools.plugins import load_target

    rows: list[dict[str, Any]] = []
    for kind, target in REGISTRIES.items():
        if kinds and kind not in kinds:
            continue
        rows.extend(load_target(target, what=f"the {kind} registry").listing())
    return rows


def render_backends(rows: list[dict[str, Any]]) -> str:
    """The listing as text: a heading per kind, then ``SYNTAX: usable (why)`` or ``SYNTAX: not usable: why``
    with the description on the line below."""
    lines: list[str] = []
    kind = None
    for row in rows:
        if row["kind"] != kind:
            kind = row["kind"]
            if lines:
                lines.append("")
            lines.append(f"{HEADINGS.get(kind, kind)}:")
        state = f"usable ({row['reason']})" if row["usable"] else f"not usable: {row['reason']}"
        lines.append(f"  {row['syntax']}: {state}")
        lines.append(f"      {row['description']}")
    return "\n".join(lines)


def _backends(args: argparse.Namespace) -> int:
    rows = list_backends(args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(render_backends(rows))
    return 0
