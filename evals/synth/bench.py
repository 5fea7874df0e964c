"""SynthDiffBench: pairs of study sets that differ by planted findings, written in RadDiff's JSONL pair format.

A :class:`SynthPairSpec` says what group A has (``a``), what group B has (``b``, often nothing), which
background findings both share (``background``: finding -> prevalence), the purity (fraction of A that really
has A's findings; the rest look like B), set sizes and difficulty, plus ground-truth texts in RadDiffBench's
``set1``/``set2`` style and structured truth. :func:`build_pair` writes the PNGs, a sidecar ``.txt`` report
next to each, and ``<out>/<name>.jsonl`` whose image paths are relative to ``<out>``, so
``tools.data.jsonl_pairs.load_jsonl_pair(path, 0)`` and ``load_folders(<out>/<name>/A, <out>/<name>/B)`` both load it.
Outputs are cached by a key of spec + seed + size: a second call returns at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evals.synth.findings import PlantedFinding
from tools.domain import InputError
from tools.vocabulary import PLANTABLE_FINDINGS

log = logging.getLogger(__name__)

BENCH_VERSION = 1
Progress = Callable[[int, int], None]

# realistic background prevalence (both groups) for training streams and benchmark pairs
DEFAULT_BACKGROUND: dict[str, float] = {
    "cardiomegaly": 0.12,
    "pleural_effusion": 0.08,
    "atelectasis": 0.08,
    "consolidation": 0.05,
    "nodule": 0.04,
    "pulmonary_edema": 0.04,
    "low_lung_volumes": 0.07,
    "central_venous_catheter": 0.05,
    "picc": 0.04,
    "enteric_tube": 0.04,
    "endotracheal_tube": 0.03,
    "pacemaker": 0.04,
}
EXCLUSIVE = [{"low_lung_volumes", "hyperinflation"}, {"central_venous_catheter", "picc"}]


def _fill_random(finding: PlantedFinding, rng: np.random.Generator) -> PlantedFinding:
    """Fill every attribute the spec left open with a random allowed value."""
    attrs = dict(finding.attributes)
    for name, values in PLANTABLE_FINDINGS[finding.finding].attributes.items():
        if name not in attrs:
            attrs[name] = str(values[int(rng.integers(len(values)))])
    return PlantedFinding(finding=finding.finding, attributes=attrs)


def random_findings(
    rng: np.random.Generator,
    prevalence: dict[str, float] | None = None,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[PlantedFinding]:
    """A realistic random mix of findings (each present with its prevalence, attributes random)."""
    prevalence = DEFAULT_BACKGROUND if prevalence is None else prevalence
    chosen: list[PlantedFinding] = []
    keys: set[str] = set(exclude)
    for key in sorted(prevalence):
        p = prevalence[key]
        if rng.random() >= p or key in keys:
            continue
        if any(key in group and (group - {key}) & keys for group in EXCLUSIVE):
            continue
        chosen.append(_fill_random(PlantedFinding(finding=key), rng))
        keys.add(key)
    return chosen


class SynthPairSpec(BaseModel):
    """One SynthDiffBench pair: what is in A, in B, shared background, purity, sizes, truth texts."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Slug, used for folder and file names.")
    set1: str = Field(min_length=1, description="Ground-truth description of group A (RadDiffBench style).")
    set2: str = Field(min_length=1, description="Ground-truth description of group B.")
    a: list[PlantedFinding] = Field(default_factory=list, description="Findings every pure A study has.")
    b: list[PlantedFinding] = Field(default_factory=list, description="Findings every B study has.")
    background: dict[str, float] = Field(default_factory=dict, description="finding -> prevalence in both groups.")
    purity: float = Field(default=1.0, description="Fraction of A that really has A's findings (0..1).")
    n_a: int = Field(default=20, ge=1, le=2000)
    n_b: int = Field(default=20, ge=1, le=2000)
    difficulty: int = Field(default=2, ge=1, le=3, description="1 easy, 2 medium, 3 hard.")
    size: int = Field(default=256, ge=32, le=2048, description="Image size in pixels.")
    view: str | None = Field(default=None, description="Force 'PA' or 'AP'; None mixes.")
    no_difference: bool = Field(
        default=False, description="A pair whose groups do not differ: the same findings on both sides."
    )

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise InputError(f"pair name {value!r}: use letters, digits, '_', '-', '.' only")
        return value

    @field_validator("purity")
    @classmethod
    def _purity(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise InputError(f"purity {value} outside 0..1")
        return value

    @field_validator("background")
    @classmethod
    def _background(cls, value: dict[str, float]) -> dict[str, float]:
        for key, p in value.items():
            PlantedFinding(finding=key)
            if not 0.0 <= p <= 1.0:
                raise InputError(f"background prevalence of {key!r} is {p}, outside 0..1")
        return value

    @field_validator("view")
    @classmethod
    def _view(cls, value: str | None) -> str | None:
        if value not in (None, "PA", "AP"):
            raise InputError(f"view {value!r} must be 'PA' or 'AP'")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> SynthPairSpec:
        same = [f.model_dump() for f in self.a] == [f.model_dump() for f in self.b]
        if same and not self.no_difference:
            raise InputError(f"pair {self.name!r}: groups A and B have the same findings")
        if self.no_difference and not same:
            raise InputError(f"pair {self.name!r}: a no-difference pair needs the same findings in A and B")
        return self

    @property
    def truth(self) -> list[dict[str, Any]]:
        """Structured ground truth: finding key, attributes given by the spec, and its group."""
        out = [{"finding": f.finding, "attributes": dict(f.attributes), "group": "A"} for f in self.a]
        out += [{"finding": f.finding, "attributes": dict(f.attributes), "group": "B"} for f in self.b]
        return out

    def _new_defaults(self) -> set[str]:
        """Fields added after version 1 that are at their default (left out of the cache key)."""
        return {"no_difference"} if not self.no_difference else set()

    def key(self, seed: int) -> str:
        """Cache key of this spec built with ``seed``."""
        # a field at its default is left out, so adding one keeps the images of every existing spec
        blob = json.dumps(
            [BENCH_VERSION, self.model_dump(mode="json", exclude=self._new_defaults()), seed], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def study_findings(self, group: str, index: int, seed: int) -> list[PlantedFinding]:
        """The findings of study ``index`` of ``group`` ("A"/"B"): its group's findings + background."""
        rng = np.random.default_rng([seed, int(self.key(seed)[:8], 16), 0 if group == "A" else 1, index])
        n_pure = int(round(self.purity * self.n_a))
        own = self.a if (group == "A" and index < n_pure) else self.b
        own_filled = [_fill_random(f, rng) for f in own]
        defining = {f.finding for f in (*self.a, *self.b)}
        background = random_findings(rng, self.background, exclude=defining)
        return own_filled + background


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def pair_record(spec: SynthPairSpec, seed: int, set1_images: list[str], set2_images: list[str]) -> dict[str, Any]:
    """The JSONL record of a built pair (RadDiff fields first, then SynthDiffBench extras)."""
    return {
        "set1": spec.set1,
        "set2": spec.set2,
        "set1_images": set1_images,
        "set2_images": set2_images,
        "name": spec.name,
        "difficulty": spec.difficulty,
        "purity": spec.purity,
        "truth": spec.truth,
        "seed": seed,
        "generator": f"SynthDiffBench v{BENCH_VERSION}",
        "spec": spec.model_dump(mode="json"),
    }


def build_pair(
    spec: SynthPairSpec,
    out_dir: Path | str,
    seed: int = 0,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Render and write one pair; returns ``<out_dir>/<name>.jsonl`` (cached by spec + seed)."""
    from evals.synth.render import get_renderer

    out_dir = Path(out_dir)
    jsonl = out_dir / f"{spec.name}.jsonl"
    manifest = out_dir / spec.name / "manifest.json"
    key = spec.key(seed)
    if jsonl.is_file() and manifest.is_file():
        try:
            info = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            info = {}
        if info.get("key") == key and all((out_dir / p).is_file() for p in info.get("files", [])):
            if progress:
                progress(spec.n_a + spec.n_b, spec.n_a + spec.n_b)
            return jsonl
    renderer = get_renderer(cache_dir)
    total = spec.n_a + spec.n_b
    done = 0
    images: dict[str, list[str]] = {"A": [], "B": []}
    for group, n in (("A", spec.n_a), ("B", spec.n_b)):
        for index in range(n):
            findings = spec.study_findings(group, index, seed)
            img_seed = int(hashlib.sha256(f"{key}:{group}:{index}".encode()).hexdigest()[:8], 16)
            sample = renderer.render(findings, img_seed, spec.size, spec.view)
            rel = f"{spec.name}/{group}/{spec.name}_{group.lower()}{index:03d}.png"
            _write_atomic(out_dir / rel, _png_bytes(sample.image))
            _write_atomic((out_dir / rel).with_suffix(".txt"), sample.report.encode())
            _write_atomic(
                (out_dir / rel).with_suffix(".json"),
                json.dumps({k: v for k, v in sample.metadata.items() if k != "patient"}).encode(),
            )
            images[group].append(rel)
            done += 1
            if progress:
                progress(done, total)
    record = pair_record(spec, seed, images["A"], images["B"])
    _write_atomic(jsonl, (json.dumps(record) + "\n").encode())
    files = [*images["A"], *images["B"]]
    _write_atomic(manifest, json.dumps({"key": key, "files": files}).encode())
    return jsonl


def build_suite(
    out_dir: Path | str,
    specs: list[SynthPairSpec] | None = None,
    seed: int = 0,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Build every pair (default: :func:`default_suite`) and write ``<out_dir>/synthdiffbench.jsonl``."""
    out_dir = Path(out_dir)
    specs = default_suite() if specs is None else specs
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"pair name {dup[0]!r} appears twice in the suite")
    total = sum(s.n_a + s.n_b for s in specs)
    offset = 0
    lines = []
    for spec in specs:
        base = offset

        def sub(done: int, _n: int, base: int = base) -> None:
            if progress:
                progress(base + done, total)

        path = build_pair(spec, out_dir, seed, cache_dir=cache_dir, progress=sub)
        lines.append(path.read_text().strip())
        offset += spec.n_a + spec.n_b
    suite = out_dir / "synthdiffbench.jsonl"
    _write_atomic(suite, ("\n".join(lines) + "\n").encode())
    return suite


# ------------------------------------------------------------------ the default suite


def _f(key: str, **attrs: str) -> PlantedFinding:
    return PlantedFinding(finding=key, attributes=attrs)


def _spec(
    name: str, set1: str, set2: str, a: list[PlantedFinding], b: list[PlantedFinding], d: int, **kw: Any
) -> SynthPairSpec:
    kw.setdefault("background", DEFAULT_BACKGROUND)
    return SynthPairSpec(name=name, set1=set1, set2=set2, a=a, b=b, difficulty=d, **kw)


def default_suite(n: int = 20, size: int = 256) -> list[SynthPairSpec]:
    """The default SynthDiffBench suite: 47 pairs mirroring the RadDiffBench conditions that can be simulated, then
    the :func:`trust_pairs` (8 with two or three planted differences, 10 whose groups do not differ)."""
    eff, card, ptx = "pleural_effusion", "cardiomegaly", "pneumothorax"
    specs = [
        _spec(
            "effusion_right_moderate",
            "moderate right pleural effusion",
            "no pleural effusion",
            [_f(eff, side="right", size="moderate")],
            [],
            2,
        ),
        _spec(
            "effusion_bilateral_small",
            "bilateral small pleural effusion",
            "no pleural effusion or pneumothorax",
            [_f(eff, side="bilateral", size="small")],
            [],
            2,
        ),
        _spec(
            "effusion_right_large",
            "large right pleural effusion",
            "no pleural effusion",
            [_f(eff, side="right", size="large")],
            [],
            1,
        ),
        _spec(
            "effusion_left_large_vs_small",
            "large left pleural effusion",
            "small left pleural effusion",
            [_f(eff, side="left", size="large")],
            [_f(eff, side="left", size="small")],
            2,
        ),
        _spec(
            "effusion_impure",
            "moderate right pleural effusion",
            "no pleural effusion",
            [_f(eff, side="right", size="moderate")],
            [],
            3,
            purity=0.6,
        ),
        _spec(
            "cvc_present",
            "central venous catheter present",
            "no central venous catheter",
            [_f("central_venous_catheter")],
            [],
            1,
        ),
        _spec(
            "cvc_junction_vs_high",
            "central venous catheter tip at the cavoatrial junction",
            "central venous catheter tip too high, in the brachiocephalic vein",
            [_f("central_venous_catheter", tip="cavoatrial_junction")],
            [_f("central_venous_catheter", tip="too_high")],
            3,
        ),
        _spec("rib_fracture", "displaced rib fracture", "no displaced rib fracture", [_f("rib_fracture")], [], 3),
        _spec(
            "rib_fracture_left",
            "displaced left rib fracture",
            "no rib fracture",
            [_f("rib_fracture", side="left")],
            [],
            3,
        ),
        _spec(
            "edema_moderate",
            "moderate pulmonary edema",
            "no pulmonary edema",
            [_f("pulmonary_edema", severity="moderate")],
            [],
            2,
        ),
        _spec(
            "edema_severe_vs_mild",
            "severe pulmonary edema",
            "mild pulmonary edema",
            [_f("pulmonary_edema", severity="severe")],
            [_f("pulmonary_edema", severity="mild")],
            2,
        ),
        _spec(
            "cardiomegaly_mild_vs_severe",
            "mild cardiomegaly",
            "severe cardiomegaly",
            [_f(card, severity="mild")],
            [_f(card, severity="severe")],
            2,
        ),
        _spec(
            "cardiomegaly_moderate",
            "moderate cardiomegaly",
            "normal cardiac silhouette",
            [_f(card, severity="moderate")],
            [],
            1,
        ),
        _spec("cardiomegaly_mild", "heart mildly enlarged", "heart size normal", [_f(card, severity="mild")], [], 3),
        _spec(
            "cardiomegaly_severe",
            "enlarged cardiac silhouette",
            "normal cardiac silhouette",
            [_f(card, severity="severe")],
            [],
            1,
        ),
        _spec(
            "ng_bronchus_vs_stomach",
            "NG tube in bronchus",
            "NG tube in stomach",
            [_f("enteric_tube", tip="bronchus")],
            [_f("enteric_tube", tip="stomach")],
            2,
        ),
        _spec(
            "ng_coiled_vs_stomach",
            "enteric tube coiled in the esophagus",
            "enteric tube in the stomach",
            [_f("enteric_tube", tip="esophagus_coiled")],
            [_f("enteric_tube", tip="stomach")],
            2,
        ),
        _spec(
            "enteric_present",
            "enteric tube terminating below the diaphragm",
            "no enteric tube",
            [_f("enteric_tube", tip="stomach")],
            [],
            1,
        ),
        _spec(
            "low_volumes_perihilar",
            "hypoinflated lungs with bilateral perihilar interstitial opacity",
            "lungs well inflated and clear",
            [_f("low_lung_volumes"), _f("pulmonary_edema", severity="mild")],
            [],
            2,
            background={},
        ),
        _spec(
            "cardiomegaly_with_edema",
            "cardiomegaly with prominent pulmonary edema",
            "cardiomegaly with no pulmonary edema",
            [_f(card, severity="moderate"), _f("pulmonary_edema", severity="moderate")],
            [_f(card, severity="moderate")],
            2,
        ),
        _spec(
            "chest_tube_left",
            "left pleural chest tube in place",
            "no chest tube",
            [_f("chest_tube", side="left")],
            [],
            1,
        ),
        _spec(
            "chest_tube_right", "right chest tube in place", "no chest tube", [_f("chest_tube", side="right")], [], 1
        ),
        _spec(
            "ptx_left_moderate",
            "moderate left pneumothorax",
            "no pneumothorax",
            [_f(ptx, side="left", size="moderate")],
            [],
            2,
        ),
        _spec(
            "ptx_right_large",
            "large right pneumothorax",
            "no pneumothorax",
            [_f(ptx, side="right", size="large")],
            [],
            1,
        ),
        _spec("ptx_small", "small pneumothorax", "no pneumothorax", [_f(ptx, size="small")], [], 3),
        _spec("picc_low_svc", "PICC terminating in the low SVC", "no PICC", [_f("picc", tip="low_svc")], [], 1),
        _spec(
            "picc_low_vs_high",
            "PICC tip in the low SVC",
            "PICC tip too high",
            [_f("picc", tip="low_svc")],
            [_f("picc", tip="too_high")],
            3,
        ),
        _spec(
            "lul_opacity",
            "confluent left upper lobe opacity",
            "clear left upper lobe",
            [_f("consolidation", lobe="LUL")],
            [],
            2,
        ),
        _spec(
            "rml_pneumonia",
            "pneumonia in the right middle lobe",
            "no pneumonia",
            [_f("consolidation", lobe="RML")],
            [],
            2,
        ),
        _spec(
            "rul_consolidation",
            "dense right upper lobe airspace consolidation",
            "no airspace consolidation",
            [_f("consolidation", lobe="RUL")],
            [],
            1,
        ),
        _spec(
            "rll_pneumonia",
            "right lower lobe pneumonia",
            "clear lungs without consolidation",
            [_f("consolidation", lobe="RLL")],
            [],
            2,
        ),
        _spec(
            "lll_opacity",
            "opacity in the left lower lobe",
            "no left lower lobe opacity",
            [_f("consolidation", lobe="LLL")],
            [],
            2,
        ),
        _spec(
            "any_consolidation",
            "opacity concerning for pneumonia",
            "no evidence of pneumonia",
            [_f("consolidation")],
            [],
            2,
        ),
        _spec("nodule_small", "small pulmonary nodule", "no pulmonary nodule", [_f("nodule", size="small")], [], 3),
        _spec("nodule_large", "pulmonary nodule", "no pulmonary nodule", [_f("nodule", size="large")], [], 2),
        _spec(
            "mass_right_upper",
            "right apical mass",
            "no apical opacity",
            [_f("mass", side="right", zone="upper")],
            [],
            2,
        ),
        _spec("mass_large", "large lung mass", "no lung mass", [_f("mass", size="large")], [], 1),
        _spec(
            "hyperinflation",
            "hyperinflated lungs with flattening of the hemidiaphragms",
            "normal lung inflation",
            [_f("hyperinflation")],
            [],
            2,
            background={},
        ),
        _spec(
            "low_lung_volumes",
            "low lung volumes",
            "normal lung volumes",
            [_f("low_lung_volumes")],
            [],
            3,
            background={},
        ),
        _spec(
            "basal_atelectasis",
            "basal atelectasis",
            "clear basal parenchyma",
            [_f("atelectasis", pattern="basal")],
            [],
            3,
        ),
        _spec(
            "platelike_atelectasis",
            "plate-like atelectasis",
            "no atelectasis",
            [_f("atelectasis", pattern="plate-like")],
            [],
            3,
        ),
        _spec(
            "mediastinal_shift_right",
            "rightward mediastinal shift",
            "no mediastinal shift",
            [_f("mediastinal_shift", direction="right")],
            [],
            2,
        ),
        _spec(
            "mediastinal_shift_left",
            "leftward mediastinal shift",
            "no mediastinal shift",
            [_f("mediastinal_shift", direction="left")],
            [],
            2,
        ),
        _spec(
            "ett_bronchus_vs_carina",
            "endotracheal tube in the right main bronchus",
            "endotracheal tube above the carina",
            [_f("endotracheal_tube", tip="right_main_bronchus")],
            [_f("endotracheal_tube", tip="above_carina")],
            2,
        ),
        _spec(
            "ett_present",
            "endotracheal tube in place",
            "no endotracheal tube",
            [_f("endotracheal_tube", tip="above_carina")],
            [],
            1,
        ),
        _spec("pacemaker_present", "pacemaker with leads", "no pacemaker", [_f("pacemaker")], [], 1),
        _spec(
            "edema_with_effusions",
            "moderate pulmonary edema with bilateral pleural effusion",
            "minimal pulmonary edema without pleural effusion",
            [_f("pulmonary_edema", severity="moderate"), _f(eff, side="bilateral", size="small")],
            [_f("pulmonary_edema", severity="mild")],
            2,
        ),
    ]
    specs += trust_pairs()
    return [s.model_copy(update={"n_a": n, "n_b": n, "size": size}) for s in specs]


def trust_pairs() -> list[SynthPairSpec]:
    """Pairs that test whether a run reports only real, distinct differences: two or three planted differences
    (each must be reported), and pairs whose groups do not differ (the same findings on both sides, background
    included: the right answer is "no independent difference")."""
    eff, card, edema = "pleural_effusion", "cardiomegaly", "pulmonary_edema"
    multi = [
        _spec(
            "multi_pacemaker_edema",
            "pacemaker and moderate pulmonary edema",
            "no pacemaker, no pulmonary edema",
            [_f("pacemaker"), _f(edema, severity="moderate")],
            [],
            2,
        ),
        _spec(
            "multi_effusion_vs_cvc",
            "moderate right pleural effusion",
            "central venous catheter",
            [_f(eff, side="right", size="moderate")],
            [_f("central_venous_catheter")],
            2,
        ),
        _spec(
            "multi_cardiomegaly_effusions",
            "moderate cardiomegaly with small bilateral pleural effusions",
            "normal heart size, no pleural effusion",
            [_f(card, severity="moderate"), _f(eff, side="bilateral", size="small")],
            [],
            2,
        ),
        _spec(
            "multi_ett_enteric",
            "endotracheal tube and enteric tube",
            "no tubes",
            [_f("endotracheal_tube", tip="above_carina"), _f("enteric_tube", tip="stomach")],
            [],
            2,
        ),
        _spec(
            "multi_ptx_chest_tube",
            "moderate left pneumothorax with a left chest tube",
            "no pneumothorax, no chest tube",
            [_f("pneumothorax", side="left", size="moderate"), _f("chest_tube", side="left")],
            [],
            2,
        ),
        _spec(
            "multi3_pacemaker_cardiomegaly_edema",
            "pacemaker, moderate cardiomegaly and moderate pulmonary edema",
            "no pacemaker, normal heart size, no edema",
            [_f("pacemaker"), _f(card, severity="moderate"), _f(edema, severity="moderate")],
            [],
            3,
        ),
        _spec(
            "multi3_icu_lines",
            "endotracheal tube, enteric tube and central venous catheter",
            "no tubes or lines",
            [
                _f("endotracheal_tube", tip="above_carina"),
                _f("enteric_tube", tip="stomach"),
                _f("central_venous_catheter"),
            ],
            [],
            3,
        ),
        _spec(
            "multi3_effusion_consolidation_vs_nodule",
            "moderate right pleural effusion and left lower lobe consolidation",
            "large pulmonary nodule",
            [_f(eff, side="right", size="moderate"), _f("consolidation", lobe="LLL")],
            [_f("nodule", size="large")],
            3,
        ),
    ]
    same: list[tuple[str, str, list[PlantedFinding]]] = [
        ("null_background", "no defining finding", []),
        ("null_effusion", "moderate right pleural effusion", [_f(eff, side="right", size="moderate")]),
        ("null_cvc", "central venous catheter", [_f("central_venous_catheter")]),
        ("null_cardiomegaly", "moderate cardiomegaly", [_f(card, severity="moderate")]),
        ("null_edema", "mild pulmonary edema", [_f(edema, severity="mild")]),
        ("null_enteric", "enteric tube in the stomach", [_f("enteric_tube", tip="stomach")]),
        ("null_ett", "endotracheal tube above the carina", [_f("endotracheal_tube", tip="above_carina")]),
        ("null_pacemaker", "pacemaker", [_f("pacemaker")]),
        ("null_pneumothorax", "moderate left pneumothorax", [_f("pneumothorax", side="left", size="moderate")]),
        ("null_consolidation", "right lower lobe consolidation", [_f("consolidation", lobe="RLL")]),
    ]
    null = [_spec(name, text, text, findings, list(findings), 2, no_difference=True) for name, text, findings in same]
    return multi + null


def _presets() -> dict[str, SynthPairSpec]:
    suite = {s.name: s for s in default_suite(n=30, size=256)}
    return {
        "effusion": suite["effusion_right_moderate"].model_copy(update={"name": "effusion"}),
        "cardiomegaly": suite["cardiomegaly_moderate"].model_copy(update={"name": "cardiomegaly"}),
        "pneumothorax": suite["ptx_left_moderate"].model_copy(update={"name": "pneumothorax"}),
        "cvc": suite["cvc_present"].model_copy(update={"name": "cvc"}),
        "ng_tube": suite["ng_bronchus_vs_stomach"].model_copy(update={"name": "ng_tube"}),
    }


PRESETS: dict[str, SynthPairSpec] = _presets()
"""Ready-made pairs for the demo and tests: 'effusion' (moderate right effusion vs none, 30 per group),
'cardiomegaly', 'pneumothorax', 'cvc', 'ng_tube'."""
