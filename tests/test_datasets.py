import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.data.csv_input import load_csv
from tools.data.folders import load_folders
from tools.data.jsonl_pairs import load_jsonl_pair, read_pairs
from tools.data.loaders import load_comparison
from tools.data.studies import mimic_report_path
from tools.domain import Comparison, InputError, Study, StudySet


def _png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------ CSV


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_csv_loads_groups_reports_and_metadata(tmp_path):
    for i in range(3):
        _png(tmp_path / "img" / f"a{i}.png", i)
        _png(tmp_path / "img" / f"b{i}.png", 10 + i)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "b0.txt").write_text("FINDINGS: Small left effusion.")
    rows = [f"img/a{i}.png,sick,Moderate right effusion.,,PA,F,{60 + i},site1" for i in range(3)]
    rows += ["img/b0.png,well,,rep/b0.txt,AP,M,40,site2", "img/b1.png,well,,,AP,M,41,site2"]
    rows += ["img/b2.png,well,,,PA,F,42,site1"]
    path = _csv(tmp_path / "groups.csv", "path,group_name,report,report_path,ViewPosition,sex,age,site", rows)
    loaded = load_csv(path)
    comp = loaded.comparison
    assert (comp.set_a.name, comp.set_b.name) == ("sick", "well")
    assert len(comp.set_a) == 3 and len(comp.set_b) == 3
    a0 = comp.set_a.studies[0]
    assert a0.report == "Moderate right effusion."
    assert a0.metadata.view_position == "PA" and a0.metadata.sex == "F" and a0.metadata.age == 60.0
    assert a0.metadata.extra == {"site": "site1"}
    b0 = comp.set_b.studies[0]
    assert b0.report == "FINDINGS: Small left effusion." and b0.report_path == tmp_path / "rep" / "b0.txt"
    assert comp.set_b.studies[1].report is None
    assert loaded.skipped == []


def test_csv_groups_multiple_images_by_study_id(tmp_path):
    for i, name in enumerate(("s1_pa", "s1_lat", "s2_pa", "s3_pa")):
        _png(tmp_path / f"{name}.png", i)  # four different images (the same image in both groups is refused)
    rows = ["s1_pa.png,A,s1", "s1_lat.png,A,s1", "s2_pa.png,B,s2", "s3_pa.png,B,s3"]
    comp = load_csv(_csv(tmp_path / "g.csv", "path,group_name,study_id", rows)).comparison
    assert [s.study_id for s in comp.set_a.studies] == ["s1"]
    assert [p.name for p in comp.set_a.studies[0].image_paths] == ["s1_pa.png", "s1_lat.png"]


def test_csv_missing_image_is_skipped_and_reported(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    path = _csv(tmp_path / "g.csv", "path,group_name", ["a.png,A", "gone.png,A", "b.png,B", "notes.txt,B"])
    (tmp_path / "notes.txt").write_text("hello")
    loaded = load_csv(path)
    assert len(loaded.comparison.set_a) == 1 and len(loaded.comparison.set_b) == 1
    reasons = sorted(s.reason for s in loaded.skipped)
    assert len(reasons) == 2
    assert "gone.png: file not found" in reasons[0]
    assert "notes.txt: not an image file" in reasons[1]


def test_csv_corrupt_image_skipped_when_decoding(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    _png(tmp_path / "c.png", 3)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    path = _csv(tmp_path / "g.csv", "path,group_name", ["a.png,A", "bad.png,A", "b.png,B", "c.png,B"])
    assert load_csv(path).skipped == []  # not decoded: only existence is checked
    loaded = load_csv(path, decode_images=True)
    assert [s.study_id for s in loaded.comparison.set_a.studies] == ["a"]
    assert "bad.png: corrupt image" in loaded.skipped[0].reason


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (
            "file,group_name",
            ["a.png,A"],
            "missing column 'path' (or 'report' / 'report_path' for report-only studies) "
            "(columns present: file, group_name)",
        ),
        ("path,group", ["a.png,A"], "missing column 'group_name'"),
        ("path,group_name", ["a.png,A", "b.png,B", "c.png,C"], "has 3 groups"),
        ("path,group_name", ["a.png,A"], "has 1 groups"),
    ],
)
def test_csv_bad_columns_and_groups(tmp_path, header, rows, message):
    for name in ("a", "b", "c"):
        _png(tmp_path / f"{name}.png")
    with pytest.raises(InputError, match="g.csv: ") as info:
        load_csv(_csv(tmp_path / "g.csv", header, rows))
    assert message in str(info.value)


