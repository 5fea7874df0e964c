"""The local LLM: GGUF assembly from part packages (checksum), the llama.cpp server's lifetime, and the real
agent graph driven by the real Qwen2.5-Coder-0.5B model (slow; runs in CI, where `.[dev]` installs the parts)."""

import hashlib
import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from agent.context import RunContext
from agent.trace import read_trace
from graphs.run import run_agent
from tools.domain import Comparison, InputError, Study, StudySet
from tools.llm import local as local_llm
from tools.llm.local import LocalModel, assemble_gguf, local_server, resolve_model


def _fake_parts(tmp_path, monkeypatch, chunks):
    root = tmp_path / "site"
    for i, chunk in enumerate(chunks, start=1):
        package = root / f"fakegguf_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(root))
    joined = b"".join(chunks)
    return LocalModel(
        name="fake",
        package="fakegguf_part",
        distribution="fakegguf-part",
        parts=len(chunks),
        sha256=hashlib.sha256(joined).hexdigest(),
        size=len(joined),
    )


def test_gguf_is_joined_in_order_verified_and_cached_once(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3])
    path = assemble_gguf(model, tmp_path / "cache")
    assert path.read_bytes() == b"GGUF" + b"a" * 10 + b"b" * 7 + b"c" * 3
    mtime = path.stat().st_mtime_ns
    assert assemble_gguf(model, tmp_path / "cache") == path and path.stat().st_mtime_ns == mtime  # cached


def test_a_wrong_checksum_leaves_no_file(tmp_path, monkeypatch):
    model = _fake_parts(tmp_path, monkeypatch, [b"x" * 5, b"y" * 5])
    bad = LocalModel(**{**model.__dict__, "sha256": "0" * 64})
    with pytest.raises(InputError, match="sha256"):
        assemble_gguf(bad, tmp_path / "cache")
    assert list((tmp_path / "cache" / "local-llm").glob("*.gguf")) == []
    assert not [p for p in (tmp_path / "cache" / "local-llm").iterdir() if p.name.endswith(".tmp")]


def test_missing_part_package_and_unknown_model_are_one_line_errors(tmp_path):
    missing = LocalModel(
        name="m", package="no_such_pkg_part", distribution="no-such-pkg-part", parts=2, sha256="0", size=1
    )
    with pytest.raises(InputError, match="no-such-pkg-part1 is not installed"):
        assemble_gguf(missing, tmp_path)
    with pytest.raises(InputError, match="unknown local model 'gpt-9'"):
        resolve_model("local:gpt-9")
    assert resolve_model("local").name == local_llm.DEFAULT_MODEL
    assert resolve_model("local:0.5b").name == "qwen2.5-coder-0.5b"


def _installed(model: str) -> bool:
    spec = resolve_model(model)
    packages = ["xllamacpp", *(f"{spec.package}{i}" for i in range(1, spec.parts + 1))]
    return all(importlib.util.find_spec(p) is not None for p in packages)


requires_small_model = pytest.mark.skipif(
    not _installed("local:0.5b"), reason='xllamacpp and the 0.5B parts are not installed (pip install -e ".[dev]")'
)


def _comparison(tmp_path):
    def study(i, report):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((8, 8), i, dtype=np.uint8)).save(path)
        return Study(study_id=f"s{i}", image_paths=[path], report=report)

    set_a = StudySet(
        name="effusion", studies=[study(i, "FINDINGS: Moderate right pleural effusion.") for i in range(8)]
    )
    set_b = StudySet(
        name="normal", studies=[study(20 + i, "FINDINGS: No pleural effusion. Lungs clear.") for i in range(8)]
    )
    return Comparison(set_a=set_a, set_b=set_b)


@pytest.mark.slow
@requires_small_model
def test_server_binds_loopback_and_stops_when_the_last_user_leaves(tmp_path, monkeypatch):
    import httpx

    monkeypatch.setenv("RADDIFF_LOCAL_LLM_THREADS", "2")
    with local_server("local:0.5b", tmp_path) as server:
        with local_server("local:0.5b", tmp_path) as again:
            assert again is server  # shared, not a second model in memory
        assert server.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=10).status_code == 200
        process = server.process
        assert process is not None and process.poll() is None
    assert process.wait(timeout=30) is not None and local_llm._RUNNING == {}


@pytest.mark.slow
@requires_small_model
def test_real_small_model_drives_the_tools_and_its_results_reach_pool_and_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ctx = RunContext(
        run_id="real-llm",
        run_dir=tmp_path / "real-llm",
        llm="local:qwen2.5-coder-0.5b",
        scorer="reports",
        use_images=False,
        samples_per_group=3,
        hypotheses_per_round=2,
        max_rounds=2,
        tool_call_budget=2,
        max_repairs=1,
        llm_max_tokens=160,
        top_k=3,
    )
    question = "Is the effusion on the right side? Test 'right pleural effusion' with score_hypotheses."
    result = run_agent(_comparison(tmp_path), ctx, question=question)
    assert local_llm._RUNNING == {}  # the server was shut down with the run

    events = read_trace(ctx.run_dir / "trace.jsonl")
    turns = [e for e in events if e["event"] == "llm_turn"]
    tool_events = [e for e in events if e["event"] == "llm_tool_call"]
    assert result.llm_calls == len(turns) >= 2 and result.llm_tokens > 0
    assert result.llm_tool_calls == len(tool_events) >= 1  # the LLM itself called tools
    called = [c["name"] for t in turns for c in t["tool_calls"]]
    assert called == [e["name"] for e in tool_events]  # each call the LLM made was run, in order
    scored_by_llm = {s.hypothesis.text for s in result.ranked if s.hypothesis.source.startswith("llm-tool/")}
    ok_scores = [e for e in tool_events if e["ok"] and e["name"] == "score_hypotheses"]
    assert ok_scores  # a valid scoring call, and what it scored joined the pool and the final ranking
    assert {h for e in ok_scores for h in e["args"]["hypotheses"]} & scored_by_llm
    saved = json.loads((ctx.run_dir / "result.json").read_text())
    assert saved["llm_tool_calls"] == result.llm_tool_calls and saved["llm_calls"] == result.llm_calls
    assert any(s.hypothesis.finding == "pleural_effusion" for s in result.ranked)
