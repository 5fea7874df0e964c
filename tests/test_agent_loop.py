"""The LLM policy's visible agent loop (agent <-> tools nodes), driven by a scripted OpenAI-compatible server."""

import json

import numpy as np
import pytest
from PIL import Image

from agent.context import RunContext
from agent.policies.llm import parse_decision, recover_tool_calls
from agent.trace import read_trace
from graphs import radiologist
from graphs.radiologist import build_graph, route_after_agent
from graphs.run import checkpointer, compile_graph, run_agent
from tests.fakes.openai_server import TextReply, ToolCallReply
from tools.domain import Comparison, Study, StudySet
from tools.reports.phrasing import plain_finding_phrase


def _comparison(tmp_path):
    def study(i, report):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((8, 8), i, dtype=np.uint8)).save(path)
        return Study(study_id=f"s{i}", image_paths=[path], report=report)

    set_a = StudySet(
        name="effusion", studies=[study(i, "FINDINGS: Moderate right pleural effusion.") for i in range(6)]
    )
    set_b = StudySet(
        name="normal", studies=[study(10 + i, "FINDINGS: No pleural effusion. Lungs clear.") for i in range(6)]
    )
    return Comparison(set_a=set_a, set_b=set_b)


def _context(server, tmp_path, run_id):
    return RunContext(
        run_id=run_id,
        run_dir=tmp_path / run_id,
        llm="openai:gpt-test",
        llm_base_url=server.base_url,
        scorer="reports",
        use_images=False,
        samples_per_group=4,
        tool_call_budget=6,
        max_repairs=2,
    )


_PROPOSAL = json.dumps({"hypotheses": [{"text": "Group A has a higher prevalence of pleural effusion", "group": "A"}]})
_SCRIPT = [
    TextReply(_PROPOSAL),  # hypothesize
    ToolCallReply(  # agent turn 1: a good call, and one with missing arguments
        [
            ("score_hypotheses", {"hypotheses": ["Group A has more right pleural effusion"], "groups": ["A"]}),
            ("score_hypotheses", {"hypotheses": ["left pneumothorax"]}),
        ]
    ),
    TextReply('```json\n{"name": "lookup_reports", "arguments": {"action": "tabulate"}}\n```'),  # fenced call
    TextReply("I am not sure what to do next."),  # neither a tool call nor a decision: repaired
    TextReply(json.dumps({"action": "stop", "reason": "right pleural effusion separates the groups"})),
]


def test_graph_draws_the_agent_loop():
    graph = build_graph().compile().get_graph()
    edges = {(e.source, e.target, e.conditional) for e in graph.edges}
    assert ("reflect", "agent", True) in edges and ("agent", "tools", True) in edges
    assert ("tools", "agent", False) in edges and ("agent", "agent", True) in edges
    assert {("agent", t, True) for t in ("hypothesize", "zoom", "describe_more", "read_reports", "report")} <= edges


