"""Robustness sweeps on SynthDiffBench: purity, set size, and confounded pairs.

Each sweep builds variants of a few base pairs of the default suite into one JSONL file (a ``sweep`` field
on every record says kind, base and value) and runs them as one benchmark:

* ``purity``: the fraction of group A that really has A's finding, 1.0 down to 0.5;
* ``size``: studies per group (10 ... 500);
* ``confounded``: a nuisance differs between the groups along with the true finding - the view position
  (A all AP, B all PA) or a device (a pacemaker in 80% of A, 5% of B, recorded in the metadata as a report
  labeler would). Measured: is the finding in the top five, is the nuisance reported, does the confounder
  check flag the nuisance field?
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evals.bench.metrics import PairResult
from evals.bench.runner import write_json_atomic, write_text_atomic
from tools.domain import InputError

log = logging.getLogger(__name__)

SWEEPS = ("purity", "size", "confounded")
DEFAULT_BASES = ("effusion_right_moderate", "cardiomegaly_moderate", "rul_consolidation", "ptx_left_moderate")
DEFAULT_PURITY = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
DEFAULT_SIZES = (10, 25, 50, 100, 250, 500)
NUISANCES = ("view", "pacemaker")
NUISANCE_FIELD = {"view": "view_position", "pacemaker": "pacemaker"}


def _suite_specs(bases: Sequence[str], n: int, size: int) -> list[Any]:
    from evals.synth.pairs import default_suite

    specs = {s.name: s for s in default_suite(n=n, size=size)}
    unknown = [b for b in bases if b not in specs]
    if unknown:
        raise InputError(f"sweep: unknown base pair {unknown[0]!r} (see `raddiff synth bench --list`)")
    return [specs[b] for b in bases]


def _record(jsonl: Path, sweep: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(jsonl.read_text(encoding="utf-8").strip().splitlines()[0])
    record["sweep"] = sweep
    return record


def sweep_build_dir(cache_dir: Path | str, n: int, size: int) -> Path:
    """Where sweep pairs of ``n`` studies per group at ``size`` px are built (shared by the CLI and reproduce)."""
    return Path(cache_dir) / "synthdiffbench-sweeps" / f"n{n}_s{size}"


def build_sweep(
    kind: str,
    out_dir: Path,
    *,
    bases: Sequence[str] = DEFAULT_BASES,
    values: Sequence[float] | None = None,
    n: int = 20,
    size: int = 256,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Build the variant pairs of a sweep under ``out_dir``; returns ``<out_dir>/<kind>.jsonl``."""
    from evals.synth.bench import build_pair

    if kind not in SWEEPS:
        raise InputError(f"sweep {kind!r}: unknown (known: {', '.join(SWEEPS)})")
    out_dir = Path(out_dir)
    records: list[dict[str, Any]] = []
    specs = _suite_specs(bases, n, size)
    if kind == "purity":
        for spec in specs:
            for p in values or DEFAULT_PURITY:
                variant = spec.model_copy(update={"name": f"{spec.name}_purity{int(round(p * 100)):03d}", "purity": p})
                path = build_pair(variant, out_dir, seed, cache_dir=cache_dir, progress=progress)
                records.append(_record(path, {"kind": kind, "base": spec.name, "value": p}))
    elif kind == "size":
        for spec in specs:
            for v in values or DEFAULT_SIZES:
                k = int(v)
                variant = spec.model_copy(update={"name": f"{spec.name}_n{k:04d}", "n_a": k, "n_b": k})
                path = build_pair(variant, out_dir, seed, cache_dir=cache_dir, progress=progress)
                records.append(_record(path, {"kind": kind, "base": spec.name, "value": k}))
    else:
        for spec in specs:
            for nuisance in NUISANCES:
                records.append(_build_confounded(spec, nuisance, out_dir, seed, cache_dir, progress))
    jsonl = out_dir / f"{kind}.jsonl"
    write_text_atomic(jsonl, "".join(json.dumps(r) + "\n" for r in records))
    return jsonl


def _build_confounded(
    spec: Any, nuisance: str, out_dir: Path, seed: int, cache_dir: Path | None, progress: Any
) -> dict[str, Any]:
    """A pair whose A images come from a nuisance-heavy build and B images from a nuisance-free one."""
    from evals.synth.bench import build_pair

    name = f"{spec.name}_conf_{nuisance}"
    if nuisance == "view":
        side_a = spec.model_copy(update={"name": f"{name}_srcA", "view": "AP", "n_b": 1})
        side_b = spec.model_copy(update={"name": f"{name}_srcB", "view": "PA", "n_a": 1})
    else:
        bg_a = {**spec.background, nuisance: 0.8}
        bg_b = {**spec.background, nuisance: 0.05}
        side_a = spec.model_copy(update={"name": f"{name}_srcA", "background": bg_a, "n_b": 1})
        side_b = spec.model_copy(update={"name": f"{name}_srcB", "background": bg_b, "n_a": 1})
    rec_a = _record(build_pair(side_a, out_dir, seed, cache_dir=cache_dir, progress=progress), {})
    rec_b = _record(build_pair(side_b, out_dir, seed, cache_dir=cache_dir, progress=progress), {})
    if nuisance != "view":
        for rel in [*rec_a["set1_images"], *rec_b["set2_images"]]:
            _add_device_flag(out_dir / rel, nuisance)
    record = dict(rec_a)
    record.update(
        {
            "name": name,
            "set2_images": rec_b["set2_images"],
            "nuisance": {"kind": nuisance, "field": NUISANCE_FIELD[nuisance]},
            "sweep": {"kind": "confounded", "base": spec.name, "value": nuisance},
        }
    )
    return record


