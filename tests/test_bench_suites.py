"""Benchmark suites: the shipped RadDiffBench definition, MIMIC-CXR style loading, JSONL suites, selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evals.bench.suites import jsonl_suite, load_suite, raddiff_data_dir, raddiffbench, read_difficulty
from raddiff.cli.main import main
from tests.fakes.openai_server import FakeOpenAIServer
from tools.domain import InputError


def _jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), value, dtype=np.uint8)).save(path, format="JPEG")


def _fake_mimic(root: Path, images: list[str], with_reports: bool = True) -> tuple[Path, Path]:
    """A MIMIC-CXR-JPG style tree (``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom>.jpg``) and a reports tree."""
    mimic, reports = root / "mimic-cxr-jpg", root / "mimic-cxr"
    for i, rel in enumerate(images):
        _jpg(mimic / "files" / rel, 40 + i)
        if with_reports:
            study = Path(rel).parent
            report = reports / "files" / study.parent / f"{study.name}.txt"
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(f"FINDINGS: study {study.name}. Moderate right pleural effusion.\n")
    return mimic, reports


def test_raddiffbench_definition_ships_with_license() -> None:
    base = raddiff_data_dir()
    assert (base / "LICENSE-RadDiff").is_file() and "Apache" in (base / "LICENSE-RadDiff").read_text()
    assert (base / "README.md").is_file()
    suite = raddiffbench()
    assert len(suite.pairs) == 57
    levels = [p.difficulty for p in suite.pairs]
    assert (levels.count(1), levels.count(2), levels.count(3)) == (23, 21, 13)
    assert suite.pairs[0].set1 == "moderate right pleural effusion"
    assert suite.pairs[0].pair_id.startswith("00_moderate_right_pleural_effusion")
    assert len({p.pair_id for p in suite.pairs}) == 57


def test_raddiffbench_loads_images_and_reports_from_a_fake_mimic_tree(tmp_path: Path) -> None:
    pair0 = raddiffbench().pairs[0]
    present = pair0.spec.set1_images[:3] + pair0.spec.set2_images[:2]
    mimic, reports = _fake_mimic(tmp_path, present)
    suite = load_suite("raddiffbench", mimic_root=mimic, reports_root=reports)
    loaded = suite.pairs[0].load()
    comparison = loaded.comparison
    assert (len(comparison.set_a), len(comparison.set_b)) == (3, 2)
    assert all(s.report and "pleural effusion" in s.report for _g, s in comparison.all_studies())
    first = comparison.set_a.studies[0]
    assert first.image_paths[0] == mimic / "files" / present[0]
    assert (
        first.report_path == reports / "files" / Path(present[0]).parent.parent / f"{Path(present[0]).parent.name}.txt"
    )
    # the missing images are skipped and reported, not fatal
    assert len(loaded.skipped) == len(pair0.spec.set1_images) + len(pair0.spec.set2_images) - 5
    # a pair without any image on disk is an error naming the group
    with pytest.raises(InputError, match="empty group"):
        suite.pairs[1].load()


def test_raddiffbench_with_a_small_custom_definition(tmp_path: Path) -> None:
    images = ["p10/p10000001/s50000001/aaa.jpg", "p10/p10000002/s50000002/bbb.jpg", "p11/p11000003/s50000003/ccc.jpg"]
    mimic, reports = _fake_mimic(tmp_path, images)
    data = tmp_path / "def"
    data.mkdir()
    record = {"set1": "effusion ", "set2": "no effusion", "set1_images": images[:2], "set2_images": images[2:]}
    (data / "RadDiffBench.jsonl").write_text(json.dumps(record) + "\n")
    (data / "RadDiffBenchDifficulty.csv").write_text(
        "index,condition_A,condition_B,usefulness,difficulty\n0,a,b,3.0,2.0\n"
    )
    suite = raddiffbench(mimic / "files", reports, data_dir=data)  # the root may also be files/ itself
    pair = suite.pairs[0]
    assert (pair.set1, pair.difficulty) == ("effusion", 2)
    comparison = pair.load().comparison
    assert [s.study_id for s in comparison.set_a.studies] == [Path(i).with_suffix("").as_posix() for i in images[:2]]
    assert comparison.set_b.studies[0].metadata.extra["subject_id"] == "p11000003"


def test_missing_roots_and_bad_csv_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--mimic-root"):
        raddiffbench(tmp_path / "nope")
    with pytest.raises(InputError, match="--reports-root"):
        raddiffbench(tmp_path, tmp_path / "nope")
    bad = tmp_path / "d.csv"
    bad.write_text("index,difficulty\nx,1\n")
    with pytest.raises(InputError, match="integer index"):
        read_difficulty(bad)
    with pytest.raises(InputError, match="unknown"):
        load_suite("not-a-suite")
    assert main(["bench", "run", "raddiffbench", "--quiet"]) == 2  # needs --mimic-root


def test_jsonl_suite_fields_and_selection(tmp_path: Path) -> None:
    images = [f"img{i}.png" for i in range(4)]
    lines = [
        {
            "set1": "x",
            "set2": "y",
            "set1_images": images[:2],
            "set2_images": images[2:],
            "name": "first",
            "difficulty": 3,
            "purity": 0.5,
            "truth": [{"finding": "nodule", "attributes": {}, "group": "A"}],
        },
        {"set1": "large nodule", "set2": "none", "set1_images": images[:1], "set2_images": images[3:]},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    suite = jsonl_suite(path)
    assert [p.pair_id for p in suite.pairs] == ["first", "01_large_nodule"]
    first = suite.pairs[0]
    assert (first.difficulty, first.purity, first.truth[0]["finding"]) == (3, 0.5, "nodule")  # type: ignore[index]
    assert first.image_root == tmp_path
    assert suite.pairs[1].truth is None and suite.pairs[1].difficulty is None
    assert [p.pair_id for p in suite.select(["1"])] == ["01_large_nodule"]
    assert [p.pair_id for p in suite.select(["first", "01_large_nodule"], limit=1)] == ["first"]
    with pytest.raises(InputError, match="unknown pair 'zzz'"):
        suite.select(["zzz"])
    with pytest.raises(InputError, match="--limit"):
        suite.select(None, 0)


@pytest.mark.slow
def test_documented_raddiffbench_command_on_a_fake_mimic_tree(
    tmp_path: Path, openai_server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`raddiff bench run raddiffbench --mimic-root --reports-root` with an LLM judge (scripted server)."""
    pair0 = raddiffbench().pairs[0]
    mimic, reports = _fake_mimic(tmp_path, pair0.spec.set1_images[:4] + pair0.spec.set2_images[:4])
    for path in (reports / "files").rglob("*.txt"):  # group B reports say no effusion
        if any(Path(p).parent.name in path.name for p in pair0.spec.set2_images[:4]):
            path.write_text("FINDINGS: No pleural effusion. Lungs are clear.\n")
    openai_server.set_responder(lambda body: '{"score": 2, "reason": "matches"}')
    out = tmp_path / "bench"
    argv = [
        "--cache-dir", str(tmp_path / "cache"), "bench", "run", "raddiffbench", "--mimic-root", str(mimic),
        "--reports-root", str(reports), "--pairs", "0", "--llm", "rules", "--ablation", "reports_only",
        "--judge", "openai:judge", "--judge-base-url", openai_server.base_url, "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    stored = json.loads(next((out / "pairs").glob("00_*.json")).read_text())
    assert stored["status"] == "ok", stored["error"]
    assert (stored["n_a"], stored["n_b"], stored["difficulty"]) == (4, 4, 2)
    assert stored["judge"] == "llm:judge" and stored["acc1"] == 1.0
    assert "pleural effusion" in stored["hypotheses"][0]["text"] and stored["hypotheses"][0]["group"] == "A"
    assert len(openai_server.requests) == len(stored["hypotheses"])
    assert "acc@1" in capsys.readouterr().out
