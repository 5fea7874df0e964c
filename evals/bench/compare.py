"""Two benchmark folders, pair by pair: did a change alter what the tool reports? (``raddiff bench diff A B``)

Compares every ``pairs/<id>.json`` and every run's ``runs/<id>/result.json`` field by field, leaving out what
differs from run to run by nature (timings, the run's settings and id). A refactor that claims "behaviour
unchanged" should show no difference; a deliberate change shows exactly which pairs and fields moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.domain import InputError

PAIR_VOLATILE = frozenset({"seconds", "extra"})
"""Fields of a pair result that change from run to run without a change of behaviour (wall time, extras)."""
RESULT_VOLATILE = frozenset({"seconds", "settings", "run_id"})
"""Fields of a run's result.json that change from run to run (wall time, paths in the settings, the run id)."""


@dataclass
class FieldChange:
    """One field that differs: where, and the two values (shortened)."""

    where: str
    field: str
    before: str
    after: str


@dataclass
class BenchDiff:
    """What differs between two benchmark folders."""

    pairs_compared: int = 0
    results_compared: int = 0
    only_before: list[str] = field(default_factory=list)
    only_after: list[str] = field(default_factory=list)
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when the same pairs ran and no compared field differs."""
        return not (self.only_before or self.only_after or self.changes)

    def lines(self, limit: int = 50) -> list[str]:
        """A few plain lines: the counts, then each change (the first ``limit``)."""
        changed_pairs = len({c.where for c in self.changes})
        out = [
            f"{self.pairs_compared} pairs and {self.results_compared} run results compared: "
            + ("identical (timings, settings and run ids left out)" if self.identical else f"{changed_pairs} differ")
        ]
        out += [f"only in the first folder: {name}" for name in self.only_before]
        out += [f"only in the second folder: {name}" for name in self.only_after]
        out += [f"{c.where}: {c.field}: {c.before} -> {c.after}" for c in self.changes[:limit]]
        if len(self.changes) > limit:
            out.append(f"... {len(self.changes) - limit} more changes")
        return out


def _without(value: Any, volatile: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, volatile) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [_without(v, volatile) for v in value]
    return value


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _short(value: Any, width: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


MISSING = "(absent)"


def _leaf_changes(path: str, a: Any, b: Any) -> list[tuple[str, str, str]]:
    """The smallest parts of ``a`` and ``b`` that differ, as (path, before, after): into dicts by key and into
    lists by index, so a list that gained an entry shows that entry, not the whole list."""
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, str, str]] = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append((sub, MISSING, _short(b[key])))
            elif key not in b:
                out.append((sub, _short(a[key]), MISSING))
            else:
                out += _leaf_changes(sub, a[key], b[key])
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(a):
                out.append((sub, MISSING, _short(b[i])))
            elif i >= len(b):
                out.append((sub, _short(a[i]), MISSING))
            else:
                out += _leaf_changes(sub, a[i], b[i])
        return out
    return [(path, _short(a), _short(b))]


def _compare(where: str, before: dict[str, Any], after: dict[str, Any], volatile: frozenset[str]) -> list[FieldChange]:
    changes = _leaf_changes("", _without(before, volatile), _without(after, volatile))
    return [FieldChange(where, path, a, b) for path, a, b in changes]


def diff_bench_dirs(before: Path | str, after: Path | str) -> BenchDiff:
    """Compare two benchmark folders (as ``raddiff bench run --output-dir`` writes them) pair by pair."""
    dirs = [Path(before), Path(after)]
    for folder in dirs:
        if not (folder / "pairs").is_dir():
            raise InputError(f"{folder}: not a benchmark folder (no pairs/)")
    names = [{p.stem for p in (folder / "pairs").glob("*.json")} for folder in dirs]
    out = BenchDiff(only_before=sorted(names[0] - names[1]), only_after=sorted(names[1] - names[0]))
    for name in sorted(names[0] & names[1]):
        out.pairs_compared += 1
        pair = [_read(folder / "pairs" / f"{name}.json") for folder in dirs]
        out.changes += _compare(name, pair[0], pair[1], PAIR_VOLATILE)
        results = [folder / "runs" / name / "result.json" for folder in dirs]
        if all(r.is_file() for r in results):
            out.results_compared += 1
            out.changes += _compare(f"{name} (result.json)", _read(results[0]), _read(results[1]), RESULT_VOLATILE)
    return out
