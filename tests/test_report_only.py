"""Report-only studies: loading from CSV, folders of .txt reports and JSONL, bad inputs, and a full run."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddiff.cli.main import main
from tools.data.csv_input import load_csv
from tools.data.folders import load_folders
from tools.data.jsonl_pairs import load_jsonl_pair, read_pairs
from tools.data.loaders import load_comparison
from tools.domain import Comparison, InputError, Study, StudySet

EFFUSION = "FINDINGS: Moderate right pleural effusion. Heart size normal.\nIMPRESSION: Right pleural effusion."
NORMAL = "FINDINGS: No pleural effusion or pneumothorax. Heart size normal.\nIMPRESSION: No acute disease."


def _reports_csv(path: Path, n: int = 6, extra_rows: list[str] | None = None) -> Path:
    rows = ["study_id,group_name,report"]
    rows += [f's{i},effusion,"{EFFUSION}"' for i in range(n)]
    rows += [f'n{i},normal,"{NORMAL}"' for i in range(n)]
    rows += extra_rows or []
    path.write_text("\n".join(rows) + "\n")
    return path


def test_study_needs_an_image_or_a_report():
    assert Study(study_id="r", report="No effusion.").has_images is False
    with pytest.raises(InputError, match="'x': no image and no report text"):
        Study(study_id="x")
    with pytest.raises(InputError, match="'y': no image and no report text"):
        Study(study_id="y", report="   ")
    with pytest.raises(InputError, match="'r': no image"):
        _ = Study(study_id="r", report="No effusion.").primary_image


def test_report_only_study_mixed_with_image_studies_is_refused(tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    a = StudySet(name="a", studies=[Study(study_id="img", image_paths=[image])])
    b = StudySet(name="b", studies=[Study(study_id="rep", report="No effusion.")])
    with pytest.raises(InputError, match="'rep' has a report and no image.*not both"):
        Comparison(set_a=a, set_b=b)
    only = Comparison(set_a=StudySet(name="a", studies=[Study(study_id="r1", report="Effusion.")]), set_b=b)
    assert only.report_only


def test_csv_without_path_column_loads_report_only_studies(tmp_path):
    loaded = load_csv(_reports_csv(tmp_path / "reports.csv"))
    comp = loaded.comparison
    assert comp.report_only and (comp.set_a.name, comp.set_b.name) == ("effusion", "normal")
    assert [s.study_id for s in comp.set_a.studies][:2] == ["s0", "s1"]
    assert comp.set_a.studies[0].report == EFFUSION and comp.set_a.studies[0].image_paths == []


def test_csv_report_path_column_and_bad_rows(tmp_path):
    (tmp_path / "r").mkdir()
    for i in range(3):
        (tmp_path / "r" / f"a{i}.txt").write_text(EFFUSION)
        (tmp_path / "r" / f"b{i}.txt").write_text(NORMAL)
    (tmp_path / "r" / "empty.txt").write_text("  \n")
    rows = ["group_name,report_path,age"] + [f"A,r/a{i}.txt,{50 + i}" for i in range(3)]
    rows += [f"B,r/b{i}.txt,40" for i in range(3)] + ["B,r/empty.txt,40", "A,r/missing.txt,41", "A,,42"]
    path = tmp_path / "paths.csv"
    path.write_text("\n".join(rows) + "\n")
    loaded = load_comparison(path)
    comp = loaded.comparison
    assert comp.report_only and len(comp.set_a) == 3 and len(comp.set_b) == 3
    assert comp.set_a.studies[0].study_id == "r/a0" and comp.set_a.studies[0].metadata.age == 50.0
    assert comp.set_a.studies[0].report_path == tmp_path / "r" / "a0.txt"
    reasons = [s.reason for s in loaded.skipped]
    assert any("empty.txt: empty report" in r for r in reasons)
    assert any("missing.txt: report file not found" in r for r in reasons)
    assert any(":10: empty report" in r for r in reasons)  # the row with neither a report nor a path


def test_csv_report_only_errors(tmp_path):
    with pytest.raises(InputError, match="missing column 'path' \\(or 'report' / 'report_path'"):
        load_csv(_write(tmp_path / "x.csv", "group_name,notes\nA,x\nB,y\n"))
    empty_group = _write(tmp_path / "e.csv", f'group_name,report\nA,"{EFFUSION}"\nB," "\n')
    with pytest.raises(InputError, match="group 'B': empty group.*empty report"):
        load_csv(empty_group)
    dup = _write(tmp_path / "d.csv", f'study_id,group_name,report\ns,A,"{EFFUSION}"\ns,B,"{NORMAL}"\n')
    with pytest.raises(InputError, match=":3: study id 's' already used on line 2"):
        load_csv(dup)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_folders_of_txt_reports(tmp_path):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    for i in range(3):
        _write(tmp_path / "A" / f"r{i}.txt", EFFUSION)
        _write(tmp_path / "B" / f"r{i}.txt", NORMAL)
    _write(tmp_path / "B" / "blank.txt", "")
    loaded = load_folders(tmp_path / "A", tmp_path / "B")
    comp = loaded.comparison
    assert comp.report_only and len(comp.set_a) == 3 and len(comp.set_b) == 3
    assert {s.study_id for s in comp.set_a.studies} == {"A:r0", "A:r1", "A:r2"}  # same names in both: prefixed
    assert any("blank.txt: empty report" in s.reason for s in loaded.skipped)


def test_folder_of_reports_against_a_folder_of_images_is_refused(tmp_path):
    (tmp_path / "A").mkdir()
    _write(tmp_path / "A" / "r0.txt", EFFUSION)
    (tmp_path / "B").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "B" / "b.png")
    with pytest.raises(InputError, match="has a report and no image"):
        load_folders(tmp_path / "A", tmp_path / "B")


def test_jsonl_report_pairs(tmp_path):
    (tmp_path / "rep").mkdir()
    _write(tmp_path / "rep" / "x.txt", NORMAL)
    pair = {
        "set1": "pleural effusion",
        "set2": "normal",
        "set1_reports": [{"study_id": f"e{i}", "report": EFFUSION} for i in range(3)],
        "set2_reports": ["rep/x.txt", {"report": NORMAL}, {"report": ""}],
    }
    path = _write(tmp_path / "pairs.jsonl", json.dumps(pair) + "\n")
    loaded = load_jsonl_pair(path)
    comp = loaded.comparison
    assert comp.report_only and [s.study_id for s in comp.set_a.studies] == ["e0", "e1", "e2"]
    assert [s.study_id for s in comp.set_b.studies] == ["rep/x", "B1"]
    assert comp.set_b.studies[0].report == NORMAL.strip()
    assert any("empty report" in s.reason for s in loaded.skipped)
    both = dict(pair, set1_images=["a.png"])
    with pytest.raises(InputError, match="set1: gives both set1_images and set1_reports"):
        read_pairs(_write(tmp_path / "both.jsonl", json.dumps(both) + "\n"))
    neither = {"set1": "a", "set2": "b", "set2_reports": [{"report": NORMAL}]}
    with pytest.raises(InputError, match="set1: needs set1_images or set1_reports"):
        read_pairs(_write(tmp_path / "neither.jsonl", json.dumps(neither) + "\n"))


@pytest.mark.slow
def test_compare_report_only_csv_runs_in_report_only_mode_and_names_the_difference(tmp_path, capsys):
    path = _reports_csv(tmp_path / "reports.csv", n=8)
    out_dir = tmp_path / "runs"
    code = main(["compare", str(path), "--output-dir", str(out_dir), "--run-id", "rep", "--rounds", "2", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "report-only comparison" in out and "report-only mode" in out
    result = json.loads((out_dir / "rep" / "result.json").read_text())
    assert result["mode"] == "reports" and result["settings"]["scorer"] == "reports"
    assert result["settings"]["use_images"] is False and result["settings"]["use_zoom"] is False
    top = result["ranked"][0]["hypothesis"]
    assert top["finding"] == "pleural_effusion" and top["group"] == "A"
    assert "Report-only mode" in (out_dir / "rep" / "result.md").read_text()
    trace = (out_dir / "rep" / "trace.jsonl").read_text()
    assert "describe_images" not in trace and '"report_only"' in trace
