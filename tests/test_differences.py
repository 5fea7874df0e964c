"""Differences and co-varying signals: comparisons where the truth is known, built from scores and texts."""

from __future__ import annotations

import numpy as np
import pytest

from tools.domain import Hypothesis, ScoredHypothesis
from tools.ranking.differences import (
    Channels,
    conditional_group_p,
    newcombe_difference,
    positive_mentions,
    prevalence,
    select_differences,
    summary_sentence,
    within_group_spearman,
)
from tools.scoring.statistics import auroc_statistics, benjamini_hochberg

N = 40  # studies per group


def _groups() -> np.ndarray:
    return np.array([True] * N + [False] * N)


def _scored(
    rows: dict[str, np.ndarray], specs: list[tuple[str, str | None, dict[str, str]]], in_a: np.ndarray
) -> tuple[list[ScoredHypothesis], dict[str, np.ndarray]]:
    """ScoredHypothesis per (text, finding, attributes) from its score row, ranked by directional AUROC, with
    BH q-values across them (as the run's finalize does)."""
    texts = [t for t, _, _ in specs]
    stats = auroc_statistics(np.stack([rows[t] for t in texts]), in_a).records()
    items = []
    for (text, finding, attrs), score in zip(specs, stats, strict=True):
        group = "A" if score.auroc >= 0.5 else "B"
        hyp = Hypothesis(text=text, group=group, finding=finding, attributes=attrs)
        items.append(ScoredHypothesis(hypothesis=hyp, score=score))
    items.sort(key=lambda s: s.directional_auroc, reverse=True)
    q = benjamini_hochberg([s.score.p_value for s in items])
    ranked = [
        s.model_copy(update={"score": s.score.model_copy(update={"q_value": float(v)})})
        for s, v in zip(items, q, strict=True)
    ]
    return ranked, {" ".join(t.lower().split()): rows[t] for t in texts}


def _reports(texts_a: list[str], texts_b: list[str]) -> dict[str, list]:
    return {"A": [positive_mentions(t) for t in texts_a], "B": [positive_mentions(t) for t in texts_b]}


def _report_channels(texts_a: list[str], texts_b: list[str]) -> Channels:
    """The reports channel of a comparison: labelled mentions and open-vocabulary phrases of each report."""
    from tools.reports.phrases import text_phrases

    phrases = {"A": [frozenset(text_phrases(t)) for t in texts_a], "B": [frozenset(text_phrases(t)) for t in texts_b]}
    return Channels(reports=_reports(texts_a, texts_b), phrases={"reports": phrases})


def test_restated_wordings_fold_into_one_difference() -> None:
    rng = np.random.default_rng(0)
    in_a = _groups()
    effusion = rng.normal(size=2 * N) + 2.5 * in_a
    rows = {
        "moderate right pleural effusion": effusion + rng.normal(scale=0.1, size=2 * N),
        "right pleural effusion": effusion + rng.normal(scale=0.1, size=2 * N),
        "pleural effusion": effusion + rng.normal(scale=0.1, size=2 * N),
    }
    specs = [
        ("moderate right pleural effusion", "pleural_effusion", {"side": "right", "size": "moderate"}),
        ("right pleural effusion", "pleural_effusion", {"side": "right"}),
        ("pleural effusion", "pleural_effusion", {}),
    ]
    ranked, keyed = _scored(rows, specs, in_a)
    reports = _reports(["Moderate right pleural effusion."] * N, ["No pleural effusion."] * N)
    differences, covarying = select_differences(ranked, keyed, in_a, Channels(reports=reports))
    assert len(differences) == 1
    only = differences[0]
    assert only.finding == "pleural_effusion" and only.group == "A"
    assert only.text == "moderate right pleural effusion"  # the reports back it with all its attributes
    assert len(only.wordings) == 2
    counted = [(p.channel, p.claim) for p in only.prevalence]
    assert counted == [("reports", "pleural effusion"), ("reports", "moderate right pleural effusion")]
    by_channel = {p.channel: p for p in only.prevalence}
    assert by_channel["reports"].counts() == f"{N}/{N} vs 0/{N}"
    assert by_channel["reports"].p_value < 1e-10
    assert by_channel["reports"].calibrated
    assert covarying == []