def test_csv_unknown_metadata_column_and_group(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    path = _csv(tmp_path / "g.csv", "path,group_name,age", ["a.png,A,50", "b.png,B,60"])
    with pytest.raises(InputError, match="unknown column 'sex'"):
        load_csv(path, metadata_columns=["sex"])
    with pytest.raises(InputError, match="group 'C' not found in column 'group_name'"):
        load_csv(path, group_a="A", group_b="C")


def test_csv_empty_group_after_skipping(tmp_path):
    _png(tmp_path / "a.png", 1)
    path = _csv(tmp_path / "g.csv", "path,group_name", ["a.png,A", "gone.png,B"])
    with pytest.raises(InputError, match="group 'B': empty group .*gone.png: file not found"):
        load_csv(path)


def test_csv_study_in_both_groups(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    path = _csv(tmp_path / "g.csv", "path,group_name,study_id", ["a.png,A,s1", "b.png,B,s1"])
    with pytest.raises(InputError, match="study 's1' is present in both groups"):
        load_csv(path)


def test_csv_file_missing():
    with pytest.raises(InputError, match="nope.csv: CSV file not found"):
        load_csv("nope.csv")


# ------------------------------------------------------------------ JSONL + MIMIC layout


def _mimic_tree(root: Path) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {"set1_images": [], "set2_images": []}
    for i, key in enumerate(["set1_images"] * 3 + ["set2_images"] * 3):
        pid, sid = f"p1{i}00000{i}", f"s5{i}00000{i}"
        rel = f"p1{i}/{pid}/{sid}/dicom{i}.jpg"
        img = root / "mimic-cxr-jpg" / "files" / rel
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((10, 10), 20 * i, dtype=np.uint8)).save(img)
        report = root / "mimic-cxr" / "files" / f"p1{i}" / pid / f"{sid}.txt"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(f"FINDINGS: study {i}.\nIMPRESSION: none {i}.")
        sets[key].append(rel)
    return sets


def test_jsonl_pair_with_mimic_roots(tmp_path):
    images = _mimic_tree(tmp_path)
    line = {"set1": "moderate right pleural effusion ", "set2": "no pleural effusion ", **images, "index": 0}
    jsonl = tmp_path / "bench.jsonl"
    jsonl.write_text(json.dumps(line) + "\n")
    loaded = load_jsonl_pair(jsonl, 0, image_root=tmp_path / "mimic-cxr-jpg", reports_root=tmp_path / "mimic-cxr")
    comp = loaded.comparison
    assert comp.set_a.description == "moderate right pleural effusion"
    assert len(comp.set_a) == 3 and len(comp.set_b) == 3
    first = comp.set_a.studies[0]
    assert first.report == "FINDINGS: study 0.\nIMPRESSION: none 0."
    assert first.metadata.extra["subject_id"] == "p10000000"
    assert first.image_paths[0].is_file()
    assert loaded.skipped == [] and loaded.warnings == []


def test_jsonl_missing_images_are_skipped(tmp_path):
    images = _mimic_tree(tmp_path)
    images["set2_images"].append("p19/p19000000/s59000000/missing.jpg")
    jsonl = tmp_path / "bench.jsonl"
    jsonl.write_text(json.dumps({"set1": "x", "set2": "y", **images}) + "\n")
    loaded = load_jsonl_pair(jsonl, image_root=tmp_path / "mimic-cxr-jpg")
    assert len(loaded.comparison.set_b) == 3
    assert len(loaded.skipped) == 1 and "missing.jpg: file not found" in loaded.skipped[0].reason


def test_mimic_report_path_layout(tmp_path):
    report = tmp_path / "files" / "p12" / "p12734442" / "s53742152.txt"
    report.parent.mkdir(parents=True)
    report.write_text("x")
    image = "p12/p12734442/s53742152/65cbee81-7496ea46.jpg"
    assert mimic_report_path(image, tmp_path) == report
    assert mimic_report_path(image, tmp_path / "files") == report
    assert mimic_report_path("some/other/layout.jpg", tmp_path) is None


def test_raddiffbench_definition_parses():
    bench = Path(__file__).resolve().parents[2] / "shared" / "raddiffbench" / "RadDiffBench.jsonl"
    if not bench.is_file():
        pytest.skip("../shared/raddiffbench not present")
    pairs = read_pairs(bench)
    assert len(pairs) == 57
    assert all(len(p.set1_images) > 50 and len(p.set2_images) > 50 for p in pairs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"set1": "a", "set2": "b"', "bench.jsonl:1: not valid JSON"),
        ('{"set1": "a", "set2": "b", "set1_images": [], "set2_images": ["x.png"]}', "bench.jsonl:1: not a pair"),
        ('{"set2": "b", "set1_images": ["y"], "set2_images": ["x.png"]}', "bench.jsonl:1: not a pair"),
    ],
)
def test_jsonl_bad_lines(tmp_path, text, message):
    (tmp_path / "bench.jsonl").write_text(text + "\n")
    with pytest.raises(InputError, match=message):
        read_pairs(tmp_path / "bench.jsonl")


def test_jsonl_index_out_of_range(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"set1": "a", "set2": "b", "set1_images": ["a.png"], "set2_images": ["b.png"]}) + "\n"
    )
    assert len(load_jsonl_pair(tmp_path / "p.jsonl", 0).comparison.set_a) == 1
    with pytest.raises(InputError, match="pair index 3 out of range"):
        load_jsonl_pair(tmp_path / "p.jsonl", 3)


