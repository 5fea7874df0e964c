"""Benchmark suites: RadDiffBench (data shipped here, images from MIMIC-CXR), SynthDiffBench, JSONL pair files.

A :class:`Suite` is a list of :class:`BenchPair` (id, ground-truth texts, difficulty, optional structured
truth) plus where their images and reports live. :meth:`BenchPair.load` turns a pair into a validated
comparison through :func:`tools.data.jsonl_pairs.pair_to_comparison` (MIMIC-CXR layout, sidecar reports).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tools.data.jsonl_pairs import PairSpec, pair_to_comparison, read_pairs
from tools.data.studies import LoadedComparison
from tools.domain import InputError

log = logging.getLogger(__name__)

SUITES = ("raddiffbench", "synthdiffbench", "iureports")
RADDIFF_JSONL = "RadDiffBench.jsonl"
RADDIFF_DIFFICULTY = "RadDiffBenchDifficulty.csv"


def raddiff_data_dir() -> Path:
    """The package-data folder holding the RadDiffBench definition (JSONL, difficulty CSV, license)."""
    return Path(str(resources.files("evals").joinpath("data", "raddiffbench")))


def slug(text: str, max_len: int = 40) -> str:
    """A file-name-safe slug of ``text``."""
    out = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return out[:max_len].rstrip("_") or "pair"


@dataclass
class BenchPair:
    """One pair of a suite: id, ground-truth texts, difficulty, structured truth (SynthDiffBench) and roots."""

    pair_id: str
    index: int
    spec: PairSpec
    difficulty: int | None = None
    truth: list[dict[str, Any]] | None = None
    purity: float | None = None
    image_root: Path | None = None
    reports_root: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def set1(self) -> str:
        """Ground-truth description of group A."""
        return self.spec.set1.strip()

    @property
    def set2(self) -> str:
        """Ground-truth description of group B."""
        return self.spec.set2.strip()

    def load(self, decode_images: bool = False) -> LoadedComparison:
        """The pair as a validated comparison (missing images are skipped and reported)."""
        return pair_to_comparison(
            self.spec, image_root=self.image_root, reports_root=self.reports_root, decode_images=decode_images
        )


@dataclass
class Suite:
    """A named list of pairs."""

    name: str
    pairs: list[BenchPair]
    source: str = ""

    def select(self, pairs: list[str] | None = None, limit: int | None = None) -> list[BenchPair]:
        """The pairs named in ``pairs`` (ids, or 0-based indices as strings) in suite order, then ``limit``."""
        chosen = self.pairs
        if pairs:
            wanted = {p.strip() for p in pairs if p.strip()}
            known = {p.pair_id for p in self.pairs} | {str(p.index) for p in self.pairs}
            unknown = sorted(wanted - known)
            if unknown:
                raise InputError(f"suite {self.name!r}: unknown pair {unknown[0]!r} (see `raddiff bench list`)")
            chosen = [p for p in self.pairs if p.pair_id in wanted or str(p.index) in wanted]
        if limit is not None:
            if limit < 1:
                raise InputError(f"--limit {limit}: must be at least 1")
            chosen = chosen[:limit]
        return chosen


def read_difficulty(path: Path) -> dict[int, int]:
    """RadDiffBench's difficulty CSV: pair index -> 1 (easy), 2 (medium) or 3 (hard)."""
    if not path.is_file():
        raise InputError(f"{path}: difficulty CSV not found")
    out: dict[int, int] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                out[int(row["index"])] = int(float(row["difficulty"]))
            except (KeyError, ValueError):
                raise InputError(f"{path}: row {row!r} has no integer index/difficulty") from None
    return out


def raddiffbench(
    mimic_root: Path | None = None, reports_root: Path | None = None, data_dir: Path | None = None
) -> Suite:
    """RadDiffBench (57 pairs): images under ``mimic_root`` (or its ``files/``), reports under ``reports_root``."""
    base = data_dir or raddiff_data_dir()
    specs = read_pairs(base / RADDIFF_JSONL)
    difficulty = read_difficulty(base / RADDIFF_DIFFICULTY)
    if mimic_root is not None and not Path(mimic_root).is_dir():
        raise InputError(f"--mimic-root {mimic_root}: folder not found")
    if reports_root is not None and not Path(reports_root).is_dir():
        raise InputError(f"--reports-root {reports_root}: folder not found")
    pairs = [
        BenchPair(
            pair_id=f"{i:02d}_{slug(spec.set1, 32)}",
            index=i,
            spec=spec,
            difficulty=difficulty.get(i),
            image_root=mimic_root,
            reports_root=reports_root,
        )
        for i, spec in enumerate(specs)
    ]
    return Suite("raddiffbench", pairs, source=str(base / RADDIFF_JSONL))