def test_correlated_artefact_is_demoted_with_and_without_text() -> None:
    rng = np.random.default_rng(1)
    in_a = _groups()
    effusion = rng.normal(size=2 * N) + 3.0 * in_a
    # the artefact's scores follow the effusion's (within and between the groups) plus its own noise
    artefact = 0.7 * effusion + rng.normal(scale=0.5, size=2 * N)
    rows = {"pleural effusion": effusion, "pneumothorax": artefact}
    specs = [("pleural effusion", "pleural_effusion", {}), ("pneumothorax", "pneumothorax", {})]
    ranked, keyed = _scored(rows, specs, in_a)
    assert all(s.score.q_value < 0.05 and s.directional_auroc > 0.9 for s in ranked)  # both "separate"

    # images alone: the conditional test finds no group effect left in the artefact
    differences, covarying = select_differences(ranked, keyed, in_a, Channels())
    assert [d.text for d in differences] == ["pleural effusion"]
    assert [c.text for c in covarying] == ["pneumothorax"]
    assert covarying[0].follows == "pleural effusion" and covarying[0].spearman is not None
    assert covarying[0].spearman > 0.5
    assert covarying[0].conditional_p is not None and covarying[0].conditional_p > 0.01
    assert "no group effect left" in covarying[0].reason

    # with reports: they do not mention it, so it is not backed
    reports = _reports(["Small left pleural effusion."] * N, ["Lungs are clear."] * N)
    differences, covarying = select_differences(ranked, keyed, in_a, Channels(reports=reports))
    assert [d.text for d in differences] == ["pleural effusion"]
    assert "reports call it in 0/40 vs 0/40 (not backed)" in covarying[0].reason


def test_two_independent_planted_findings_both_stay() -> None:
    rng = np.random.default_rng(2)
    in_a = _groups()
    rows = {
        "pacemaker": rng.normal(size=2 * N) + 2.5 * in_a,
        "pulmonary edema": rng.normal(size=2 * N) + 2.0 * in_a,
        "cardiomegaly": rng.normal(size=2 * N),  # no difference
    }
    specs = [
        ("pacemaker", "pacemaker", {}),
        ("pulmonary edema", "pulmonary_edema", {}),
        ("cardiomegaly", "cardiomegaly", {}),
    ]
    ranked, keyed = _scored(rows, specs, in_a)
    differences, covarying = select_differences(ranked, keyed, in_a, Channels())
    assert {d.text for d in differences} == {"pacemaker", "pulmonary edema"}
    second = differences[1]
    assert second.conditional_p is not None and second.conditional_p < 0.01
    assert "independent of the differences above" in second.basis
    assert all(c.text != "cardiomegaly" for c in covarying)  # it does not separate: not even co-varying

    # two co-occurring findings whose image scores correlate: the reports back both, so both stay
    shared = rng.normal(size=2 * N) + 2.5 * in_a
    rows = {"pacemaker": shared, "pulmonary edema": 0.9 * shared + rng.normal(scale=0.3, size=2 * N)}
    ranked, keyed = _scored(rows, specs[:2], in_a)
    reports = _reports(["Pacemaker. Moderate pulmonary edema."] * N, ["No acute findings."] * N)
    differences, _ = select_differences(ranked, keyed, in_a, Channels(reports=reports))
    assert {d.text for d in differences} == {"pacemaker", "pulmonary edema"}
    assert all(d.basis.startswith("reports: 40/40 vs 0/40") for d in differences)


