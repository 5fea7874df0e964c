"""SynthDiffBench: spec validation, the default suite, building pairs in RadDiff's JSONL format, caching, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals.synth import PRESETS, PlantedFinding, SynthPairSpec, build_pair, build_suite, default_suite
from raddiff.cli.main import main
from tools.data.folders import load_folders
from tools.data.images import load_image
from tools.data.jsonl_pairs import load_jsonl_pair, read_pairs
from tools.domain import InputError


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "synth-cache"


def _tiny(spec: SynthPairSpec, n: int = 2, size: int = 64) -> SynthPairSpec:
    return spec.model_copy(update={"n_a": n, "n_b": n, "size": size})


def test_bad_specs_raise_clear_errors() -> None:
    with pytest.raises(InputError, match="unknown finding 'flux_capacitor'"):
        SynthPairSpec(name="x", set1="a", set2="b", a=[{"finding": "flux_capacitor"}])  # type: ignore[list-item]
    with pytest.raises(InputError, match="impossible lobe 'LML'"):
        SynthPairSpec(name="x", set1="a", set2="b", a=[{"finding": "consolidation", "attributes": {"lobe": "LML"}}])  # type: ignore[list-item]
    with pytest.raises(InputError, match="purity 1.5 outside 0..1"):
        SynthPairSpec(name="x", set1="a", set2="b", a=[PlantedFinding(finding="nodule")], purity=1.5)
    with pytest.raises(InputError, match="purity -0.1"):
        SynthPairSpec(name="x", set1="a", set2="b", a=[PlantedFinding(finding="nodule")], purity=-0.1)
    with pytest.raises(InputError, match="same findings"):
        SynthPairSpec(name="x", set1="a", set2="b")
    with pytest.raises(InputError, match="background prevalence"):
        SynthPairSpec(name="x", set1="a", set2="b", a=[PlantedFinding(finding="nodule")], background={"mass": 2.0})
    with pytest.raises(InputError, match="pair name"):
        SynthPairSpec(name="a/b", set1="a", set2="b", a=[PlantedFinding(finding="nodule")])


def test_default_suite_mirrors_raddiffbench() -> None:
    suite = default_suite()
    assert len(suite) >= 40
    assert len({s.name for s in suite}) == len(suite)
    assert {s.difficulty for s in suite} == {1, 2, 3}
    keys = {t["finding"] for s in suite for t in s.truth}
    for needed in (
        "pleural_effusion",
        "central_venous_catheter",
        "rib_fracture",
        "cardiomegaly",
        "enteric_tube",
        "pneumothorax",
        "consolidation",
        "nodule",
        "low_lung_volumes",
        "mediastinal_shift",
    ):
        assert needed in keys
    for s in suite:
        assert s.set1.strip() and s.set2.strip() and (s.truth or s.no_difference)
        assert SynthPairSpec.model_validate(s.model_dump(mode="json")) == s
    eff = PRESETS["effusion"]
    assert eff.n_a == eff.n_b == 30
    assert eff.truth == [
        {"finding": "pleural_effusion", "attributes": {"side": "right", "size": "moderate"}, "group": "A"}
    ]


def test_purity_and_background() -> None:
    spec = SynthPairSpec(
        name="p",
        set1="nodule",
        set2="none",
        a=[PlantedFinding(finding="nodule")],
        purity=0.5,
        n_a=10,
        n_b=10,
        background={"cardiomegaly": 1.0, "nodule": 1.0},
    )
    a = [spec.study_findings("A", i, 0) for i in range(10)]
    b = [spec.study_findings("B", i, 0) for i in range(10)]
    assert sum(any(f.finding == "nodule" for f in fs) for fs in a) == 5
    assert not any(f.finding == "nodule" for fs in b for f in fs)  # the defining finding is never background
    assert all(any(f.finding == "cardiomegaly" for f in fs) for fs in a + b)
    assert spec.study_findings("A", 3, 0) == spec.study_findings("A", 3, 0)


def test_build_pair_writes_loadable_jsonl_and_is_cached(tmp_path: Path, cache_dir: Path) -> None:
    spec = _tiny(PRESETS["effusion"]).model_copy(update={"background": {"cardiomegaly": 0.5}})
    out = tmp_path / "bench"
    path = build_pair(spec, out, seed=1, cache_dir=cache_dir)
    record = json.loads(path.read_text())
    assert record["set1"] == "moderate right pleural effusion" and record["difficulty"] == 2
    assert record["truth"][0]["finding"] == "pleural_effusion"
    loaded = load_jsonl_pair(path, 0)
    assert len(loaded.comparison.set_a) == 2 and len(loaded.comparison.set_b) == 2 and not loaded.skipped
    first = out / record["set1_images"][0]
    assert load_image(first).shape == (64, 64)
    assert "pleural effusion" in first.with_suffix(".txt").read_text().lower()
    folders = load_folders(out / "effusion" / "A", out / "effusion" / "B")
    assert all(s.report for s in folders.comparison.set_a.studies)
    mtime = first.stat().st_mtime_ns
    assert build_pair(spec, out, seed=1, cache_dir=cache_dir) == path
    assert first.stat().st_mtime_ns == mtime  # cached: nothing re-rendered
    before = load_image(first)
    build_pair(spec, out, seed=2, cache_dir=cache_dir)  # another seed: a new key, re-rendered
    assert json.loads(path.read_text())["seed"] == 2
    assert not np.array_equal(before, load_image(first))


@pytest.mark.slow
def test_default_suite_builds(tmp_path: Path, cache_dir: Path) -> None:
    specs = [_tiny(s, n=1, size=48).model_copy(update={"background": {}}) for s in default_suite()]
    path = build_suite(tmp_path, specs, seed=0, cache_dir=cache_dir)
    pairs = read_pairs(path)
    assert len(pairs) == len(specs) >= 40
    assert load_jsonl_pair(path, len(pairs) - 1).comparison.set_a.studies


def test_cli_bench_and_render(tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "bench", "--list", str(tmp_path)]) == 0
    assert "effusion_right_moderate" in capsys.readouterr().out
    assert (
        main(
            [
                "--cache-dir",
                str(cache_dir),
                "synth",
                "bench",
                str(tmp_path / "b"),
                "--pairs",
                "cvc_present",
                "-n",
                "1",
                "--size",
                "48",
            ]
        )
        == 0
    )
    assert read_pairs(tmp_path / "b" / "synthdiffbench.jsonl")[0].set1 == "central venous catheter present"
    args = [
        "--cache-dir",
        str(cache_dir),
        "synth",
        "render",
        str(tmp_path / "r"),
        "-n",
        "2",
        "--size",
        "48",
        "--finding",
        "pneumothorax:side=left,size=large",
    ]
    assert main(args) == 0
    assert len(list((tmp_path / "r").glob("*.png"))) == 2
    assert "left pneumothorax" in next((tmp_path / "r").glob("*.txt")).read_text().lower()
    assert main(["--cache-dir", str(cache_dir), "synth", "render", str(tmp_path / "r"), "--finding", "x:y=z"]) == 2
    assert main(["--cache-dir", str(cache_dir), "synth", "bench", str(tmp_path), "--preset", "nope"]) == 2