def _add_device_flag(image: Path, device: str) -> None:
    """Add ``<device>: true/false`` to an image's metadata sidecar, from the findings it lists (idempotent)."""
    sidecar = image.with_suffix(".json")
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    present = any(f.get("finding") == device for f in data.get("findings", []))
    if data.get(device) != present:
        data[device] = present
        write_json_atomic(sidecar, data)


def confounded_outcome(result: PairResult, nuisance: str) -> dict[str, Any]:
    """For a confounded pair: finding in top 5, nuisance named in top 5, confounder check flags the field."""
    from evals.bench.structured_judge import parse_findings

    top5 = result.hypotheses[:5]
    names_nuisance = nuisance != "view" and any(
        any(key == nuisance and present for key, present, _a in parse_findings(h.text)) for h in top5
    )
    field = NUISANCE_FIELD[nuisance]
    return {
        "finding_top1": result.acc1 is not None and result.acc1 > 0,
        "finding_top5": result.acc5 is not None and result.acc5 > 0,
        "nuisance_top5": names_nuisance if nuisance != "view" else None,
        "flagged": any(_warns_about_field(flag, field) for flag in result.confounder_flags),
    }


def _warns_about_field(flag: str, field: str) -> bool:
    """A confounder warning about the metadata field itself (it separates the groups, or a hypothesis' scores
    follow it), not one about two hypotheses that happen to name the nuisance."""
    return (flag.startswith("Metadata alone separates the groups") and field in flag) or f"follow {field}" in flag


def sweep_markdown(kind: str, results: Sequence[PairResult]) -> str:
    """Table of a sweep's results (one row per variant, grouped by base pair)."""
    rows = sorted(results, key=lambda r: (str(r.extra.get("sweep", {}).get("base")), r.index))
    if kind == "confounded":
        lines = [
            "| base pair | nuisance | acc@1 | acc@5 | finding in top 5 | nuisance in top 5 | flags it |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            sweep = r.extra.get("sweep", {})
            if r.status != "ok":
                lines.append(f"| {sweep.get('base')} | {sweep.get('value')} | error: {r.error} | | | | |")
                continue
            out = confounded_outcome(r, str(sweep.get("value")))
            nuis = "n/a (not a finding)" if out["nuisance_top5"] is None else ("yes" if out["nuisance_top5"] else "no")
            lines.append(
                f"| {sweep.get('base')} | {sweep.get('value')} | {_f(r.acc1)} | {_f(r.acc5)} | "
                f"{'yes' if out['finding_top5'] else 'no'} | {nuis} | {'yes' if out['flagged'] else 'no'} |"
            )
        return "\n".join(lines) + "\n"
    label = "purity" if kind == "purity" else "studies per group"
    lines = [
        f"| base pair | {label} | acc@1 | acc@5 | top AUROC | rounds | s / pair |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sweep = r.extra.get("sweep", {})
        if r.status != "ok":
            lines.append(f"| {sweep.get('base')} | {sweep.get('value')} | error: {r.error} | | | | |")
            continue
        lines.append(
            f"| {sweep.get('base')} | {sweep.get('value')} | {_f(r.acc1)} | {_f(r.acc5)} | {_f(r.top_auroc, 3)} | "
            f"{r.rounds} | {r.seconds:.1f} |"
        )
    means = _means_by_value(rows)
    if means:
        lines += ["", f"| {label} | mean acc@1 | mean acc@5 | mean top AUROC |", "|---|---|---|---|"]
        lines += [f"| {v} | {_f(a1)} | {_f(a5)} | {_f(au, 3)} |" for v, (a1, a5, au) in means.items()]
    return "\n".join(lines) + "\n"


def _means_by_value(rows: Sequence[PairResult]) -> dict[Any, tuple[float | None, float | None, float | None]]:
    from evals.bench.metrics import _mean

    groups: dict[Any, list[PairResult]] = {}
    for r in rows:
        if r.status == "ok":
            groups.setdefault(r.extra.get("sweep", {}).get("value"), []).append(r)
    ordered = sorted(groups, key=lambda v: -float(v)) if all(isinstance(v, int | float) for v in groups) else groups
    return {
        v: (
            _mean(r.acc1 for r in groups[v]),
            _mean(r.acc5 for r in groups[v]),
            _mean(r.top_auroc for r in groups[v]),
        )
        for v in ordered
    }


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
