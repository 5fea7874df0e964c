import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.context import RunContext
from agent.trace import read_trace
from graphs.report_html import render_html_report, typical_studies, write_html_report
from raddiff.chat.config import AppConfig, as_text, check_path, load_source
from raddiff.chat.conversation import handle_message
from raddiff.chat.intents import region_from_text, route_message
from raddiff.chat.threads import ChatSession, reopen_thread
from raddiff.cli.main import main
from raddiff.trace_viewer import build_outline, render_tree_text, trace_html
from tools.data.folders import load_folders
from tools.domain import (
    Comparison,
    CovaryingSignal,
    Difference,
    Hypothesis,
    HypothesisScore,
    InputError,
    RunResult,
    ScoredHypothesis,
    Study,
    StudySet,
)
from tools.ranking.differences import prevalence

INJECTED = "<script>alert('x')</script>"


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray((rng.random((48, 48)) * 60 + value).astype(np.uint8), mode="L").save(path)
    return path


def _folders(root: Path, n: int = 6) -> tuple[Path, Path]:
    """Two folders of small images with sidecar reports: effusion in A, none in B."""
    for group, report in (
        ("A", "FINDINGS: Moderate right pleural effusion. IMPRESSION: Right pleural effusion."),
        ("B", "FINDINGS: No pleural effusion. Lungs are clear. IMPRESSION: No acute disease."),
    ):
        for i in range(n):
            image = _png(root / group / f"{group.lower()}{i}.png", 40 + i + (100 if group == "A" else 0))
            image.with_suffix(".txt").write_text(report)
    return root / "A", root / "B"


def _scored(text: str, group: str, auroc: float, ev_a: list[str], ev_b: list[str]) -> ScoredHypothesis:
    score = HypothesisScore(
        auroc=auroc, ci_low=auroc - 0.1, ci_high=min(auroc + 0.05, 1), p_value=0.001, q_value=0.002, mean_a=1, mean_b=0
    )
    return ScoredHypothesis(
        hypothesis=Hypothesis(text=text, group=group), score=score, round=1, evidence_a=ev_a, evidence_b=ev_b
    )


# ---------------------------------------------------------------- trace outline


def _events() -> list[dict]:
    return [
        {"event": "run_start", "question": "look at the left base", "context": {"llm": "rules", "max_rounds": 3}},
        {"event": "node_start", "node": "survey", "round": 0},
        {"event": "tool", "tool": "describe_images", "summary": "8 descriptions of group A", "seconds": 0.1},
        {"event": "node_end", "node": "survey", "round": 0, "seconds": 0.2, "update": {}},
        {"event": "node_start", "node": "hypothesize", "round": 0},
        {"event": "node_end", "node": "hypothesize", "round": 0, "seconds": 0.1, "update": {}},
        {"event": "node_start", "node": "verify", "round": 0},
        {"event": "tool", "tool": "score_hypotheses", "summary": f"{INJECTED}: AUROC 0.9", "seconds": 1.0},
        {
            "event": "node_end",
            "node": "verify",
            "round": 1,
            "seconds": 1.1,
            "update": {"history": [{"best_auroc": 0.91, "best_text": "pleural effusion"}]},
        },
        {"event": "node_start", "node": "reflect", "round": 1},
        {"event": "convergence", "round": 1, "stop_reason": ""},
        {"event": "decision", "round": 1, "decision": {"action": "zoom", "region": "costophrenic_angle_left"}},
        {"event": "node_end", "node": "reflect", "round": 1, "seconds": 0.0, "update": {}},
        {"event": "node_start", "node": "zoom", "round": 1},
        {"event": "node_error", "node": "zoom", "error": "RuntimeError: crop failed"},
        {"event": "resume", "next": ["zoom"]},
        {"event": "node_start", "node": "zoom", "round": 1},
        {
            "event": "node_end",
            "node": "zoom",
            "round": 2,
            "seconds": 2.0,
            "update": {"history": [{"best_auroc": 0.95, "best_text": "left effusion"}]},
        },
        {"event": "node_start", "node": "report", "round": 2},
        {"event": "node_end", "node": "report", "round": 2, "seconds": 0.1, "update": {}},
        {"event": "run_end", "seconds": 3.0},
    ]