# ------------------------------------------------------------------ folders


def test_folders_with_sidecar_reports(tmp_path):
    for i in range(4):
        _png(tmp_path / "A" / f"x{i}.png", i)
        _png(tmp_path / "B" / "sub" / f"y{i}.png", 10 + i)
    (tmp_path / "A" / "x0.txt").write_text("Right effusion.")
    (tmp_path / "B" / "junk.bin").write_bytes(b"\x00\x01")
    loaded = load_folders(tmp_path / "A", tmp_path / "B")
    comp = loaded.comparison
    assert (comp.set_a.name, comp.set_b.name) == ("A", "B")
    assert len(comp.set_a) == 4 and len(comp.set_b) == 4
    assert comp.set_a.studies[0].report == "Right effusion."
    assert comp.set_b.studies[0].study_id == "sub/y0"
    assert len(loaded.skipped) == 1 and "junk.bin: not an image file" in loaded.skipped[0].reason


def test_folders_missing_and_empty(tmp_path):
    _png(tmp_path / "A" / "x.png")
    (tmp_path / "B").mkdir()
    with pytest.raises(InputError, match=r"nope: folder not found"):
        load_folders(tmp_path / "A", tmp_path / "nope")
    with pytest.raises(InputError, match=r"B: no images found \(empty group\)"):
        load_folders(tmp_path / "A", tmp_path / "B")
    (tmp_path / "C").mkdir()
    (tmp_path / "C" / "readme.doc").write_text("x")
    with pytest.raises(InputError, match="group 'C': empty group"):
        load_folders(tmp_path / "A", tmp_path / "C")


def test_folders_same_image_in_both_groups(tmp_path):
    _png(tmp_path / "A" / "x.png", 1)
    _png(tmp_path / "A" / "y.png", 2)
    _png(tmp_path / "B" / "x.png", 1)  # identical content and name
    with pytest.raises(InputError, match="study 'x' is present in both groups"):
        load_folders(tmp_path / "A", tmp_path / "B")


def test_folders_same_name_different_content_get_prefixed_ids(tmp_path):
    _png(tmp_path / "A" / "x.png", 1)
    _png(tmp_path / "B" / "x.png", 2)
    comp = load_folders(tmp_path / "A", tmp_path / "B").comparison
    assert comp.set_a.studies[0].study_id == "A:x" and comp.set_b.studies[0].study_id == "B:x"


def test_load_comparison_dispatch(tmp_path):
    _png(tmp_path / "A" / "x.png", 1)
    _png(tmp_path / "B" / "y.png", 2)
    assert len(load_comparison(tmp_path / "A", tmp_path / "B").comparison.set_a) == 1
    with pytest.raises(InputError, match="expected two folders, a .csv file or a .jsonl pair file"):
        load_comparison(tmp_path / "A")


# ------------------------------------------------------------------ domain model validation


def test_comparison_rejects_empty_group_and_shared_study(tmp_path):
    img = _png(tmp_path / "a.png")
    study = Study(study_id="s1", image_paths=[img])
    with pytest.raises(InputError, match="group 'B': empty group"):
        Comparison(set_a=StudySet(name="A", studies=[study]), set_b=StudySet(name="B"))
    with pytest.raises(InputError, match="study 's1' is present in both groups"):
        Comparison(set_a=StudySet(name="A", studies=[study]), set_b=StudySet(name="B", studies=[study]))
    with pytest.raises(InputError, match="study id 's1' appears twice"):
        StudySet(name="A", studies=[study, study])


def test_jsonl_and_folders_pick_up_sidecar_reports_and_metadata(tmp_path):
    for group, n in (("A", 2), ("B", 2)):
        for i in range(n):
            img = _png(tmp_path / group / f"{group}{i}.png", 10 * i + (group == "B"))
            img.with_suffix(".txt").write_text(f"FINDINGS: report {group}{i}.")
            img.with_suffix(".json").write_text(
                json.dumps(
                    {
                        "view_position": "AP",
                        "sex": "F",
                        "age": 70 + i,
                        "seed": 5,
                        "findings": [{"x": 1}],
                        "site": "north",
                    }
                )
            )
    line = {"set1": "a", "set2": "b", "set1_images": ["A/A0.png", "A/A1.png"], "set2_images": ["B/B0.png", "B/B1.png"]}
    (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n")
    for comp in (
        load_jsonl_pair(tmp_path / "p.jsonl").comparison,
        load_folders(tmp_path / "A", tmp_path / "B").comparison,
    ):
        study = comp.set_a.studies[1]
        assert study.report == "FINDINGS: report A1."
        assert study.metadata.view_position == "AP" and study.metadata.sex == "F" and study.metadata.age == 71.0
        assert study.metadata.extra == {"site": "north"}  # lists and the render seed are not metadata
    (tmp_path / "A" / "A0.json").write_text("{not json")
    with pytest.raises(InputError, match="A0.json: unreadable metadata sidecar"):
        load_jsonl_pair(tmp_path / "p.jsonl")
