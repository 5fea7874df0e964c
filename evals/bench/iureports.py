"""IUReportsBench: real report cohorts from the Indiana University reports that ``torchxrayvision`` ships.

Each pair is two groups of real reports (report-only studies, no images) whose ground truth comes from the
reports' MeSH major tags, read by :func:`tools.reports.iu.mesh_truth` (manual indexing, not the report text):

* **finding vs normal** (difficulty 1): reports tagged with the finding against reports tagged only "normal";
* **finding vs finding** (difficulty 2): reports with X and not Y against reports with Y and not X (two
  differences: X in A, Y in B);
* **attribute** (difficulty 3): one finding on one side against the same finding on the other side (or
  bilateral against one side), where the tags say so.

A pair whose groups also differ strongly in another tagged finding (:data:`MAX_COVARYING_GAP`) is left out.

A pair needs at least :data:`MIN_GROUP` reports per group and takes at most :data:`MAX_GROUP` (seeded
sample); groups never share a report. Reports whose tag for the pair's finding is 'borderline' are left out
of both groups. Half of the pairs of each kind are marked ``heldout`` by a seeded shuffle made when the
suite was defined, before any tuning: the policy, labeler and scorer must never be tuned on them.

The suite is written as a RadDiff JSONL pair file with ``set1_reports`` / ``set2_reports`` (report text
inline), structured ``truth`` and ``covarying`` (the prevalence in each group of the other tagged findings,
for reading a result: a finding tagged in many reports of one group is a real, unlisted difference).

:func:`split_figures` gives the figures of a run per half, per kind of pair and overall, over the differences
list (as SynthDiffBench reports it) and over the ranked list; ``raddiff bench run iureports`` prints them and
writes them to ``split.json``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.domain import InputError
from tools.reports.iu import IUReport, MeshTruth, load_iu_reports, mesh_truth
from tools.vocabulary import FINDINGS

MIN_GROUP = 50
MAX_GROUP = 150
MAX_COVARYING_GAP = 0.5
"""A pair is left out when another tagged finding's prevalence differs between its groups by this much or more:
its groups then differ by more than the truth says (edema cohorts are 70% cardiomegaly), so it tests nothing
clean."""
SUITE_SEED = 20
"""Seed of the held-out split and of the group samples (fixed: the split must not move between runs)."""

FINDING_VS_NORMAL = (
    "degenerative_spine",
    "calcified_granuloma",
    "lung_opacity",
    "cardiomegaly",
    "atelectasis",
    "low_lung_volumes",
    "hyperinflation",
    "aortic_tortuosity",
    "consolidation",
    "scarring",
    "aortic_calcification",
    "pleural_effusion",
    "central_venous_catheter",
    "elevated_hemidiaphragm",
    "nodule",
    "pulmonary_edema",
    "scoliosis",
    "interstitial_markings",
    "rib_fracture",
)
FINDING_VS_FINDING = (
    ("calcified_granuloma", "nodule"),
    ("scoliosis", "degenerative_spine"),
    ("atelectasis", "pleural_effusion"),
    ("cardiomegaly", "hyperinflation"),
    ("low_lung_volumes", "hyperinflation"),
    ("aortic_tortuosity", "aortic_calcification"),
    ("consolidation", "atelectasis"),
    ("scarring", "calcified_granuloma"),
    ("pulmonary_edema", "consolidation"),
    ("cardiomegaly", "low_lung_volumes"),
)
ATTRIBUTE_PAIRS = (
    ("calcified_granuloma", "right", "left"),
    ("lung_opacity", "right", "left"),
    ("atelectasis", "left", "right"),
    ("consolidation", "right", "left"),
    ("atelectasis", "bilateral", "left"),
    ("lung_opacity", "bilateral", "right"),
)
NORMAL_TEXT = "normal chest radiograph"


@dataclass(frozen=True)
class _Tagged:
    report: IUReport
    truth: MeshTruth


def _tagged() -> list[_Tagged]:
    return [_Tagged(r, mesh_truth(r)) for r in load_iu_reports()]


def _phrase(key: str, side: str | None = None) -> str:
    from tools.vocabulary import describe_finding

    return describe_finding(key, {"side": side} if side else {})


def _sample(pool: list[_Tagged], rng: random.Random) -> list[_Tagged]:
    pool = sorted(pool, key=lambda t: int(t.report.report_id) if t.report.report_id.isdigit() else 0)
    return rng.sample(pool, min(MAX_GROUP, len(pool)))


def _covarying(group: list[_Tagged], exclude: set[str]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for item in group:
        for key in item.truth.findings:
            if key not in exclude:
                counts[key] = counts.get(key, 0) + 1
    return {
        k: round(v / len(group), 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v / len(group) >= 0.1
    }


def _record(
    name: str,
    kind: str,
    difficulty: int,
    set1: str,
    set2: str,
    a: list[_Tagged],
    b: list[_Tagged],
    truth: list[dict[str, Any]],
) -> dict[str, Any]:
    keys = {str(t["finding"]) for t in truth}
    return {
        "name": name,
        "kind": kind,
        "difficulty": difficulty,
        "set1": set1,
        "set2": set2,
        "set1_reports": [{"study_id": f"iu{t.report.report_id}", "report": t.report.text} for t in a],
        "set2_reports": [{"study_id": f"iu{t.report.report_id}", "report": t.report.text} for t in b],
        "truth": truth,
        "covarying": {"A": _covarying(a, keys), "B": _covarying(b, keys)},
        "generator": "iureports",
    }


def _clean(record: dict[str, Any]) -> bool:
    """True when no covarying finding's prevalence differs between the groups by :data:`MAX_COVARYING_GAP`."""
    cov_a, cov_b = record["covarying"]["A"], record["covarying"]["B"]
    return all(abs(cov_a.get(k, 0.0) - cov_b.get(k, 0.0)) < MAX_COVARYING_GAP for k in set(cov_a) | set(cov_b))


