"""Open-vocabulary phrase proposals: mining, negation, and a report-only run that finds an unlisted finding."""

import json

import pytest

from tools.reports.phrases import mine_phrases, negates, text_phrases

SHUNT = (
    "FINDINGS: Heart size normal. Lungs are clear. VP shunt tubing courses over the right chest.\nIMPRESSION: Clear."
)
NORMAL = "FINDINGS: Heart size normal. Lungs are clear. No pneumothorax.\nIMPRESSION: No acute cardiopulmonary disease."
NO_SHUNT = "FINDINGS: Heart size normal. No shunt tubing is seen. Lungs are clear.\nIMPRESSION: Clear."


def test_text_phrases_skip_negated_normal_and_vocabulary_clauses():
    phrases = text_phrases(SHUNT)
    assert {"shunt tubing", "vp shunt tubing", "shunt"} <= phrases
    assert not any("heart" in p or "clear" in p for p in phrases)
    assert not text_phrases(NO_SHUNT)  # negated clause
    assert not text_phrases("FINDINGS: Small right pleural effusion in the costophrenic recess.")  # a finding
    # a sentence that names a vocabulary finding belongs to the vocabulary; the next sentence is mined
    assert not text_phrases("FINDINGS: Small right pleural effusion with a pectus deformity.")
    assert "pectus deformity" in text_phrases("FINDINGS: Small right pleural effusion. Pectus deformity.")
    assert not text_phrases("FINDINGS: There is XXXX in the right lower lobe.")  # anatomy only


def test_mine_phrases_finds_the_differing_phrase_in_its_group():
    found = mine_phrases([SHUNT] * 6 + [NORMAL] * 2, [NORMAL] * 6 + [NO_SHUNT] * 2)
    assert found and found[0].group == "A" and "shunt" in found[0].text
    assert found[0].share_a == pytest.approx(0.75) and found[0].share_b == 0.0
    assert mine_phrases([NORMAL] * 5, [NORMAL] * 5) == []
    assert mine_phrases([], [NORMAL]) == []


def test_negates():
    assert negates("No shunt tubing is seen.", "shunt tubing")
    assert not negates("VP shunt tubing over the chest, no pneumothorax.", "shunt tubing")
    assert not negates("No pneumothorax; shunt tubing is present.", "shunt tubing")


@pytest.mark.slow
def test_report_only_run_names_an_unlisted_finding_in_the_reports_words(tmp_path):
    from agent.context import RunContext
    from graphs.run import run_agent
    from tools.data.csv_input import load_csv

    rows = ["study_id,group_name,report"]
    rows += [f'a{i},shunt,"{SHUNT}"' for i in range(8)] + [f'b{i},normal,"{NORMAL}"' for i in range(8)]
    rows += ['b8,normal,"' + NO_SHUNT + '"']
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    comparison = load_csv(tmp_path / "r.csv").comparison
    context = RunContext(run_id="phr", run_dir=tmp_path / "phr", max_rounds=2)
    result = run_agent(comparison, context)
    assert result.mode == "reports"
    top = result.ranked[0]
    assert "shunt" in top.hypothesis.text and top.hypothesis.group == "A" and top.hypothesis.finding is None
    assert top.directional_auroc > 0.95 and top.score.q_value < 0.05
    assert "open vocabulary" in top.hypothesis.rationale
    saved = json.loads((tmp_path / "phr" / "result.json").read_text())
    assert saved["ranked"][0]["hypothesis"]["source"].endswith("/phrase")
