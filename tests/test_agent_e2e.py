"""End-to-end offline runs of the agent on SynthCXR pairs: rules policy, mini scorer and describer."""

from pathlib import Path

import pytest

from agent.context import RunContext
from agent.trace import read_trace
from graphs import radiologist
from graphs.run import load_result, run_agent
from tests.conftest import requires_mini_weights

pytestmark = [pytest.mark.slow, requires_mini_weights]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def _context(tmp_path: Path, run_id: str, **kw) -> RunContext:
    return RunContext(run_id=run_id, run_dir=tmp_path / run_id, max_rounds=4, samples_per_group=8, **kw)


def test_offline_run_ranks_the_planted_effusion_first(effusion_pair, tmp_path):
    ctx = _context(tmp_path, "e2e")
    result = run_agent(effusion_pair, ctx)
    top = result.ranked[0]
    assert top.hypothesis.finding == "pleural_effusion" and top.hypothesis.group == "A"
    assert top.directional_auroc > 0.9
    assert top.score.ci_low <= top.score.auroc <= top.score.ci_high and top.score.ci_high > top.score.ci_low
    assert top.score.q_value <= 0.05 and top.evidence_a and top.evidence_b
    assert 1 <= result.rounds <= ctx.max_rounds and result.stop_reason
    assert load_result(ctx.run_dir).ranked[0].hypothesis.text == top.hypothesis.text
    assert (ctx.run_dir / "result.md").read_text().count("|") > 20


def test_resume_after_interruption_loses_and_repeats_nothing(effusion_pair, tmp_path, monkeypatch):
    ctx = _context(tmp_path, "resumed")
    calls = {"n": 0}
    original = radiologist.stop_reason

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # Ctrl-C inside the first reflection
        return original(*args, **kwargs)

    monkeypatch.setattr(radiologist, "stop_reason", crash_once)
    with pytest.raises(KeyboardInterrupt):
        run_agent(effusion_pair, ctx)
    assert ctx.session is None  # as in a new process: no workspace in memory
    result = run_agent(None, ctx, resume=True)
    assert result.ranked[0].hypothesis.finding == "pleural_effusion"
    events = read_trace(ctx.run_dir / "trace.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_start" and "resume" in kinds and kinds[-1] == "run_end"
    assert kinds.index("node_error") < kinds.index("resume")
    described = [e for e in events if e["event"] == "tool" and e["tool"] == "describe_images"]
    survey_tools = [e for e in described if not e["arguments"]["study_ids"]]  # sampled, not the report's calls
    assert len(survey_tools) == 2  # the survey ran once (A and B), not again after the resume
    assert len(described) == 4  # and the report described every study of each group once, for prevalence
    ended = [e["node"] for e in events if e["event"] == "node_end"]
    assert ended.count("survey") == 1 and ended.count("verify") == result.rounds - ended.count("zoom")
    texts = [(s.hypothesis.text, s.region) for s in result.ranked]
    assert len(texts) == len(set(texts))
    with pytest.raises(Exception, match="exists"):
        run_agent(effusion_pair, ctx)  # a finished run id is not silently overwritten