def _has(item: _Tagged, key: str) -> bool:
    return key in item.truth.findings


def _doubtful(item: _Tagged, key: str) -> bool:
    return key in item.truth.uncertain


def build_pairs(seed: int = SUITE_SEED) -> list[dict[str, Any]]:
    """Every pair of the suite as a JSONL record (pairs with too few reports are left out), held-out half marked."""
    tagged = _tagged()
    normal = [t for t in tagged if t.truth.normal and not t.truth.other and not t.truth.uncertain]
    records: list[dict[str, Any]] = []
    rng = random.Random(seed)
    for key in FINDING_VS_NORMAL:
        pool = [t for t in tagged if _has(t, key)]
        if len(pool) < MIN_GROUP:
            continue
        a = _sample(pool, rng)
        b = _sample(normal, rng)
        records.append(
            _record(
                f"{key}_vs_normal",
                "finding_vs_normal",
                1,
                _phrase(key),
                NORMAL_TEXT,
                a,
                b,
                [{"finding": key, "group": "A", "attributes": {}}],
            )
        )
    for x, y in FINDING_VS_FINDING:
        pool_a = [t for t in tagged if _has(t, x) and not _has(t, y) and not _doubtful(t, y)]
        pool_b = [t for t in tagged if _has(t, y) and not _has(t, x) and not _doubtful(t, x)]
        if min(len(pool_a), len(pool_b)) < MIN_GROUP:
            continue
        a, b = _sample(pool_a, rng), _sample(pool_b, rng)
        truth = [{"finding": x, "group": "A", "attributes": {}}, {"finding": y, "group": "B", "attributes": {}}]
        records.append(_record(f"{x}_vs_{y}", "finding_vs_finding", 2, _phrase(x), _phrase(y), a, b, truth))
    for key, side_a, side_b in ATTRIBUTE_PAIRS:
        pool_a = [t for t in tagged if t.truth.findings.get(key, {}).get("side") == side_a]
        pool_b = [t for t in tagged if t.truth.findings.get(key, {}).get("side") == side_b]
        if min(len(pool_a), len(pool_b)) < MIN_GROUP:
            continue
        a, b = _sample(pool_a, rng), _sample(pool_b, rng)
        truth = [
            {"finding": key, "group": "A", "attributes": {"side": side_a}},
            {"finding": key, "group": "B", "attributes": {"side": side_b}},
        ]
        records.append(
            _record(
                f"{key}_{side_a}_vs_{side_b}", "attribute", 3, _phrase(key, side_a), _phrase(key, side_b), a, b, truth
            )
        )
    records = [r for r in records if _clean(r)]
    split = random.Random(seed + 1)
    for kind in ("finding_vs_normal", "finding_vs_finding", "attribute"):
        members = [r for r in records if r["kind"] == kind]
        split.shuffle(members)
        for i, record in enumerate(members):
            record["heldout"] = i % 2 == 1
    for record in records:
        for entry in record["truth"]:
            if entry["finding"] not in FINDINGS:
                raise InputError(f"iureports: truth finding {entry['finding']!r} is not in the vocabulary")
        ids_a = {s["study_id"] for s in record["set1_reports"]}
        if ids_a & {s["study_id"] for s in record["set2_reports"]}:
            raise InputError(f"iureports: pair {record['name']} shares a report between its groups")
    return records


