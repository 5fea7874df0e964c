"""Confounder check: metadata fields that separate the groups, hypotheses that track them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tools.domain import ConfounderReport, InputError, StudyMetadata
from tools.scoring.confounders import check_confounders, field_separation


def make_cohort(n: int = 400, seed: int = 0):
    """Group A is mostly AP (sicker, portable films) and older; sex is balanced; a device flag is random."""
    rng = np.random.default_rng(seed)
    groups = np.arange(n) < n // 2
    view = np.where(rng.random(n) < np.where(groups, 0.8, 0.2), "AP", "PA")
    age = np.round(rng.normal(np.where(groups, 70, 55), 10), 0)
    sex = rng.choice(["F", "M"], n)
    device = rng.random(n) < 0.3
    meta = [
        StudyMetadata(
            view_position=str(view[i]), sex=str(sex[i]), age=float(age[i]), extra={"support_devices": bool(device[i])}
        )
        for i in range(n)
    ]
    return meta, groups, view, age, sex, rng


def test_field_aurocs_match_sklearn() -> None:
    meta, groups, view, age, sex, _ = make_cohort()
    fields = {f.name: f for f in field_separation(meta, groups)}
    assert set(fields) == {"view_position", "sex", "age", "support_devices"}
    assert fields["age"].auroc == pytest.approx(roc_auc_score(groups, age))
    assert fields["age"].level is None
    view_f = fields["view_position"]
    best = max((roc_auc_score(groups, view == level) for level in ("AP", "PA")), key=lambda a: abs(a - 0.5))
    assert view_f.auroc == pytest.approx(best)
    assert view_f.share_a == pytest.approx(np.mean(view[groups] == view_f.level))
    assert abs(fields["sex"].auroc - 0.5) < 0.1


def test_report_flags_separating_fields_and_proxy_hypotheses() -> None:
    meta, groups, view, age, sex, rng = make_cohort()
    is_ap = (view == "AP").astype(float)
    scores = {
        # tracks the view itself (AP films look different), inside both groups: a proxy
        "enlarged cardiac silhouette": is_ap + 0.3 * rng.standard_normal(len(view)),
        # a real difference unrelated to metadata
        "pleural effusion": groups + 0.5 * rng.standard_normal(len(view)),
    }
    report = check_confounders(meta, groups, scores)
    assert isinstance(report, ConfounderReport)
    assert report.field_auroc["view_position"] == pytest.approx(
        max((roc_auc_score(groups, view == lv) for lv in ("AP", "PA")), key=lambda a: abs(a - 0.5))
    )
    text = " ".join(report.flagged)
    assert "view_position" in text and "age" in text
    assert "sex" not in text and "support_devices" not in text
    proxy = report.hypothesis_correlation["enlarged cardiac silhouette"]
    honest = report.hypothesis_correlation["pleural effusion"]
    assert abs(proxy["view_position"]) > 0.6
    assert abs(honest["view_position"]) < 0.2
    assert any("enlarged cardiac silhouette" in f and "proxy" in f for f in report.flagged)
    assert not any("'pleural effusion'" in f for f in report.flagged)
    # pooled correlation would have blamed the honest hypothesis too: it differs between groups like view does
    pooled = np.corrcoef(scores["pleural effusion"], is_ap)[0, 1]
    assert pooled > 0.3  # would cross CORRELATION_FLAG


def test_missing_values_and_mappings() -> None:
    meta: list[Any] = [
        {"view_position": "AP", "age": 80},
        {"view_position": "AP"},
        {"view_position": "PA", "age": 40, "scanner": "x"},
        {"view_position": "PA", "age": 45, "scanner": "y"},
        None,
    ]
    groups = np.array([True, True, False, False, True])
    report = check_confounders(meta, groups)
    assert report.field_auroc["view_position"] == 1.0  # AP is in group A only
    assert report.field_auroc["age"] == 1.0  # one A with an age (80) vs two B
    assert "scanner" not in report.field_auroc  # never present in group A: not checkable
    assert report.hypothesis_correlation == {}


def test_constant_field_and_tiny_groups_give_defined_results() -> None:
    meta = [StudyMetadata(view_position="PA", age=50.0) for _ in range(4)]
    groups = np.array([True, False, True, False])
    report = check_confounders(meta, groups, {"x": np.array([0.1, 0.2, 0.3, 0.4])})
    assert report.field_auroc["view_position"] == 0.5
    assert report.field_auroc["age"] == 0.5
    assert report.flagged == []
    assert report.hypothesis_correlation["x"] == {}  # no variation within groups: nothing to correlate


@pytest.mark.parametrize(
    ("groups", "scores", "match"),
    [
        (np.array([True, False]), None, "expected 3 entries"),
        (np.array([True, True, True]), None, "one group is empty"),
        (np.array(["a", "b", "c"]), None, "must be boolean"),
        (np.array([True, False, True]), {"h": np.array([1.0, 2.0])}, "2 scores per hypothesis"),
        (np.array([True, False, True]), {"h": np.array([1.0, np.nan, 2.0])}, "NaN"),
    ],
)
def test_bad_input(groups: np.ndarray, scores: dict | None, match: str) -> None:
    meta = [StudyMetadata(sex="F"), StudyMetadata(sex="M"), StudyMetadata(sex="F")]
    with pytest.raises(InputError, match=match):
        check_confounders(meta, groups, scores)


def test_hypothesis_that_follows_a_better_ranked_one_is_flagged() -> None:
    meta, groups, view, age, sex, rng = make_cohort()
    effusion = groups + 0.5 * rng.standard_normal(len(view))
    scores = {
        "moderate right pleural effusion": effusion,
        # the scorer reads the effusion as a rib fracture too: same signal, slightly noisier
        "right rib fracture": effusion + 0.05 * rng.standard_normal(len(view)),
        # another wording of the same finding: tracks it by design, not flagged
        "right pleural effusion": effusion + 0.05 * rng.standard_normal(len(view)),
        # a second, independent difference
        "cardiomegaly": groups + 0.5 * rng.standard_normal(len(view)),
    }
    findings = {
        "moderate right pleural effusion": "pleural_effusion",
        "right pleural effusion": "pleural_effusion",
        "right rib fracture": "rib_fracture",
        "cardiomegaly": "cardiomegaly",
    }
    report = check_confounders(meta, groups, scores, findings=findings)
    overlap = report.hypothesis_overlap
    assert overlap["right rib fracture"]["moderate right pleural effusion"] > 0.9
    assert "right pleural effusion" not in overlap  # only compared with other findings
    assert abs(overlap["cardiomegaly"]["moderate right pleural effusion"]) < 0.3
    follows = [f for f in report.flagged if "may restate" in f]
    assert len(follows) == 1 and follows[0].startswith("Hypothesis 'right rib fracture'")
    assert "'moderate right pleural effusion'" in follows[0]
    # without the finding of each text every pair counts: the second wording then follows the first
    plain = check_confounders(meta, groups, scores)
    assert any(f.startswith("Hypothesis 'right pleural effusion'") and "may restate" in f for f in plain.flagged)


def test_run_summary_and_report_carry_the_warnings() -> None:
    from graphs.run import result_markdown, result_summary
    from tools.domain import RunResult

    flag = "Hypothesis 'right rib fracture': its scores follow those of 'pleural effusion' ... may restate ..."
    result = RunResult(run_id="r", set_a_name="a", set_b_name="b", n_a=3, n_b=3)
    assert "WARNING" not in result_summary(result)
    result = result.model_copy(update={"confounders": ConfounderReport(flagged=[flag])})
    assert f"- WARNING: {flag}" in result_summary(result).splitlines()
    assert f"- WARNING: {flag}" in result_markdown(result).splitlines()
