"""SynthDiffBench: pairs of study sets that differ by planted findings, written in RadDiff's JSONL pair format.

A :class:`SynthPairSpec` says what group A has (``a``), what group B has (``b``, often nothing), which
background findings both share (``background``: finding -> prevalence), the purity (fraction of A that really
has A's findings; the rest look like B), set sizes and difficulty, plus ground-truth texts in RadDiffBench's
``set1``/``set2`` style and structured truth. :func:`build_pair` writes the PNGs, a sidecar ``.txt`` report
next to each, and ``<out>/<name>.jsonl`` whose image paths are relative to ``<out>``, so
``tools.data.jsonl_pairs.load_jsonl_pair(path, 0)`` and ``load_folders(<out>/<name>/A, <out>/<name>/B)`` both load it.
Outputs are cached by a key of spec + seed + size: a second call returns at once.

The pairs themselves (the default suite, the trust pairs, the presets) are :mod:`evals.synth.pairs`.
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
    """Build every pair (default: :func:`evals.synth.pairs.default_suite`) and write
    ``<out_dir>/synthdiffbench.jsonl``."""
    from evals.synth.pairs import default_suite

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