def build_suite(out_dir: Path, seed: int = SUITE_SEED) -> Path:
    """Write the suite's JSONL under ``out_dir`` (once per seed; an existing complete file is reused)."""
    path = Path(out_dir) / f"iureports_seed{seed}.jsonl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in build_pairs(seed):
            handle.write(json.dumps(record) + "\n")
    tmp.replace(path)
    return path


FALSE_DIFFERENCE_Q = 0.05
FALSE_DIFFERENCE_AUROC = 0.7


COVARYING_GAP = 0.1
"""A called difference naming a finding tagged in at least this much more of its group's reports than of the
other group's is a real, unlisted difference of the cohorts (see ``covarying``), not a false one."""


def _covarying_difference(finding: str | None, group: str, covarying: dict[str, dict[str, float]]) -> bool:
    if finding is None:
        return False
    other = "B" if group == "A" else "A"
    return covarying.get(group, {}).get(finding, 0.0) - covarying.get(other, {}).get(finding, 0.0) >= COVARYING_GAP


KINDS = ("finding_vs_normal", "finding_vs_finding", "attribute")


def _subsets(results: list[Any]) -> list[tuple[str, list[Any]]]:
    """The subsets the split figures are given for: each half, each kind within each half, and all pairs."""
    out: list[tuple[str, list[Any]]] = []
    for half, held in (("tuned", False), ("heldout", True)):
        members = [r for r in results if bool(r.extra.get("heldout")) == held]
        out.append((half, members))
        out += [(f"{half} / {kind}", [r for r in members if r.extra.get("kind") == kind]) for kind in KINDS]
    out.append(("all", list(results)))
    return [(name, members) for name, members in out if members]


def _stored_differences(out_dir: Path, pair_id: str) -> list[Any]:
    from graphs.run import load_result

    run_dir = Path(out_dir) / "runs" / pair_id
    return list(load_result(run_dir).differences) if (run_dir / "result.json").is_file() else []


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 3) if den else None