def test_identical_groups_yield_no_difference() -> None:
    in_a = _groups()
    rows = {}
    specs = []
    for seed, (text, finding) in enumerate(
        [("pleural effusion", "pleural_effusion"), ("pneumothorax", "pneumothorax"), ("cardiomegaly", "cardiomegaly")]
    ):
        rows[text] = np.random.default_rng(10 + seed).normal(size=2 * N)
        specs.append((text, finding, {}))
    ranked, keyed = _scored(rows, specs, in_a)
    reports = _reports(
        ["Small pleural effusion."] * 5 + ["Clear."] * (N - 5), ["Small pleural effusion."] * 6 + ["Clear."] * (N - 6)
    )
    differences, covarying = select_differences(ranked, keyed, in_a, Channels(reports=reports))
    assert differences == [] and covarying == []
    assert summary_sentence(differences, {"A": "a", "B": "b"}, len(ranked)).startswith("No independent difference")


def test_a_text_backed_finding_needs_image_separation_and_text_needs_a_real_difference() -> None:
    rng = np.random.default_rng(3)
    in_a = _groups()
    rows = {"pleural effusion": rng.normal(size=2 * N) + 2.0 * in_a}
    ranked, keyed = _scored(rows, [("pleural effusion", "pleural_effusion", {})], in_a)
    # a chance imbalance of a background finding in the reports (4/40 vs 0/40) does not back it
    reports = _reports(["Small pleural effusion."] * 4 + ["Clear."] * (N - 4), ["Clear."] * N)
    differences, covarying = select_differences(ranked, keyed, in_a, Channels(reports=reports))
    assert differences == [] and [c.text for c in covarying] == ["pleural effusion"]