def test_outline_groups_parts_rounds_tools_and_best_auroc():
    parts = build_outline(_events())
    assert [p.kind for p in parts] == ["start", "resume"]
    first, second = parts
    assert [ph.title for ph in first.phases] == ["survey", "round 1", "round 2"]
    assert first.phases[1].best_auroc == pytest.approx(0.91)
    verify = first.phases[1].steps[1]
    assert verify.node == "verify" and verify.tools[0]["tool"] == "score_hypotheses"
    reflect = first.phases[1].steps[2]
    assert any("zoom (costophrenic_angle_left)" in n for n in reflect.notes)
    assert first.phases[2].steps[0].status == "error"  # an exception; a Ctrl-C reads "interrupted"
    ctrl_c = [dict(e, error="KeyboardInterrupt: ") if e["event"] == "node_error" else e for e in _events()]
    assert build_outline(ctrl_c)[0].phases[2].steps[0].status == "interrupted"
    assert second.phases[0].title == "round 2" and second.phases[0].best_auroc == pytest.approx(0.95)
    assert second.ended.startswith("run ended")


def test_tree_text_and_html_page_show_both_parts_in_order_and_escape():
    text = render_tree_text(_events_outline := build_outline(_events()), "r1", width=200)
    assert text.index("run started") < text.index("best AUROC 0.910") < text.index("resumed at zoom")
    assert text.index("resumed at zoom") < text.index("best AUROC 0.950")
    page = trace_html(_events_outline, "r1")
    assert INJECTED not in page and "&lt;script&gt;" in page
    assert page.index("run started") < page.index("resumed at zoom")
    assert not re.search(r"(src|href)=['\"]?https?:", page)


# ---------------------------------------------------------------- HTML report


def _report_fixture(tmp_path: Path) -> tuple[RunResult, Comparison, dict]:
    images = {
        f"{g}{i}": _png(tmp_path / f"{g}{i}.png", 30 * i + (90 if g == "a" else 0)) for g in "ab" for i in range(3)
    }
    studies = {
        sid: Study(study_id=sid, image_paths=[path], report=f"Report of {sid}. {INJECTED}")
        for sid, path in images.items()
    }
    comparison = Comparison(
        set_a=StudySet(name=f"cases {INJECTED}", studies=[studies[f"a{i}"] for i in range(3)]),
        set_b=StudySet(name="controls", studies=[studies[f"b{i}"] for i in range(3)]),
    )
    top = _scored(f"right pleural effusion {INJECTED}", "A", 0.9, ["a2", "a1"], ["b0", "b1"])
    other = _scored("cardiomegaly", "B", 0.3, ["a0"], ["b2"])
    rows = {
        top.hypothesis.key: {
            "ids": ["a0", "a1", "a2", "b0", "b1", "b2"],
            "groups": ["A", "A", "A", "B", "B", "B"],
            "scores": [0.5, 0.7, 0.9, 0.1, 0.2, 0.6],
        }
    }
    result = RunResult(
        run_id="r1",
        set_a_name=comparison.set_a.name,
        set_b_name="controls",
        n_a=3,
        n_b=3,
        question=f"is it only devices? {INJECTED}",
        summary=f"Group A has right pleural effusion {INJECTED} more often than group B.",
        differences=[
            Difference(
                text=top.hypothesis.text,
                group="A",
                finding="pleural_effusion",
                auroc=0.9,
                ci_low=0.8,
                ci_high=1.0,
                p_value=1e-4,
                q_value=2e-4,
                prevalence=[prevalence("reports", 3, 3, 0, 3, "A")],
                basis="reports: 3/3 vs 0/3",
            )
        ],
        covarying=[CovaryingSignal(text="cardiomegaly", group="B", auroc=0.7, q_value=0.01, reason="not backed")],
        ranked=[top, other],
        rounds=2,
        stop_reason="converged",
        auroc_history=[0.8, 0.9],
        settings={"llm": "rules", "scorer": "mini"},
    )
    return result, comparison, rows


