"""RadDiff's JSONL pair format (RadDiffBench): ``set1``, ``set2``, ``set1_images``, ``set2_images`` (or
``set1_reports`` / ``set2_reports``), reports found in the MIMIC-CXR layout from the image path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.data.studies import (
    LoadedComparison,
    check_image,
    finalise,
    mimic_metadata,
    mimic_report_path,
    read_text,
    report_study,
    resolve_image,
    sidecar_metadata,
)
from tools.domain import InputError, SkippedItem, Study, StudyMetadata, StudySet


class ReportEntry(BaseModel):
    """One report-only study of a JSONL pair: report text or a report file, and optionally its id."""

    model_config = ConfigDict(extra="forbid")

    study_id: str | None = None
    report: str | None = None
    report_path: str | None = None


class PairSpec(BaseModel):
    """One line of a RadDiff JSONL pair file (RadDiffBench and SynthDiffBench use this format).

    Report-only pairs give ``set1_reports`` / ``set2_reports`` instead of images: each entry is a path to a
    report file or an object ``{"study_id", "report" | "report_path"}``. A set has images or reports, not both.
    """

    model_config = ConfigDict(extra="allow")

    set1: str
    set2: str
    set1_images: list[str] = Field(default_factory=list)
    set2_images: list[str] = Field(default_factory=list)
    set1_reports: list[str | ReportEntry] = Field(default_factory=list)
    set2_reports: list[str | ReportEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _images_or_reports(self) -> PairSpec:
        for name, images, reports in (
            ("set1", self.set1_images, self.set1_reports),
            ("set2", self.set2_images, self.set2_reports),
        ):
            if not images and not reports:
                raise ValueError(f"{name}: needs {name}_images or {name}_reports (empty set)")
            if images and reports:
                raise ValueError(f"{name}: gives both {name}_images and {name}_reports; use one of them")
        return self


def read_pairs(jsonl_path: Path | str) -> list[PairSpec]:
    """Read a RadDiff JSONL pair file (one pair per line); a bad line is an error naming its number."""
    jsonl_path = Path(jsonl_path)
    if not jsonl_path.is_file():
        raise InputError(f"{jsonl_path}: JSONL file not found")
    pairs = []
    try:
        raw = jsonl_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{jsonl_path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{jsonl_path}: cannot read ({exc.strerror or exc})") from None
    for line_no, line in enumerate(raw.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            pairs.append(PairSpec.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{jsonl_path}:{line_no}: not valid JSON ({exc.msg})") from None
        except ValueError as exc:
            first = [part.strip() for part in str(exc).splitlines() if part.strip()]
            detail = " ".join(first[1:3]) if len(first) > 1 else (first[0] if first else type(exc).__name__)
            raise InputError(f"{jsonl_path}:{line_no}: not a pair record ({detail})") from None
    if not pairs:
        raise InputError(f"{jsonl_path}: no pairs in file")
    return pairs


def pair_to_comparison(
    pair: PairSpec,
    *,
    image_root: Path | None = None,
    reports_root: Path | None = None,
    decode_images: bool = False,
    allowed_roots: Sequence[Path] | None = None,
    set1_name: str | None = None,
    set2_name: str | None = None,
) -> LoadedComparison:
    """Turn one JSONL pair into a comparison; images resolve under ``image_root`` (or ``image_root/files``).

    A report is attached from ``reports_root`` when the image path follows MIMIC-CXR's layout. Images that
    are missing or unreadable are skipped and reported; an empty group after skipping is an error.
    """
    roots = [image_root] if image_root else [Path.cwd()]
    skipped: list[SkippedItem] = []
    warnings: list[str] = []
    sets = []
    for label, description, raw_images, raw_reports, name in (
        ("A", pair.set1, pair.set1_images, pair.set1_reports, set1_name),
        ("B", pair.set2, pair.set2_images, pair.set2_reports, set2_name),
    ):
        group_name = name or description.strip() or f"set {label}"
        studies: list[Study] = []
        seen: set[str] = set()
        if raw_reports:
            studies = _pair_reports(raw_reports, roots, group_name, label, skipped, warnings)
        for raw in raw_images:
            path = resolve_image(raw, roots)
            problem = check_image(path, decode_images, allowed_roots)
            if problem:
                skipped.append(SkippedItem(item=f"[{group_name}] {raw}", reason=problem))
                continue
            study_id = Path(raw).with_suffix("").as_posix()
            if study_id in seen:
                warnings.append(f"{raw}: listed twice in {group_name!r}; kept once")
                continue
            seen.add(study_id)
            report_path = mimic_report_path(raw, reports_root) if reports_root else None
            if reports_root and report_path is None:
                warnings.append(f"{raw}: no report under {reports_root}")
            if report_path is None and path.with_suffix(".txt").is_file():
                report_path = path.with_suffix(".txt")  # a sidecar report next to the image
            studies.append(
                Study(
                    study_id=study_id,
                    image_paths=[path],
                    report=read_text(report_path, allowed_roots) if report_path else None,
                    report_path=report_path,
                    metadata=sidecar_metadata(path, allowed_roots) or mimic_metadata(raw),
                )
            )
        sets.append(StudySet(name=group_name, description=description.strip(), studies=studies))
    return finalise(sets[0], sets[1], skipped, warnings)


def _pair_reports(
    entries: list[str | ReportEntry],
    roots: list[Path],
    group_name: str,
    label: str,
    skipped: list[SkippedItem],
    warnings: list[str],
) -> list[Study]:
    """The report-only studies of one set of a JSONL pair (``setN_reports``)."""
    studies: list[Study] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = ReportEntry(report_path=entry)
        path = resolve_image(entry.report_path, roots) if entry.report_path and not entry.report else None
        study_id = entry.study_id or (
            Path(entry.report_path).with_suffix("").as_posix() if entry.report_path else f"{label}{n}"
        )
        if study_id in seen:
            warnings.append(f"{study_id}: listed twice in {group_name!r}; kept once")
            continue
        seen.add(study_id)
        study = report_study(study_id, study_id, group_name, entry.report, path, StudyMetadata(), skipped)
        if study is not None:
            studies.append(study)
    return studies


def load_jsonl_pair(
    jsonl_path: Path | str,
    index: int = 0,
    *,
    image_root: Path | None = None,
    reports_root: Path | None = None,
    decode_images: bool = False,
    allowed_roots: Sequence[Path] | None = None,
) -> LoadedComparison:
    """Load pair number ``index`` (0-based) of a JSONL pair file as a comparison."""
    pairs = read_pairs(jsonl_path)
    if not 0 <= index < len(pairs):
        raise InputError(f"{jsonl_path}: pair index {index} out of range (file has {len(pairs)} pairs)")
    root = image_root or Path(jsonl_path).parent
    return pair_to_comparison(
        pairs[index],
        image_root=root,
        reports_root=reports_root,
        decode_images=decode_images,
        allowed_roots=allowed_roots,
    )
