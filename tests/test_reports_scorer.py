"""Tests of the report-text scorer (tools.scorers.reports_scorer) on constructed and real IU report text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.domain import InputError, Study
from tools.reports.iu import load_iu_reports
from tools.scorers.reports_scorer import ReportTextScorer


def _study(study_id: str, report: str | None) -> Study:
    return Study(study_id=study_id, image_paths=[Path(f"/data/{study_id}.png")], report=report)


STUDIES = [
    _study("pos", "FINDINGS: Heart size normal. There is a small left pleural effusion. IMPRESSION: Left effusion."),
    _study("unc", "FINDINGS: Heart size normal. Possible small left pleural effusion."),
    _study("none", "FINDINGS: Heart size normal. Mild degenerative change of the thoracic spine."),
    _study("neg", "FINDINGS: Heart size normal. No pleural effusion or pneumothorax. IMPRESSION: Normal chest."),
    _study("empty", None),
]


@pytest.fixture(scope="module")
def scorer() -> ReportTextScorer:
    return ReportTextScorer()


def test_negation_aware_ordering(scorer: ReportTextScorer) -> None:
    scores, skipped = scorer.score(STUDIES, ["pleural effusion", "no pleural effusion"])
    assert scores.shape == (5, 2) and scores.dtype == np.float32
    pos, unc, none, neg = scores[:4, 0]
    assert pos > unc > none > neg  # present > uncertain > not mentioned > negated
    # the negated hypothesis orders the same reports the other way round
    assert scores[3, 1] > scores[2, 1] > scores[0, 1]
    assert scores[3, 1] > scores[1, 1]
    assert [s.item for s in skipped] == ["empty"] and "no report" in skipped[0].reason
    assert np.isnan(scores[4]).all() and np.isfinite(scores[:4]).all()


def test_contrast_prompt_sharpens_the_score(scorer: ReportTextScorer) -> None:
    plain, _ = scorer.score(STUDIES[:4], ["pleural effusion"])
    contrasted, _ = scorer.score(STUDIES[:4], ["pleural effusion"], ["no pleural effusion"])
    assert contrasted[0, 0] > contrasted[2, 0] > contrasted[3, 0]
    assert contrasted[0, 0] - contrasted[3, 0] > plain[0, 0] - plain[3, 0]


def test_hypothesis_outside_the_vocabulary_uses_plain_similarity(scorer: ReportTextScorer) -> None:
    scores, _ = scorer.score(STUDIES[:4], ["degenerative change of the spine"])
    assert int(np.argmax(scores[:, 0])) == 2


def test_bad_inputs_are_clear_errors(scorer: ReportTextScorer) -> None:
    with pytest.raises(InputError, match="no hypotheses"):
        scorer.score(STUDIES, [])
    with pytest.raises(InputError, match="contrast"):
        scorer.score(STUDIES, ["a", "b"], ["c"])
    with pytest.raises(InputError, match="empty"):
        scorer.score(STUDIES, [" "])
    with pytest.raises(InputError):
        ReportTextScorer(uncertain_weight=2.0)
    assert scorer.model_id == "reports-minilm"


def test_all_skipped_returns_nan_matrix(scorer: ReportTextScorer) -> None:
    only_headers = _study("hdr", "INDICATION: cough.")
    scores, skipped = scorer.score([STUDIES[4], only_headers], ["cardiomegaly"])
    assert np.isnan(scores).all() and [s.item for s in skipped] == ["empty", "hdr"]
    assert "no findings" in skipped[1].reason


@pytest.mark.slow
def test_separates_real_iu_effusion_reports_from_normal_ones(scorer: ReportTextScorer) -> None:
    from sklearn.metrics import roc_auc_score

    iu = load_iu_reports()
    eff = [r for r in iu if any(m.startswith("Pleural Effusion/") and "borderline" not in m for m in r.mesh_major)]
    norm = [r for r in iu if r.mesh_major == ("normal",)]
    studies = [_study(f"a{r.report_id}", r.text) for r in eff[:25]] + [
        _study(f"b{r.report_id}", r.text) for r in norm[:25]
    ]
    scores, skipped = scorer.score(studies, ["pleural effusion"], ["no pleural effusion"])
    assert not skipped
    y = np.r_[np.ones(25), np.zeros(25)]
    assert roc_auc_score(y, scores[:, 0]) > 0.9


def test_a_mention_with_another_side_or_size_contradicts_the_wording(scorer: ReportTextScorer) -> None:
    studies = [
        _study("right", "FINDINGS: Calcified granuloma in the right upper lobe."),
        _study("left", "FINDINGS: Calcified granuloma in the left upper lobe."),
        _study("plain", "FINDINGS: Calcified granuloma."),
        _study("large", "FINDINGS: Large left pleural effusion."),
        _study("small", "FINDINGS: Small left pleural effusion."),
    ]
    scores, _ = scorer.score(studies, ["right calcified granuloma", "small pleural effusion", "calcified granuloma"])
    right, left, plain = scores[:3, 0]
    assert min(right, plain) > 0.5 > 0 > left  # the left-sided report states the granuloma otherwise
    assert scores[4, 1] > 0 > scores[3, 1]  # a large effusion is not a small one
    # without a stated attribute the side does not matter
    assert abs(float(scores[0, 2] - scores[1, 2])) < 0.1 and min(scores[:3, 2]) > 0.3
