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
