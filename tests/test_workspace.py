"""The radiologist's tools over a real SynthCXR comparison with the offline backends (mini scorer/describer)."""

import json

import pytest

from tests.conftest import requires_mini_weights
from tools.agent_tools import make_tools
from tools.domain import Hypothesis
from tools.settings import Settings
from tools.workspace import Workspace

pytestmark = [pytest.mark.slow, requires_mini_weights]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, effusion_pair):
    comparison = effusion_pair
    settings = Settings(cache_dir=tmp_path_factory.mktemp("ws-cache"))
    return Workspace(comparison, settings=settings, artifacts_dir=tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def tools(workspace):
    return {t.name: t for t in make_tools(workspace)}


def test_describe_images_reads_like_a_report_and_sees_the_effusion(workspace, tools):
    ids, texts = workspace.describe("A", n=6)
    assert len(ids) == 6 and all(t.startswith("FINDINGS:") and "IMPRESSION:" in t for t in texts)
    assert sum("pleural effusion" in t.lower() and "no pleural effusion" not in t.lower() for t in texts) >= 4
    out = tools["describe_images"].invoke({"group": "B", "n": 3})
    assert out.count("[") == 3 and "FINDINGS" in out
    assert tools["describe_images"].invoke({"group": "A", "study_ids": ["nope"]}).startswith("error: study 'nope'")


def test_score_hypotheses_separates_the_planted_finding(workspace, tools):
    scored = workspace.score([Hypothesis(text="pleural effusion", group="A"), Hypothesis(text="pacemaker", group="A")])
    assert scored[0].directional_auroc > 0.9 > scored[1].directional_auroc
    assert scored[0].score.ci_low < scored[0].score.auroc and len(scored[0].evidence_a) == workspace.evidence_k
    assert all("/A/" in sid for sid in scored[0].evidence_a) and all("/B/" in sid for sid in scored[0].evidence_b)
    text = tools["score_hypotheses"].invoke({"hypotheses": ["right pleural effusion"], "groups": ["A"]})
    assert "AUROC" in text and "95% CI" in text
    bad = tools["score_hypotheses"].invoke({"hypotheses": ["a", "b"], "groups": ["A"]})
    assert bad.startswith("error:")


def test_zoom_rescores_on_region_crops(workspace, tools):
    scored, data = workspace.zoom(
        "costophrenic_angle_right", [Hypothesis(text="pleural effusion", group="A")], n_per_group=10
    )
    assert data["n_a"] == 10 and data["n_b"] == 10 and scored[0].region == "costophrenic_angle_right"
    # the mini model was trained on region crops too (of 0.3-0.7 of the frame's side; this angle's box is
    # smaller): the effusion shows in the right costophrenic angle, though less clearly than on the whole frame
    assert scored[0].directional_auroc > 0.65
    stats = scored[0].score
    assert stats.n_a == 10 and stats.n_b == 10 and stats.ci_low <= stats.auroc <= stats.ci_high
    assert (workspace.artifacts_dir / "zoom-costophrenic_angle_right-round0.png").is_file()
    assert tools["localize_and_zoom"].invoke({"region": "elbow", "hypotheses": ["x"]}).startswith("error: unknown")


def test_reports_grid_confounders_and_records(workspace, tools):
    table = tools["lookup_reports"].invoke({"action": "tabulate"})
    assert "pleural_effusion" in table or "pleural effusion" in table
    hits = tools["lookup_reports"].invoke({"action": "search", "group": "A", "query": "effusion", "n": 3})
    assert "<<<UNTRUSTED" in hits and "effusion" in hits.lower()
    grid = json.loads(tools["build_image_grid"].invoke({"group": "A", "rows": 2, "cols": 3}))
    assert len(grid["study_ids"]) == 6
    top = workspace.score([Hypothesis(text="pleural effusion", group="A")])
    report = workspace.confounders(top)
    assert report is not None and "view_position" in report.field_auroc
    names = [r.tool for r in workspace.records]
    assert {"describe_images", "score_hypotheses", "embed_images", "localize_and_zoom"} <= set(names)
    assert all(r.seconds >= 0 and r.backend for r in workspace.records)


def test_crop_wording_drops_what_a_crop_cannot_show():
    from tools.reports.phrasing import crop_wording

    nodule = Hypothesis(
        text="small right upper zone pulmonary nodule",
        group="B",
        finding="nodule",
        attributes={"side": "right", "zone": "upper", "size": "small"},
        contrast="no small right upper zone pulmonary nodule",
    )
    on_crop = crop_wording(nodule)
    assert on_crop.text == "pulmonary nodule" and on_crop.attributes == {} and on_crop.contrast is None
    assert on_crop.group == "B"
    tip = Hypothesis(
        text="endotracheal tube with the tip in the right main bronchus",
        group="A",
        finding="endotracheal_tube",
        attributes={"tip": "right_main_bronchus"},
    )
    assert crop_wording(tip) == tip  # where a tip ends is visible in the crop
    free = Hypothesis(text="left basilar opacity", group="A")
    assert crop_wording(free) == free
