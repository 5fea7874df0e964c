"""Judges: the structured (offline) judge against hand labels, and the LLM judge through a scripted server."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evals.bench.judges import JudgeItem, TruthContext, make_judge
from evals.bench.llm_judge import LLMJudge, parse_answer
from evals.bench.metrics import accuracy_at
from evals.bench.reproduce import judge_agreement
from evals.bench.structured_judge import StructuredJudge, parse_claims, truth_differences
from tests.fakes.openai_server import ErrorReply, FakeOpenAIServer
from tools.domain import InputError

GOLD = Path(__file__).parent / "data" / "judge_gold.jsonl"

EFFUSION = TruthContext(
    "moderate right pleural effusion",
    "no pleural effusion",
    [{"finding": "pleural_effusion", "attributes": {"side": "right", "size": "moderate"}, "group": "A"}],
)
EDEMA_GRADES = TruthContext(
    "severe pulmonary edema",
    "mild pulmonary edema",
    [
        {"finding": "pulmonary_edema", "attributes": {"severity": "severe"}, "group": "A"},
        {"finding": "pulmonary_edema", "attributes": {"severity": "mild"}, "group": "B"},
    ],
)
TIPS = TruthContext(
    "PICC tip in the low SVC",
    "PICC tip too high",
    [
        {"finding": "picc", "attributes": {"tip": "low_svc"}, "group": "A"},
        {"finding": "picc", "attributes": {"tip": "too_high"}, "group": "B"},
    ],
)


def test_gold_set_is_large_and_varied() -> None:
    rows = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
    assert len(rows) >= 160
    kinds = Counter(r["kind"].split("_")[0] for r in rows)
    for kind in ("exact", "paraphrase", "negation", "broader", "wrong", "comparative", "unrelated"):
        assert kinds[kind] >= 5, kind
    assert {r["score"] for r in rows} == {0, 1, 2}


def test_structured_judge_agrees_with_hand_labels() -> None:
    report = judge_agreement(GOLD)
    assert report["n"] >= 160
    assert report["accuracy"] >= 0.9
    assert report["kappa"] >= 0.85
    assert len(report["disagreements"]) == report["n"] - report["agree"]


@pytest.mark.parametrize(
    ("text", "group", "score"),
    [
        ("moderate right pleural effusion", "A", 2),
        ("pleural effusion", "A", 1),  # broader
        ("no pleural effusion", "B", 1),  # negation: effusion more in A, broader
        ("no moderate right pleural effusion", "B", 2),
        ("no pleural effusion", "A", 0),  # negation in the wrong group
        ("left pleural effusion", "A", 0),  # wrong side
        ("moderate right pleural effusion", "B", 0),  # wrong group
        ("cardiomegaly", "A", 0),  # unrelated
        ("the sky is blue", "A", 0),  # nothing recognised
    ],
)
def test_structured_judge_presence_rubric(text: str, group: str, score: int) -> None:
    assert StructuredJudge().score(text, group, EFFUSION)[0] == score  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "group", "score"),
    [
        ("severe pulmonary edema", "A", 2),
        ("mild pulmonary edema", "B", 2),
        ("worse pulmonary edema", "A", 2),  # comparative in the right group
        ("less pulmonary edema", "B", 2),  # 'less in B' = more in A
        ("pulmonary edema", "A", 1),  # right direction, grade not named
        ("pulmonary edema", "B", 0),
        ("milder pulmonary edema", "A", 0),
    ],
)
def test_structured_judge_graded_difference(text: str, group: str, score: int) -> None:
    assert StructuredJudge().score(text, group, EDEMA_GRADES)[0] == score  # type: ignore[arg-type]


def test_structured_judge_tip_difference_needs_the_tip() -> None:
    judge = StructuredJudge()
    assert judge.score("PICC tip too high", "B", TIPS)[0] == 2
    assert judge.score("PICC terminating in the brachiocephalic vein", "B", TIPS)[0] == 2
    assert judge.score("PICC line", "A", TIPS)[0] == 0  # both groups have a PICC
    assert judge.score("PICC tip in the low SVC", "B", TIPS)[0] == 0


def test_negation_and_decrease_flip_the_group() -> None:
    assert [(c.finding, c.group) for c in parse_claims("no pleural effusion", "B")] == [("pleural_effusion", "A")]
    claims = parse_claims("smaller pleural effusion", "B")
    assert [(c.finding, c.group, c.comparative) for c in claims] == [("pleural_effusion", "A", True)]
    paraphrase = parse_claims("fluid in the right pleural space", "A")
    assert [(c.finding, c.attributes.get("side")) for c in paraphrase] == [("pleural_effusion", "right")]


def test_shared_identical_findings_are_not_differences() -> None:
    truth = TruthContext(
        "cardiomegaly with edema",
        "cardiomegaly without edema",
        [
            {"finding": "cardiomegaly", "attributes": {"severity": "moderate"}, "group": "A"},
            {"finding": "pulmonary_edema", "attributes": {}, "group": "A"},
            {"finding": "cardiomegaly", "attributes": {"severity": "moderate"}, "group": "B"},
        ],
    )
    assert [d.finding for d in truth_differences(truth)] == ["pulmonary_edema"]
    assert StructuredJudge().score("cardiomegaly", "A", truth)[0] == 0
    assert StructuredJudge().score("pulmonary edema", "A", truth)[0] == 2


def test_structured_judge_needs_structured_truth() -> None:
    with pytest.raises(InputError, match="no structured truth"):
        StructuredJudge().score("effusion", "A", TruthContext("a", "b", None))
    with pytest.raises(InputError, match="group"):
        truth_differences(TruthContext("a", "b", [{"finding": "pleural_effusion", "group": "C"}]))


# ------------------------------------------------------------------------------------------ LLM judge


def test_parse_answer_is_strict() -> None:
    assert parse_answer('{"score": 2, "reason": "same"}').score == 2
    assert parse_answer('```json\n{"score": 1, "reason": "x"}\n```').score == 1
    for bad in ('{"score": 3, "reason": ""}', '{"score": 1, "extra": 1}', "Score: 2", '{"score": "two"}'):
        with pytest.raises(ValueError):
            parse_answer(bad)


def test_llm_judge_scores_and_sends_the_protocol(openai_server: FakeOpenAIServer) -> None:
    openai_server.queue('{"score": 2, "reason": "same finding"}', '{"score": 0, "reason": "wrong side"}')
    judge = make_judge("openai:judge-model", base_url=openai_server.base_url)
    out = judge.judge([JudgeItem("right pleural effusion", "A"), JudgeItem("left effusion", "B")], EFFUSION)
    assert [(j.score, j.error) for j in out] == [(2, None), (0, None)]
    body = openai_server.requests[0]
    assert body["model"] == "judge-model"
    user = body["messages"][-1]["content"]
    assert "moderate right pleural effusion" in user and "more present in group A" in user


def test_llm_judge_retries_a_malformed_answer(openai_server: FakeOpenAIServer) -> None:
    openai_server.queue("I think it deserves a 2.", '{"score": 1, "reason": "broader"}')
    judge = LLMJudge("openai:m", base_url=openai_server.base_url, max_retries=2)
    (verdict,) = judge.judge([JudgeItem("pleural effusion", "A")], EFFUSION)
    assert verdict.score == 1 and verdict.error is None
    assert len(openai_server.requests) == 2
    assert "Invalid answer" in openai_server.requests[1]["messages"][-1]["content"]


def test_llm_judge_failure_is_an_error_never_a_zero(openai_server: FakeOpenAIServer) -> None:
    openai_server.queue("nope", '{"score": 5}', "still not json", ErrorReply(400, "bad request"))
    judge = LLMJudge("openai:m", base_url=openai_server.base_url, max_retries=2)
    first, second = judge.judge([JudgeItem("pleural effusion", "A"), JudgeItem("effusion", "A")], EFFUSION)
    assert first.score is None and "no valid judge answer after 3 attempts" in (first.error or "")
    assert second.score is None and "call failed" in (second.error or "")
    # an unknown score never counts as 0: acc is unknown unless a known 2 decides it
    assert accuracy_at([None, 2], 1) is None
    assert accuracy_at([None, 2], 5) == 1.0
    assert accuracy_at([None, 1], 5) is None
    assert accuracy_at([], 5) == 0.0


def test_llm_judge_without_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InputError, match="OPENAI_API_KEY"):
        LLMJudge("openai:m").judge([JudgeItem("effusion", "A")], EFFUSION)