def test_agent_loop_keeps_tool_results_in_pool_messages_and_trace(openai_server, tmp_path):
    openai_server.queue(*_SCRIPT)
    ctx = _context(openai_server, tmp_path, "loop")
    result = run_agent(_comparison(tmp_path), ctx)

    assert len(openai_server.requests) == len(_SCRIPT) and openai_server.pending == 0
    assert result.llm_calls == 5 and result.llm_tool_calls == 3 and result.llm_tool_errors == 1
    assert result.llm_tokens > 0
    assert result.stop_reason.startswith("policy stopped: right pleural effusion")
    by_text = {s.hypothesis.text: s for s in result.ranked}
    assert by_text["pleural effusion"].hypothesis.source == "llm/round0"  # the proposal, as a plain phrase
    tool_scored = by_text["right pleural effusion"]  # scored by the LLM's tool call: it joined the pool
    assert tool_scored.hypothesis.source == "llm-tool/round1" and tool_scored.directional_auroc > 0.9

    requests = openai_server.requests
    assert "tools" in requests[1] and "AUROC after each round" in requests[1]["messages"][1]["content"]
    assert requests[1]["tool_choice"] == "required" and "tool_choice" not in requests[2]  # a tool call first
    assert '"action"' in requests[2]["messages"][-1]["content"]  # then the decision format
    assert "- round 1: best 1.000" in requests[1]["messages"][1]["content"]  # the true AUROC history
    tool_msgs = [m for m in requests[2]["messages"] if m["role"] == "tool"]
    assert "right pleural effusion (more in A): AUROC 1.000" in tool_msgs[0]["content"]
    assert tool_msgs[1]["content"].startswith("error: score_hypotheses:")  # bad arguments: an error message
    fenced = requests[3]["messages"]
    assert fenced[-2]["tool_calls"][0]["function"]["name"] == "lookup_reports"  # text call made structured
    assert fenced[-1]["role"] == "tool" and "pleural effusion" in fenced[-1]["content"]
    assert "neither a tool call nor a valid decision" in requests[4]["messages"][-1]["content"]

    with checkpointer(ctx.run_dir / "checkpoints.sqlite") as saver:
        state = compile_graph(saver).get_state({"configurable": {"thread_id": ctx.run_id}}).values
    kinds = [type(m).__name__ for m in state["messages"]]
    assert kinds == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "ToolMessage",
        "HumanMessage",  # the decision format, after the first tool results
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
    ]

    events = read_trace(ctx.run_dir / "trace.jsonl")
    loop_events = [e for e in events if e["event"] in ("llm_turn", "llm_tool_call")]
    assert [(e["event"], e.get("node") or e["name"]) for e in loop_events] == [
        ("llm_turn", "hypothesize"),
        ("llm_turn", "agent"),
        ("llm_tool_call", "score_hypotheses"),
        ("llm_tool_call", "score_hypotheses"),
        ("llm_turn", "agent"),
        ("llm_tool_call", "lookup_reports"),
        ("llm_turn", "agent"),
        ("llm_turn", "agent"),
    ]
    assert [e["ok"] for e in loop_events if e["event"] == "llm_tool_call"] == [True, False, True]


def test_agent_loop_resumes_after_an_interruption_mid_loop(openai_server, tmp_path, monkeypatch):
    openai_server.queue(*_SCRIPT)
    ctx = _context(openai_server, tmp_path, "resumed")
    original = radiologist.tools_node
    calls = {"n": 0}

    def crash_second(state, runtime):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C while the fenced call's tools run
        return original(state, runtime)

    monkeypatch.setattr(radiologist, "tools_node", crash_second)
    with pytest.raises(KeyboardInterrupt):
        run_agent(_comparison(tmp_path), ctx)
    assert len(openai_server.requests) == 3
    assert ctx.session is None  # closed on the way out of the interrupted run
    monkeypatch.setattr(radiologist, "tools_node", original)
    result = run_agent(None, ctx, resume=True)
    assert len(openai_server.requests) == len(_SCRIPT)  # no LLM turn was repeated
    assert result.llm_calls == 5 and result.llm_tool_calls == 3
    assert "right pleural effusion" in {s.hypothesis.text for s in result.ranked}
    events = read_trace(ctx.run_dir / "trace.jsonl")
    tool_calls = [e["name"] for e in events if e["event"] == "llm_tool_call"]
    assert tool_calls == ["score_hypotheses", "score_hypotheses", "lookup_reports"]