def test_html_report_is_self_contained_escaped_and_has_all_sections(tmp_path):
    result, comparison, rows = _report_fixture(tmp_path)
    path = write_html_report(result, tmp_path / "run", comparison, rows)
    page = path.read_text()
    assert INJECTED not in page and page.count("&lt;script&gt;") >= 3  # question, set name, hypothesis, reports
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)=['\"]?(https?:|//|file:)", page)  # nothing fetched from anywhere
    images = re.findall(r"<img [^>]*src=\"([^\"]+)\"", page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    # 2 plots (distribution of the top hypothesis, AUROC by round) + thumbnails of both galleries
    assert len(images) >= 2 + 4
    sections = ("Differences", "Co-varying signals", "Evidence", "AUROC by round", "Confounder check", "Run settings")
    for section in (*sections, "Versions"):
        assert f"<h2>{section}</h2>" in page
    assert "Every tested hypothesis (" in page
    assert page.index("<h2>Differences</h2>") < page.index("<h2>Co-varying signals</h2>") < page.index("Every tested")
    assert "reports: 3/3 vs 0/3" in page and "not backed" in page  # the difference's prevalence, the signal's reason
    assert "0.650-0.800" in page  # CI of the "more in B" hypothesis turned to its direction (1 - 0.35 .. 1 - 0.2)


def test_typical_studies_follow_the_claimed_direction():
    result, _, rows = _report_fixture(Path("/nonexistent"))  # images are not read here
    picks = typical_studies(result.ranked[0], rows, k=2)
    assert picks["most_A"] == ["a2", "a1"] and picks["least_A"] == ["a0", "a1"]
    assert picks["most_B"] == ["b0", "b1"] and picks["least_B"] == ["b2", "b1"]
    no_row = typical_studies(result.ranked[1], rows)
    assert no_row["most_A"] == ["a0"] and no_row["least_A"] == []


def test_report_without_scores_or_images_says_so(tmp_path):
    result, _, _ = _report_fixture(tmp_path)
    page = render_html_report(result.model_copy(update={"auroc_history": []}), None, {})
    assert "Score distribution not recorded" in page and "No round was completed" in page


# ---------------------------------------------------------------- safety and routing


def test_paths_outside_roots_are_refused_with_a_clear_message(tmp_path):
    root = tmp_path / "data"
    folder_a, folder_b = _folders(root, n=2)
    assert check_path(folder_a, [root.resolve()]) == folder_a.resolve()
    with pytest.raises(InputError, match="outside the folders this app may read"):
        check_path("/etc/passwd", [root.resolve()])
    with pytest.raises(InputError, match="outside"):
        check_path(f"{folder_a}/../../..", [root.resolve()])
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(InputError, match="outside"):
        check_path(root / "escape" / "x.png", [root.resolve()])
    config = AppConfig(roots=[root], output_dir=tmp_path / "runs", cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="folder A '/etc' is outside"):
        load_source(config, "Two folders", "/etc", str(folder_b))
    # a dataset file inside the roots that points at an image outside them is refused too
    outside = _png(tmp_path / "elsewhere" / "x.png", 5)
    csv = root / "pairs.csv"
    csv.write_text(f"study_id,group_name,path\ns1,A,{outside}\ns2,B,{folder_b / 'b0.png'}\n")
    with pytest.raises(InputError, match=r"image '.*elsewhere/x.png' is outside the folders"):
        load_source(config, "CSV file", str(csv))
    assert len(load_source(config, "Two folders", str(folder_a), str(folder_b)).set_a) == 2


def test_as_text_makes_model_output_inert():
    shown = as_text(f"![x](http://evil/img.png) {INJECTED} **bold**")
    assert "<script>" not in shown and "&lt;script&gt;" in shown
    assert "![x](http" not in shown and "\\*\\*bold\\*\\*" in shown


@pytest.mark.parametrize(
    ("message", "kind", "detail"),
    [
        ("what are the differences?", "question", None),
        ("is the difference only in the devices?", "question", None),
        ("look at the left base", "zoom", "lower_zone_left"),
        ("zoom into the right costophrenic angle", "zoom", "costophrenic_angle_right"),
        ("focus on the hila", "zoom", "hila"),
        ("test my hypothesis: right pleural effusion", "hypothesis", "right pleural effusion"),
        ("check that cardiomegaly is more in B", "hypothesis", "cardiomegaly"),
        ("more rounds please", "more", None),
    ],
)
def test_message_router(message, kind, detail):
    intent = route_message(message)
    assert intent.kind == kind
    if kind == "zoom":
        assert intent.region == detail
    if kind == "hypothesis":
        assert intent.text == detail
    if message.startswith("check that"):
        assert intent.group == "B"


def test_region_from_text_without_side_uses_both_sides():
    assert region_from_text("the bases") == "lower_zones"
    assert region_from_text("left apex") == "apex_left"
    assert region_from_text("the spleen") is None


# ---------------------------------------------------------------- end to end (runs the agent)


def _ctx(tmp_path: Path, run_id: str, **kw) -> RunContext:
    return RunContext(
        run_id=run_id, run_dir=tmp_path / "runs" / run_id, scorer="reports", use_images=False, max_rounds=2, **kw
    )


@pytest.mark.slow
def test_trace_of_a_resumed_run_shows_both_parts_in_order(tmp_path, monkeypatch, capsys):
    import graphs.radiologist as radiologist
    from graphs.run import run_agent
    from graphs.runtime import traced_node

    folder_a, folder_b = _folders(tmp_path / "data")
    comparison = load_folders(folder_a, folder_b).comparison
    ctx = _ctx(tmp_path, "interrupted")

    @traced_node("reflect")
    def broken_reflect(state, runtime):
        raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(radiologist, "reflect", broken_reflect)
    with pytest.raises(KeyboardInterrupt):
        run_agent(comparison, ctx)
    monkeypatch.undo()
    assert ctx.session is None  # the interrupted run's session is closed: nothing of it stays in memory
    result = run_agent(None, ctx, resume=True)
    assert result.ranked and result.ranked[0].hypothesis.group == "A"
    events = [e["event"] for e in read_trace(ctx.run_dir / "trace.jsonl")]
    order = [events.index(k) for k in ("run_start", "node_start", "resume", "run_end")]
    assert order == sorted(order) and events.count("run_start") == 1
    assert [e["node"] for e in read_trace(ctx.run_dir / "trace.jsonl") if e["event"] == "node_start"].count(
        "survey"
    ) == 1  # the completed survey is not repeated
    assert main(["trace", "show", str(ctx.run_dir)]) == 0
    shown = capsys.readouterr().out
    assert shown.index("run started") < shown.index("reflect [interrupted]") < shown.index("resumed at reflect")
    assert shown.index("resumed at reflect") < shown.index("run ended")
    assert main(["trace", "view", str(ctx.run_dir), "--out", str(tmp_path / "t.html")]) == 0
    page = (tmp_path / "t.html").read_text()
    assert page.index("run started") < page.index("resumed at reflect")
    # the run folder has the self-contained report with the score plot of the top hypothesis
    report = (ctx.run_dir / "report.html").read_text()
    assert "Score distribution not recorded" not in report.split("<h3>")[1]
    assert json.loads((ctx.run_dir / "scores.json").read_text())


@pytest.mark.slow
def test_chat_session_runs_tests_a_hypothesis_continues_and_reopens(tmp_path):
    root = tmp_path / "data"
    folder_a, folder_b = _folders(root)
    config = AppConfig(
        roots=[root],
        output_dir=tmp_path / "runs",
        cache_dir=tmp_path / "cache",
        scorer="reports",
        max_rounds=1,
        context={"use_images": False},
    )
    session = ChatSession(thread="t1", config=config, comparison=load_source(config, "Two folders", folder_a, folder_b))
    list(handle_message(session, "what are the differences?"))
    titles = [m.get("metadata", {}).get("title", "") for m in session.messages]
    assert "Step: survey (round 0)" in titles and any(t.startswith("Tool call: score_hypotheses") for t in titles)
    assert session.result is not None and "effusion" in session.table_items()[0].hypothesis.text
    list(handle_message(session, "test my hypothesis: clear lungs"))
    mine = session.table_items()[0]
    assert mine.hypothesis.text == "clear lungs" and mine.hypothesis.group == "B"  # the data chose the direction
    list(handle_message(session, "more rounds"))
    events = [e["event"] for e in read_trace(config.output_dir / "t1" / "trace.jsonl")]
    assert events.index("run_end") < events.index("resume") < len(events) - 1 and events[-1] == "run_end"
    reopened = reopen_thread(config, "t1")
    assert reopened.messages == json.loads((config.output_dir / "t1" / "chat.json").read_text())["messages"]
    assert reopened.user_scored[0].hypothesis.text == "clear lungs"
    assert reopened.comparison.set_a.name == session.comparison.set_a.name


def test_trace_page_and_tree_show_the_conclusion_first():
    events = [
        {"event": "run_start", "question": "", "context": {"llm": "rules"}},
        {"event": "node_start", "node": "survey", "round": 0},
        {"event": "node_end", "node": "survey", "round": 0, "seconds": 0.1},
        {"event": "node_start", "node": "report", "round": 1},
        {
            "event": "differences",
            "summary": f"Group A has pleural effusion {INJECTED} more often than group B.",
            "differences": ["pleural effusion (more in A): reports 30/30 vs 0/30"],
            "covarying": ["pneumothorax (more in A): follows 'pleural effusion'"],
        },
        {"event": "node_end", "node": "report", "round": 1, "seconds": 0.1},
    ]
    parts = build_outline(events)
    page = trace_html(parts, "r1")
    assert INJECTED not in page
    assert page.index("Conclusion") < page.index("run started")
    assert "reports 30/30 vs 0/30" in page and "pneumothorax (more in A)" in page
    text = render_tree_text(parts, "r1", width=200)
    assert text.index("conclusion: Group A has pleural effusion") < text.index("run started")
    assert "co-varying, not a difference: pneumothorax" in text