def jsonl_suite(path: Path, image_root: Path | None = None, reports_root: Path | None = None) -> Suite:
    """Any RadDiff JSONL pair file; ``name``, ``difficulty``, ``truth`` and ``purity`` fields are used if present."""
    path = Path(path)
    specs = read_pairs(path)
    pairs = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        extra = spec.model_extra or {}
        name = str(extra.get("name") or f"{i:02d}_{slug(spec.set1, 32)}")
        pair_id = slug(name, 64) if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) else name
        if pair_id in seen:
            pair_id = f"{pair_id}_{i}"
        seen.add(pair_id)
        difficulty = extra.get("difficulty")
        truth = extra.get("truth")
        purity = extra.get("purity")
        pairs.append(
            BenchPair(
                pair_id=pair_id,
                index=i,
                spec=spec,
                difficulty=int(difficulty) if isinstance(difficulty, int | float) else None,
                truth=truth if isinstance(truth, list) else None,
                purity=float(purity) if isinstance(purity, int | float) else None,
                image_root=image_root or path.resolve().parent,
                reports_root=reports_root,
                extra={
                    k: v
                    for k, v in extra.items()
                    if k in ("name", "seed", "generator", "nuisance", "sweep", "kind", "heldout", "covarying")
                },
            )
        )
    return Suite(path.stem, pairs, source=str(path))


def synthdiffbench(
    out_dir: Path,
    *,
    n: int = 20,
    size: int = 256,
    seed: int = 0,
    names: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Suite:
    """Build (or reuse the cached) SynthDiffBench default suite under ``out_dir`` and load it as a suite.

    ``names`` builds only those pairs (the others are not rendered).
    """
    from evals.synth.bench import build_suite
    from evals.synth.pairs import default_suite

    specs = default_suite(n=n, size=size)
    if names:
        known = {s.name for s in specs}
        unknown = sorted(set(names) - known)
        if unknown:
            raise InputError(f"synthdiffbench: unknown pair {unknown[0]!r}")
        specs = [s for s in specs if s.name in set(names)]
    folder = Path(out_dir) / f"n{n}_s{size}_seed{seed}"
    jsonl = build_suite(folder, specs, seed, cache_dir=cache_dir, progress=progress)
    suite = jsonl_suite(jsonl)
    suite.name = "synthdiffbench"
    return suite


def load_suite(
    name: str,
    *,
    mimic_root: Path | None = None,
    reports_root: Path | None = None,
    image_root: Path | None = None,
    synth_dir: Path | None = None,
    synth_n: int = 20,
    synth_size: int = 256,
    seed: int = 0,
    names: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Suite:
    """A suite by name (``raddiffbench``, ``synthdiffbench``, ``iureports``) or a path to a JSONL pair file."""
    if name == "raddiffbench":
        return raddiffbench(mimic_root, reports_root)
    if name == "iureports":
        from evals.bench.iureports import build_suite
        from tools.settings import default_cache_dir

        suite = jsonl_suite(build_suite((cache_dir or default_cache_dir()) / "iureports"))
        suite.name = "iureports"
        return suite
    if name == "synthdiffbench":
        from tools.settings import default_cache_dir

        base = synth_dir or (cache_dir or default_cache_dir()) / "synthdiffbench"
        return synthdiffbench(
            base, n=synth_n, size=synth_size, seed=seed, names=names, cache_dir=cache_dir, progress=progress
        )
    path = Path(name)
    if path.suffix.lower() in (".jsonl", ".json") or path.is_file():
        return jsonl_suite(path, image_root=image_root or mimic_root, reports_root=reports_root)
    raise InputError(f"suite {name!r}: unknown; use raddiffbench, synthdiffbench or a .jsonl pair file")