def split_figures(out_dir: Path, results: list[Any]) -> dict[str, dict[str, Any]]:
    """Figures of a benchmark folder per half (tuned / held-out), per kind of pair within each half, and
    overall.

    Over the run's **differences list** (what a user reads, as SynthDiffBench reports it): acc@1 and acc@5, the
    false-difference rate (differences judged 0 / differences reported, pooled), the same without the
    differences that name a covarying tagged finding more present in the group they name (:data:`COVARYING_GAP`:
    a real difference of the cohorts that the truth does not list), planted recall and differences per pair.
    Beside them the ranked list's figures: acc@1 / acc@5 over the ranked hypotheses and the share of called
    hypotheses (q < :data:`FALSE_DIFFERENCE_Q`, AUROC >= :data:`FALSE_DIFFERENCE_AUROC`) judged 0. The finding
    keys of the differences and the q-values of the ranked list are read from ``runs/<pair_id>/result.json``."""
    from graphs.run import load_result

    out: dict[str, dict[str, Any]] = {}
    for name, members in _subsets(results):
        ok = [r for r in members if r.status == "ok"]
        called = wrong = covarying = 0
        reported = false = false_covarying = 0
        for r in ok:
            cov = r.extra.get("covarying") or {}
            stored = _stored_differences(out_dir, r.pair_id)
            for judged, difference in zip(r.differences, stored, strict=False):
                if judged.score is None:
                    continue
                reported += 1
                if judged.score == 0:
                    false += 1
                    false_covarying += _covarying_difference(difference.finding, difference.group, cov)
            run_dir = Path(out_dir) / "runs" / r.pair_id
            ranked = load_result(run_dir).ranked if (run_dir / "result.json").is_file() else []
            for hyp_judged, item in zip(r.hypotheses, ranked, strict=False):
                if item.score.q_value < FALSE_DIFFERENCE_Q and item.directional_auroc >= FALSE_DIFFERENCE_AUROC:
                    called += 1
                    if hyp_judged.score == 0:
                        wrong += 1
                        hyp = item.hypothesis
                        covarying += _covarying_difference(hyp.finding, hyp.group, cov)
        planted = [r for r in ok if r.planted and r.planted_found is not None]
        out[name] = {
            "pairs": len(members),
            "errors": len(members) - len(ok),
            "diff_acc1": _mean3(r.diff_acc1 for r in ok),
            "diff_acc5": _mean3(r.diff_acc5 for r in ok),
            "false_difference_rate": _ratio(false, reported),
            "false_difference_rate_beyond_covarying": _ratio(false - false_covarying, reported),
            "planted_recall": _ratio(sum(r.planted_found for r in planted), sum(r.planted for r in planted)),
            "differences_per_pair": _ratio(sum(len(r.differences) for r in ok), len(ok)),
            "differences_reported": reported,
            "acc1": _mean3(r.acc1 for r in ok),
            "acc5": _mean3(r.acc5 for r in ok),
            "called_differences": called,
            "ranked_false_rate": _ratio(wrong, called),
            "ranked_false_rate_beyond_covarying": _ratio(wrong - covarying, called),
        }
    return out


def _mean3(values: Any) -> float | None:
    known = [float(v) for v in values if v is not None]
    return round(sum(known) / len(known), 3) if known else None


SPLIT_COLUMNS = (
    ("pairs", "pairs"),
    ("errors", "errors"),
    ("acc@1 (differences)", "diff_acc1"),
    ("acc@5 (differences)", "diff_acc5"),
    ("false-difference rate", "false_difference_rate"),
    ("false-difference rate, covarying tagged findings not counted", "false_difference_rate_beyond_covarying"),
    ("planted recall", "planted_recall"),
    ("differences / pair", "differences_per_pair"),
    ("acc@1 / acc@5 (ranked)", ""),
    ("ranked list's false rate (q<0.05, AUROC>=0.7), strict / covarying not counted", "ranked_false_rate"),
)


def split_markdown(figures: dict[str, dict[str, Any]]) -> str:
    """The split figures as a Markdown table (one row per subset of :func:`split_figures`)."""

    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    lines = [
        "| subset | " + " | ".join(c[0] for c in SPLIT_COLUMNS) + " |",
        "|---|" + "---|" * len(SPLIT_COLUMNS),
    ]
    for name, f in figures.items():
        cells = []
        for _title, key in SPLIT_COLUMNS:
            if key == "":
                cells.append(f"{cell(f['acc1'])} / {cell(f['acc5'])}")
            elif key == "ranked_false_rate":
                cells.append(f"{cell(f[key])} / {cell(f['ranked_false_rate_beyond_covarying'])}")
            else:
                cells.append(cell(f[key]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