def test_a_fenced_or_tagged_tool_call_is_recovered_and_a_decision_is_not():
    from langchain_core.messages import AIMessage

    names = ["score_hypotheses", "lookup_reports"]
    tagged = AIMessage(
        content='<tool_call>\n{"name": "score_hypotheses", "arguments": {"hypotheses": ["x"]}}</tool_call>'
    )
    recovered = recover_tool_calls(tagged, names)
    assert recovered.tool_calls[0]["name"] == "score_hypotheses" and recovered.tool_calls[0]["args"] == {
        "hypotheses": ["x"]
    }
    decision = AIMessage(content='{"action": "stop", "reason": "done"}')
    assert recover_tool_calls(decision, names).tool_calls == []
    broken = AIMessage(content='```json\n{"name": "score_hypotheses", "arguments": {"hypotheses": [}\n```')
    assert recover_tool_calls(broken, names).tool_calls == []  # unparseable: left to the repair message
    parsed = parse_decision(
        '{"action": "refine", "hypotheses": [{"text": "Group B has more cardiomegaly", "group": "B"}]}'
    )
    assert [h.text for h in parsed.hypotheses] == ["cardiomegaly"]
    with pytest.raises(ValueError):
        parse_decision('{"action": "dance"}')
    with pytest.raises(ValueError, match="neither a stop reason nor a decision"):
        route_after_agent({"llm_turn": False, "stop_reason": "", "decision": None, "messages": []})


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Group A has a higher prevalence of right pleural effusion", "right pleural effusion"),
        ("Cardiomegaly is more common in group B.", "Cardiomegaly"),
        ("group A shows increased pulmonary edema compared to group B", "pulmonary edema"),
        ("ETT tip in the right main bronchus", "ETT tip in the right main bronchus"),
        ("moderate right pleural effusion", "moderate right pleural effusion"),
    ],
)
def test_hypotheses_are_plain_finding_phrases(text, phrase):
    assert plain_finding_phrase(text) == phrase


def test_brief_suggests_a_wording_not_scored_yet_and_drops_a_sentence_contrast():
    from agent.policies.llm import plain_proposal, untested_wording
    from agent.schemas import ProposedHypothesis
    from agent.state import Observation
    from tools.domain import Hypothesis, HypothesisScore, ScoredHypothesis
    from tools.reports.phrasing import annotate_hypothesis

    obs = [
        Observation(kind="reports", round=0, group="A", study_ids=["a1", "a2"], texts=["Moderate right effusion."] * 2),
        Observation(kind="reports", round=0, group="B", study_ids=["b1", "b2"], texts=["No pleural effusion."] * 2),
    ]
    assert untested_wording(obs, []) == {"text": "moderate right pleural effusion", "group": "A"}
    score = HypothesisScore(auroc=0.9, ci_low=0.8, ci_high=1.0, p_value=0.01, q_value=0.01, mean_a=0.6, mean_b=0.4)
    tested = annotate_hypothesis(Hypothesis(text="moderate right pleural effusion", group="A"))
    suggestion = untested_wording(obs, [ScoredHypothesis(hypothesis=tested, score=score)])
    assert suggestion["group"] == "A" and suggestion["text"] != "moderate right pleural effusion"
    assert "pleural effusion" in suggestion["text"]

    sentence = "Group A's study is more consistent with the claim of no pleural effusion in Group B."
    item = ProposedHypothesis(text="Group A has more pleural effusion", group="A", contrast=sentence)
    assert plain_proposal(item).contrast is None and plain_proposal(item).text == "pleural effusion"
    kept = ProposedHypothesis(text="pleural effusion", group="A", contrast="no pleural effusion")
    assert plain_proposal(kept).contrast == "no pleural effusion"


def test_a_proposal_written_as_a_whole_sentence_is_cut_to_its_finding():
    from agent.policies.llm import _salvage_hypotheses

    long_text = "Moderate right pleural effusion. No focal infiltrate, pneumothorax or pulmonary edema. " * 4
    raw = json.dumps({"hypotheses": [{"text": long_text, "group": "A", "rationale": "x" * 700}, {"text": "z"}]})
    salvaged = _salvage_hypotheses(raw)
    assert [(h.text, h.group) for h in salvaged] == [("Moderate right pleural effusion", "A")]