def test_conditional_test_and_statistics() -> None:
    rng = np.random.default_rng(4)
    in_a = _groups()
    base = rng.normal(size=2 * N) + 3 * in_a
    follower = base + rng.normal(scale=0.3, size=2 * N)
    independent = rng.normal(size=2 * N) + 2 * in_a
    assert conditional_group_p(follower, in_a, [base], "A") > 0.01
    assert conditional_group_p(independent, in_a, [base], "A") < 1e-4
    assert conditional_group_p(independent, in_a, [base], "B") > 0.99  # one-sided: the other direction
    assert conditional_group_p(independent, in_a, [], "A") < 1e-6
    rho = within_group_spearman(follower, base, in_a)
    assert rho is not None and rho > 0.8
    # Newcombe (1998), method 10, his worked examples
    assert newcombe_difference(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert newcombe_difference(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    found = prevalence("descriptions", 28, 30, 1, 30, "A")
    assert found.counts() == "28/30 vs 1/30" and found.p_value < 1e-10
    assert prevalence("descriptions", 28, 30, 1, 30, "B").p_value > 0.99


def test_open_vocabulary_phrases_are_judged_by_their_own_prevalence_and_fold() -> None:
    rng = np.random.default_rng(5)
    in_a = _groups()
    shunt = rng.normal(size=2 * N) + 2.5 * in_a
    rows = {
        "shunt tubing": shunt,
        "vp shunt tubing": shunt + rng.normal(scale=0.1, size=2 * N),
        "sternal wires": 0.8 * shunt + rng.normal(scale=0.4, size=2 * N),
    }
    specs = [(text, None, {}) for text in rows]
    ranked, keyed = _scored(rows, specs, in_a)
    texts_a = ["A VP shunt tubing courses over the right chest."] * N
    texts_b = ["Heart size normal."] * N
    channels = _report_channels(texts_a, texts_b)
    differences, covarying = select_differences(ranked, keyed, in_a, channels)
    assert len(differences) == 1  # the two shunt phrases are one difference
    assert "shunt tubing" in differences[0].text and len(differences[0].wordings) == 1
    assert "in 40/40 vs 0/40" in differences[0].basis
    assert [c.text for c in covarying] == ["sternal wires"]  # the reports never say it
    assert "reports call it in 0/40 vs 0/40 (not backed)" in covarying[0].reason


def test_a_phrase_that_only_describes_an_accepted_finding_restates_it() -> None:
    rng = np.random.default_rng(6)
    in_a = _groups()
    picc = rng.normal(size=2 * N) + 3.0 * in_a
    rows = {"low svc": picc + 0.5, "PICC line": picc}  # the phrase even ranks first
    ranked, keyed = _scored(rows, [("low svc", None, {}), ("PICC line", "picc", {})], in_a)
    assert ranked[0].hypothesis.text == "low svc"
    texts_a = ["Right PICC line. Tip projects over the low SVC."] * N  # the phrase stands in its own sentence
    texts_b = ["No lines or tubes."] * N
    channels = _report_channels(texts_a, texts_b)
    differences, covarying = select_differences(ranked, keyed, in_a, channels)
    assert [d.finding for d in differences] == ["picc"]
    assert [c.text for c in covarying] == ["low svc"]
    assert covarying[0].follows == differences[0].text
    assert covarying[0].reason.startswith(f"restates '{differences[0].text}': 100% of the 40 reports")


def test_a_finding_that_differs_by_side_both_ways_gives_two_differences() -> None:
    in_a = _groups()
    rng = np.random.default_rng(5)
    right_in_a = np.r_[np.ones(N), np.zeros(N)]
    rows = {
        "right calcified granuloma": right_in_a + rng.normal(scale=0.2, size=2 * N),
        "left calcified granuloma": 1 - right_in_a + rng.normal(scale=0.2, size=2 * N),
        "calcified granuloma": rng.normal(scale=0.2, size=2 * N),
    }
    specs = [
        ("right calcified granuloma", "calcified_granuloma", {"side": "right"}),
        ("left calcified granuloma", "calcified_granuloma", {"side": "left"}),
        ("calcified granuloma", "calcified_granuloma", {}),
    ]
    ranked, keyed = _scored(rows, specs, in_a)
    right, left = "Calcified granuloma in the right upper lobe.", "Left upper lobe calcified granuloma."
    reports = _reports([right] * N, [left] * N)
    differences, _ = select_differences(ranked, keyed, in_a, Channels(reports=reports))
    assert [(d.text, d.group) for d in differences] in (
        [("right calcified granuloma", "A"), ("left calcified granuloma", "B")],
        [("left calcified granuloma", "B"), ("right calcified granuloma", "A")],
    )
    assert all(d.basis.startswith("reports: ") and "40/40" in d.basis for d in differences)
    assert "the same finding, other attributes" in differences[1].basis
    # the same wordings with reports that do not state the side: one presence difference at most, never two
    reports = _reports(["Calcified granuloma."] * N, ["Calcified granuloma."] * N)
    differences, _ = select_differences(ranked, keyed, in_a, Channels(reports=reports))
    assert differences == []


def test_differences_are_ordered_by_the_effect_in_the_deciding_channel() -> None:
    from tools.ranking.differences import effect_size

    in_a = _groups()
    rng = np.random.default_rng(6)
    # granuloma's scores separate best, but the reports call scarring in far more of group A
    scar = np.r_[np.ones(30), np.zeros(10), np.zeros(N)]
    gran = np.r_[np.ones(12), np.zeros(28), np.zeros(N)]
    rows = {
        "calcified granuloma": 3 * gran + rng.normal(scale=0.05, size=2 * N) + 0.5 * in_a,
        "pulmonary scarring": scar + rng.normal(scale=0.6, size=2 * N),
    }
    specs = [("calcified granuloma", "calcified_granuloma", {}), ("pulmonary scarring", "scarring", {})]
    ranked, keyed = _scored(rows, specs, in_a)
    assert ranked[0].hypothesis.text == "calcified granuloma"
    texts_a = ["Right apical scarring."] * 18 + ["Right apical scarring. Calcified granuloma."] * 12
    texts_a += ["No acute disease."] * 10
    differences, _ = select_differences(
        ranked, keyed, in_a, Channels(reports=_reports(texts_a, ["No acute disease."] * N))
    )
    assert [d.text for d in differences] == ["pulmonary scarring", "calcified granuloma"]
    assert effect_size(differences[0]) == pytest.approx(30 / 40) and effect_size(differences[1]) == pytest.approx(0.3)
    assert [d.decided_by for d in differences] == ["reports", "reports"]
