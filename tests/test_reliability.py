"""Issue 21's red-team findings, each kept fixed: settings reach the models, bad images never skew results,
tool errors do not end runs, caches heal, resume and run ids are safe, untrusted text stays data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.context import RunContext
from graphs import radiologist
from tools.domain import Comparison, InputError, Study, StudySet
from tools.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"RADDIFF_{name.upper()}", raising=False)
    monkeypatch.delenv("RADDIFF_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _png(path: Path, value: int = 100, size: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
    return path


def _report_comparison(tmp_path: Path, n: int = 5) -> Comparison:
    def study(i: int, report: str) -> Study:
        return Study(study_id=f"s{i}", image_paths=[_png(tmp_path / f"img{i}.png", i)], report=report)

    effusion = "FINDINGS: Moderate right pleural effusion."
    set_a = StudySet(name="effusion", studies=[study(i, effusion) for i in range(n)])
    set_b = StudySet(name="normal", studies=[study(10 + i, "FINDINGS: No pleural effusion.") for i in range(n)])
    return Comparison(set_a=set_a, set_b=set_b)


# ---------------------------------------------------------------- 1. settings reach the models and caches


def test_config_file_after_the_subcommand_reaches_the_run_context(tmp_path, monkeypatch):
    from evals import cli
    from graphs import run as run_module

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"batch_size: 3\ndevice: cpu\ndtype: bfloat16\ntrust_remote_code: true\ncache_dir: {tmp_path / 'cc'}\n"
    )
    seen: list[RunContext] = []

    def fake_run_agent(comparison, context, **kw):  # type: ignore[no-untyped-def]
        seen.append(context)
        raise InputError("stop here")

    monkeypatch.setattr(run_module, "run_agent", fake_run_agent)
    _png(tmp_path / "A" / "a.png", 1)
    _png(tmp_path / "B" / "b.png", 2)
    argv = ["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--config", str(cfg), "--quiet"]
    assert cli.main(argv) == 2  # the fake's one-line error, after the context was built
    settings = seen[0].settings
    assert (settings.batch_size, settings.device, settings.dtype) == (3, "cpu", "bfloat16")
    assert settings.trust_remote_code is True and settings.cache_dir == tmp_path / "cc"
    assert cli.main(["--cache-dir", str(tmp_path / "flag"), *argv]) == 2  # before the subcommand: flag beats file
    assert seen[1].settings.cache_dir == tmp_path / "flag"


def test_the_run_workspace_uses_the_context_settings_not_the_environment(tmp_path, monkeypatch):
    from graphs.run import run_agent

    monkeypatch.setenv("RADDIFF_BATCH_SIZE", "99")  # the environment must not win over the run's settings
    settings = Settings(cache_dir=tmp_path / "mine", batch_size=5, device="cpu", trust_remote_code=True)
    ctx = RunContext(
        run_id="s1", run_dir=tmp_path / "s1", scorer="reports", use_images=False, max_rounds=1, settings=settings
    )
    seen = []

    def on_event(node, update):  # type: ignore[no-untyped-def]
        ws = radiologist.workspace_of("s1")
        if ws is not None:
            seen.append(ws.settings)

    run_agent(_report_comparison(tmp_path), ctx, on_event=on_event)
    assert seen and all(s is settings for s in seen)
    assert all(s.batch_size == 5 and s.trust_remote_code for s in seen)
