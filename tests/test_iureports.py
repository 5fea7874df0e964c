"""IUReportsBench: MeSH truth, the pairs' invariants (sizes, disjoint groups, held-out half) and its judging."""

from collections import Counter

import pytest

from evals.bench.judges import TruthContext
from evals.bench.structured_judge import StructuredJudge
from tools.reports.iu import IUReport, mesh_finding, mesh_truth
from tools.vocabulary import FINDINGS


def _report(*tags: str) -> IUReport:
    return IUReport("1", "", "", "Findings.", "", mesh_major=tags)


def test_mesh_terms_map_onto_the_vocabulary_with_sides_sizes_and_borderline():
    assert mesh_finding("Calcified Granuloma/lung/upper lobe/right") == "calcified_granuloma"
    assert mesh_finding("Fractures, Bone/ribs/left/healed") == "rib_fracture"
    assert mesh_finding("Fractures, Bone/clavicle") == "fracture"
    assert mesh_finding("Technical Quality of Image Unsatisfactory") is None
    truth = mesh_truth(_report("Pleural Effusion/left/small", "Pleural Effusion/right", "Cardiomegaly/borderline"))
    assert truth.findings == {"pleural_effusion": {"side": "bilateral", "size": "small"}}
    assert truth.uncertain == ("cardiomegaly",) and not truth.normal
    assert mesh_truth(_report("normal")).normal


@pytest.mark.slow
def test_suite_pairs_are_disjoint_sized_and_half_held_out():
    from evals.bench.iureports import MAX_GROUP, MIN_GROUP, build_pairs

    pairs = build_pairs()
    assert len(pairs) >= 30 and len({p["name"] for p in pairs}) == len(pairs)
    kinds = Counter(p["kind"] for p in pairs)
    assert set(kinds) == {"finding_vs_normal", "finding_vs_finding", "attribute"}
    for kind in kinds:
        held = sum(p["heldout"] for p in pairs if p["kind"] == kind)
        assert held == kinds[kind] // 2
    for p in pairs:
        a = {s["study_id"] for s in p["set1_reports"]}
        b = {s["study_id"] for s in p["set2_reports"]}
        assert MIN_GROUP <= len(a) <= MAX_GROUP and MIN_GROUP <= len(b) <= MAX_GROUP and not a & b
        assert all(t["finding"] in FINDINGS for t in p["truth"])
    assert build_pairs() == pairs  # the split and the samples are fixed


def test_judge_keeps_lung_opacity_when_the_truth_names_it():
    truth = TruthContext(
        "right lung opacity",
        "left lung opacity",
        [
            {"finding": "lung_opacity", "group": "A", "attributes": {"side": "right"}},
            {"finding": "lung_opacity", "group": "B", "attributes": {"side": "left"}},
        ],
    )
    judge = StructuredJudge()
    assert judge.score("right lung opacity", "A", truth)[0] == 2
    assert judge.score("left lower zone lung opacity", "B", truth)[0] == 2
    assert judge.score("right consolidation", "A", truth)[0] == 0
    # a truth without lung opacity keeps reading a bare opacity as consolidation (SynthDiffBench's wording)
    synth = TruthContext("consolidation", "no consolidation", [{"finding": "consolidation", "group": "A"}])
    assert judge.score("right lower lobe opacity", "A", synth)[0] >= 1


def test_split_figures_over_the_differences_list_by_half_and_kind(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from evals.bench import iureports
    from evals.bench.metrics import JudgedDifference, PairResult

    def pair(pair_id: str, heldout: bool, kind: str, diffs: list[tuple[str, str, int]], found: int) -> PairResult:
        judged = [
            JudgedDifference(rank=i, text=t, group=g, auroc=0.9, q_value=0.001, score=s)
            for i, (t, g, s) in enumerate(diffs, start=1)
        ]
        scores = [d.score for d in judged]
        return PairResult(
            pair_id=pair_id,
            index=0,
            suite="iureports",
            status="ok",
            differences=judged,
            planted=1,
            planted_found=found,
            diff_acc1=(scores[0] / 2) if scores else 0.0,
            diff_acc5=(max(scores) / 2) if scores else 0.0,
            extra={"heldout": heldout, "kind": kind, "covarying": {"A": {"degenerative_spine": 0.3}, "B": {}}},
        )

    results = [
        pair("p1", False, "finding_vs_normal", [("scoliosis", "A", 2), ("degenerative changes", "A", 0)], 1),
        pair("p2", False, "attribute", [], 0),
        pair("p3", True, "finding_vs_normal", [("cardiomegaly", "A", 2), ("pacemaker", "A", 0)], 1),
    ]
    findings = {"scoliosis": "scoliosis", "degenerative changes": "degenerative_spine", "cardiomegaly": "cardiomegaly"}

    def stored(_out: object, pair_id: str) -> list[SimpleNamespace]:
        r = next(r for r in results if r.pair_id == pair_id)
        return [SimpleNamespace(finding=findings.get(d.text, "pacemaker"), group=d.group) for d in r.differences]

    monkeypatch.setattr(iureports, "_stored_differences", stored)
    figures = iureports.split_figures(tmp_path, results)
    assert set(figures) == {
        "tuned",
        "tuned / finding_vs_normal",
        "tuned / attribute",
        "heldout",
        "heldout / finding_vs_normal",
        "all",
    }
    tuned, held = figures["tuned"], figures["heldout"]
    assert tuned["diff_acc1"] == 0.5 and tuned["planted_recall"] == 0.5 and tuned["differences_per_pair"] == 1.0
    # the degenerative spine is a covarying tagged finding of group A: false strictly, not beyond covarying
    assert tuned["false_difference_rate"] == 0.5 and tuned["false_difference_rate_beyond_covarying"] == 0.0
    # the pacemaker is not tagged in either group: false both ways
    assert held["false_difference_rate"] == 0.5 and held["false_difference_rate_beyond_covarying"] == 0.5
    assert figures["tuned / attribute"]["diff_acc1"] == 0.0 and figures["all"]["differences_reported"] == 4
    table = iureports.split_markdown(figures)
    assert table.count("\n") == len(figures) + 1 and "| heldout | 1 | 0 | 1.0 |" in table
