"""``raddiff bench diff``: two benchmark folders compared pair by pair, timings left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.bench.compare import diff_bench_dirs
from tools.domain import InputError


def _folder(root: Path, pairs: dict[str, dict], results: dict[str, dict] | None = None) -> Path:
    (root / "pairs").mkdir(parents=True)
    for name, data in pairs.items():
        (root / "pairs" / f"{name}.json").write_text(json.dumps(data))
    for name, data in (results or {}).items():
        (root / "runs" / name).mkdir(parents=True)
        (root / "runs" / name / "result.json").write_text(json.dumps(data))
    return root


def _pair(seconds: float, differences: list[str]) -> dict:
    return {"pair_id": "p", "seconds": seconds, "differences": [{"text": t} for t in differences], "acc1": 1.0}


def test_runs_that_differ_only_in_timings_settings_and_run_ids_are_identical(tmp_path: Path) -> None:
    a = _folder(
        tmp_path / "a", {"p": _pair(3.2, ["effusion"])}, {"p": {"run_id": "x1", "seconds": 3.0, "summary": "s"}}
    )
    b = _folder(
        tmp_path / "b", {"p": _pair(9.9, ["effusion"])}, {"p": {"run_id": "x2", "seconds": 8.0, "summary": "s"}}
    )
    found = diff_bench_dirs(a, b)
    assert found.identical and found.pairs_compared == 1 and found.results_compared == 1
    assert found.lines()[0].startswith("1 pairs and 1 run results compared: identical")


def test_a_changed_difference_a_changed_result_and_a_missing_pair_are_reported(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", {"p": _pair(1, ["effusion"]), "q": _pair(1, [])}, {"p": {"summary": "one"}})
    b = _folder(tmp_path / "b", {"p": _pair(1, ["effusion", "atelectasis"])}, {"p": {"summary": "two"}})
    found = diff_bench_dirs(a, b)
    assert not found.identical
    assert found.only_before == ["q"] and found.only_after == []
    assert [(c.where, c.field) for c in found.changes] == [("p", "differences[1]"), ("p (result.json)", "summary")]
    assert found.changes[0].before == "(absent)" and found.changes[0].after == '{"text": "atelectasis"}'
    assert (found.changes[1].before, found.changes[1].after) == ('"one"', '"two"')


def test_a_folder_that_is_not_a_benchmark_folder_is_a_one_line_error(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", {"p": _pair(1, [])})
    with pytest.raises(InputError, match="not a benchmark folder"):
        diff_bench_dirs(a, tmp_path / "nowhere")
    (tmp_path / "bad" / "pairs").mkdir(parents=True)
    (tmp_path / "bad" / "pairs" / "p.json").write_text("{broken")
    with pytest.raises(InputError, match="p.json: not a readable JSON file"):
        diff_bench_dirs(a, tmp_path / "bad")


def test_the_cli_exits_0_when_identical_and_1_when_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raddiff.cli.main import main

    a = _folder(tmp_path / "a", {"p": _pair(1, ["effusion"])})
    b = _folder(tmp_path / "b", {"p": _pair(2, ["effusion"])})
    c = _folder(tmp_path / "c", {"p": _pair(2, ["pneumothorax"])})
    assert main(["bench", "diff", str(a), str(b)]) == 0
    assert main(["bench", "diff", str(a), str(c)]) == 1
    assert 'p: differences[0].text: "effusion" -> "pneumothorax"' in capsys.readouterr().out
