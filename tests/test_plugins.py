"""The plugin registry (tools.plugins.Registry), the four registries built on it, and ``raddiff backends``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.context import RunContext
from tools.domain import InputError
from tools.plugins import Availability, Backend, Registry, loopback_reachable, needs_modules, openai_endpoint


def _demo_registry() -> Registry:
    registry = Registry("widget", case_sensitive=False)
    registry.register(Backend(name="plain", syntax="plain", description="No argument.", factory="json:dumps"))
    registry.register(
        Backend(
            name="file",
            syntax="file:PATH",
            description="Needs a path.",
            factory="json:loads",
            argument="required",
            aliases=("f",),
            check=lambda arg: Availability(bool(arg), "ok" if arg else "needs a path (none given)"),
        )
    )
    registry.register(
        Backend(
            name="maybe",
            syntax="maybe[:X]",
            description="Optional argument.",
            factory="tools._no_such_widget_module:make",
            argument="optional",
            install="pip install widget-extra",
            capabilities={"scores": "reports"},
        )
    )
    return registry


# ---------------------------------------------------------------- the generic registry


def test_registry_lists_entries_in_registration_order() -> None:
    registry = _demo_registry()
    assert [b.name for b in registry.entries()] == ["plain", "file", "maybe"]
    assert registry.known_ids() == "plain, file:PATH, maybe[:X]"
    rows = registry.listing()
    assert [(r["kind"], r["name"], r["usable"], r["reason"]) for r in rows] == [
        ("widget", "plain", True, "nothing needed"),
        ("widget", "file", False, "needs a path (none given)"),
        ("widget", "maybe", True, "nothing needed"),
    ]


def test_registry_parses_ids_as_data() -> None:
    registry = _demo_registry()
    assert registry.parse(" plain ") == (registry.get("plain"), "")
    assert registry.parse("PLAIN")[0].name == "plain"  # case-insensitive registry
    assert registry.parse("file:/a:b ") == (registry.get("file"), "/a:b")  # the first colon separates
    assert registry.parse("f:/x")[0].name == "file"  # alias
    assert registry.parse("file:") == (registry.get("file"), "")  # the kind's parser says what is missing
    assert registry.parse("maybe") == (registry.get("maybe"), "")
    assert registry.parse("maybe:x") == (registry.get("maybe"), "x")
    assert registry.find("plain:x") is None  # a bare-name backend takes no argument
    assert registry.find("file") is None  # a required argument must be given
    assert registry.find("") is None


@pytest.mark.parametrize("text", ["nope", "plain:x", "file", "nope:x"])
def test_unknown_id_is_a_one_line_error_listing_the_known_ids(text: str) -> None:
    with pytest.raises(InputError) as info:
        _demo_registry().parse(text)
    message = str(info.value)
    assert message.startswith(f"widget {text!r}: unknown backend")
    assert "known: plain, file:PATH, maybe[:X]" in message and "raddiff backends" in message
    assert "\n" not in message


def test_empty_id_is_an_error() -> None:
    with pytest.raises(InputError, match=r"^widget: empty id \(known: plain, file:PATH"):
        _demo_registry().parse("   ")


def test_fallback_takes_unclaimed_ids_and_selects_nothing_by_name() -> None:
    registry = Registry("policy")
    registry.register(Backend(name="rules", syntax="rules", description="d", factory="json:dumps"))
    registry.register(Backend(name="model", syntax="MODEL", description="d", factory="json:dumps", fallback=True))
    assert registry.parse("llava:13b") == (registry.get("model"), "llava:13b")
    assert registry.parse("rules:x")[1] == "rules:x"
    assert registry.parse("rules")[0].name == "rules"
    assert registry.parse("Rules")[0].name == "model"  # case-sensitive
    with pytest.raises(ValueError, match="only one fallback"):
        registry.register(Backend(name="other", syntax="X", description="d", factory="json:dumps", fallback=True))


def test_duplicate_names_are_refused() -> None:
    registry = _demo_registry()
    with pytest.raises(ValueError, match="'F' is already registered"):
        registry.register(Backend(name="g", syntax="g", description="d", factory="json:dumps", aliases=("F",)))


def test_missing_module_gives_the_install_hint() -> None:
    registry = _demo_registry()
    with pytest.raises(InputError) as info:
        registry.load("maybe")
    assert str(info.value) == (
        "the 'maybe' widget is not available: tools._no_such_widget_module is not in this installation; "
        "pip install widget-extra"
    )
    assert registry.load("plain") is json.dumps


def test_capabilities_and_unknown_ids() -> None:
    registry = _demo_registry()
    assert registry.capability("maybe:x", "scores") == "reports"
    assert registry.capability("plain", "scores") is None
    assert registry.capability("nope", "scores") is None


def test_cheap_checks() -> None:
    assert needs_modules("json") is None
    assert needs_modules("json", "_no_such_module_xyz", install="pip install xyz") == Availability(
        False, "_no_such_module_xyz is not installed (pip install xyz)"
    )
    assert loopback_reachable("https://api.openai.com/v1") is None  # never probed
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert loopback_reachable(f"http://127.0.0.1:{port}/v1") is True
    assert loopback_reachable(f"http://127.0.0.1:{port}/v1") is False


def test_openai_endpoint_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert openai_endpoint() == Availability(
        False, "OPENAI_API_KEY not set, and no base URL (OPENAI_BASE_URL or --llm-base-url)"
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert openai_endpoint() == Availability(True, "OPENAI_API_KEY set (OpenAI)")
    assert openai_endpoint(module="_no_such_client").usable is False
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
    assert openai_endpoint(f"http://127.0.0.1:{port}/v1") == Availability(
        False, f"nothing listens at http://127.0.0.1:{port}/v1"
    )


# ---------------------------------------------------------------- the four registries


def test_scorer_registry_entries_and_reasons(tmp_path: Path) -> None:
    from tools.scorers.registry import SCORERS, parse_scorer

    assert [b.syntax for b in SCORERS.entries()] == [
        "mini",
        "chexzero:PATH",
        "open_clip:NAME@PRETRAINED",
        "hf-hub:ORG/NAME",
        "reports",
    ]
    assert SCORERS.availability("mini") == Availability(True, "weights tools/weights/mini-cxr-clip.safetensors")
    assert SCORERS.availability("chexzero") == Availability(False, "needs a checkpoint file (none given)")
    missing = tmp_path / "nothing.pt"
    assert SCORERS.availability("chexzero", str(missing)) == Availability(
        False, f"checkpoint file not found: {missing}"
    )
    (tmp_path / "w.pt").write_bytes(b"x")
    usable, reason = SCORERS.availability("chexzero", str(tmp_path / "w.pt"))
    assert usable and reason.startswith(f"checkpoint {tmp_path / 'w.pt'}; ")
    assert SCORERS.availability("open_clip", f"local-dir:{tmp_path / 'none'}").usable is False
    with pytest.raises(InputError, match=r"scorer 'clip': unknown backend \(known: mini, chexzero:PATH"):
        parse_scorer("clip")


def test_mini_weights_missing_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tools.describers.registry import DESCRIBERS
    from tools.scorers import registry

    monkeypatch.setattr(registry, "mini_weights_path", lambda: tmp_path / "gone.safetensors")
    expected = Availability(
        False, "weights file tools/weights/mini-cxr-clip.safetensors missing; reinstall the package"
    )
    assert registry.SCORERS.availability("mini") == expected
    assert DESCRIBERS.availability("mini") == expected


def test_reports_scorer_is_asked_of_the_registry() -> None:
    from tools.scorers.registry import SCORERS, scorer_scores_reports

    assert SCORERS.get("reports").capabilities["scores"] == "reports"
    assert scorer_scores_reports("reports") is True
    for other in ("mini", "chexzero:/w.pt", "open_clip:ViT-B-32@random", "hf-hub:org/x", "unknown", ""):
        assert scorer_scores_reports(other) is False, other
    assert RunContext(scorer="reports", use_images=False).scores_reports is True
    assert RunContext(scorer="reports", use_images=True).scores_reports is False
    assert RunContext(scorer="mini", use_images=False).scores_reports is False


def test_describer_registry_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.describers.registry import DESCRIBERS, parse_describer_id

    assert [b.syntax for b in DESCRIBERS.entries()] == [
        "mini",
        "chexagent:MODEL_ID",
        "transformers:MODEL_ID",
        "openai:MODEL",
    ]
    assert parse_describer_id("HF:org/vlm").backend == "transformers"
    usable, reason = DESCRIBERS.availability("chexagent")
    assert not usable and reason.startswith("transformers installed; ")
    assert reason.endswith("needs model weights at a local path (none given, no network)")
    assert DESCRIBERS.availability("chexagent", "/no/such/folder") == Availability(
        False, "model folder not found: /no/such/folder"
    )
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert DESCRIBERS.availability("openai").usable is False


def test_make_policy_builds_a_new_policy_per_call() -> None:
    import agent.policies as policies
    from agent.policies import POLICIES, make_policy
    from agent.policies.llm import LLMPolicy
    from agent.policies.rules import RulesPolicy

    assert not hasattr(policies, "_POLICIES") and not hasattr(policies, "get_policy")
    context = RunContext(llm="rules")
    first, second = make_policy(context), make_policy(context)
    assert isinstance(first, RulesPolicy) and first is not second
    for llm in ("openai:gpt-4.1-mini", "local", "local:0.5b", "llava:13b"):
        policy = make_policy(RunContext(llm=llm))
        assert isinstance(policy, LLMPolicy) and policy is not make_policy(RunContext(llm=llm))
    assert [(POLICIES.parse(t)[0].name, POLICIES.parse(t)[1]) for t in ("rules", "local:0.5b", "openai:m", "m")] == [
        ("rules", ""),
        ("local", "0.5b"),
        ("openai", "m"),
        ("model", "m"),
    ]
    assert POLICIES.availability("local", "nope").reason.startswith("unknown local model 'nope'")


def test_judge_registry_behind_make_judge() -> None:
    from evals.bench.judges import JUDGES, make_judge
    from evals.bench.llm_judge import LLMJudge
    from evals.bench.structured_judge import StructuredJudge

    assert [b.syntax for b in JUDGES.entries()] == ["structured", "openai:MODEL", "MODEL"]
    assert isinstance(make_judge("structured"), StructuredJudge)
    judge = make_judge("openai:judge-model", base_url="http://127.0.0.1:9/v1")
    assert isinstance(judge, LLMJudge) and judge.model == "judge-model" and judge.base_url == "http://127.0.0.1:9/v1"
    assert isinstance(make_judge("llava:13b"), LLMJudge)
    with pytest.raises(InputError, match="judge: empty name"):
        make_judge(" ")


# ---------------------------------------------------------------- raddiff backends


def test_backends_command_lists_every_kind(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from raddiff.cli.main import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["backends"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headings = [line for line in lines if line and not line.startswith(" ")]
    assert headings == [
        "scorers (--scorer):",
        "describers (--describer):",
        "policies (--llm):",
        "judges (raddiff bench --judge):",
    ]
    assert "  mini: usable (weights tools/weights/mini-cxr-clip.safetensors)" in lines
    assert "  chexzero:PATH: not usable: needs a checkpoint file (none given)" in lines
    assert "  rules: usable (nothing needed)" in lines
    no_key = "not usable: OPENAI_API_KEY not set, and no base URL (OPENAI_BASE_URL or --llm-base-url)"
    assert f"  openai:MODEL: {no_key}" in lines
    assert "      The project's offline mini CXR-CLIP (trained on SynthCXR only)." in lines


def test_backends_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from raddiff.cli.main import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["name"]) for r in rows] == [
        ("scorer", "mini"),
        ("scorer", "chexzero"),
        ("scorer", "open_clip"),
        ("scorer", "hf-hub"),
        ("scorer", "reports"),
        ("describer", "mini"),
        ("describer", "chexagent"),
        ("describer", "transformers"),
        ("describer", "openai"),
        ("policy", "rules"),
        ("policy", "local"),
        ("policy", "openai"),
        ("policy", "model"),
        ("judge", "structured"),
        ("judge", "openai"),
        ("judge", "model"),
    ]
    assert all(set(r) == {"kind", "name", "syntax", "description", "usable", "reason"} for r in rows)
    by_id = {(r["kind"], r["name"]): r for r in rows}
    assert by_id[("describer", "openai")]["usable"] is True  # the key is set now
    assert by_id[("scorer", "chexzero")]["usable"] is False
    assert main(["backends", "--json", "--kind", "judge"]) == 0
    assert {r["kind"] for r in json.loads(capsys.readouterr().out)} == {"judge"}


def test_backends_module_is_light_to_import() -> None:
    code = (
        "import sys, raddiff.cli.backends\n"
        "heavy = [m for m in ('torch', 'agent', 'evals', 'transformers', 'open_clip') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
