"""Loaders: RadDiff CSV, RadDiff JSONL pairs (RadDiffBench), MIMIC-CXR report layout, two image folders.

Every loader returns a :class:`LoadedComparison`: a validated :class:`~tools.domain.Comparison` plus the
inputs that were reported and skipped (a missing image in a 500-image group does not stop a run). Errors
that make the comparison meaningless (missing file or folder, empty group, unknown column, a study in both
groups) raise :class:`~tools.domain.InputError` with one line that names the thing and the problem. Given
``allowed_roots``, a loader opens no file (image, report, metadata sidecar) whose real location lies outside them.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.data.images import IMAGE_SUFFIXES, content_hash, is_image_path, load_image
from tools.domain import Comparison, InputError, SkippedItem, Study, StudyMetadata, StudySet

CSV_REQUIRED = ("path", "group_name")
CSV_REPORT_COLUMNS = ("report", "report_path")
"""A CSV with one of these columns and no ``path`` column holds report-only studies."""
CSV_RESERVED = ("path", "group_name", "report", "report_path", "study_id")
METADATA_ALIASES = {
    "view_position": "view_position",
    "viewposition": "view_position",
    "view": "view_position",
    "sex": "sex",
    "gender": "sex",
    "age": "age",
    "anchor_age": "age",
}
MIMIC_IMAGE_RE = re.compile(r"(p\d{2})/(p\d+)/(s\d+)/[^/]+$")


class LoadedComparison(BaseModel):
    """A validated comparison and what was skipped or noticed while loading it."""

    model_config = ConfigDict(extra="forbid")

    comparison: Comparison
    skipped: list[SkippedItem] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


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


def _coerce_metadata(raw: dict[str, str]) -> StudyMetadata:
    typed: dict[str, Any] = {}
    extra: dict[str, str | float | int | bool | None] = {}
    for key, value in raw.items():
        if value is None or str(value).strip() == "":
            continue
        alias = METADATA_ALIASES.get(key.strip().lower())
        if alias == "age":
            try:
                typed["age"] = float(value)
            except ValueError:
                raise InputError(f"column {key!r}: age {value!r} is not a number") from None
        elif alias:
            typed[alias] = str(value).strip()
        else:
            extra[key] = value
    return StudyMetadata(**typed, extra=extra)


def mimic_report_path(image_path: str | Path, reports_root: Path) -> Path | None:
    """MIMIC-CXR layout: ``.../pXX/pXXXXXXXX/sXXXXXXXX/<dicom>.jpg`` -> ``<root>/files/pXX/pXXXXXXXX/sXXXXXXXX.txt``.

    Returns the first existing candidate (``reports_root`` may point at the dataset or at its ``files/``),
    or ``None`` when the image path is not in MIMIC layout or no report file exists.
    """
    match = MIMIC_IMAGE_RE.search(Path(image_path).as_posix())
    if not match:
        return None
    rel = Path(match.group(1), match.group(2), match.group(3) + ".txt")
    for candidate in (reports_root / "files" / rel, reports_root / rel):
        if candidate.is_file():
            return candidate
    return None


def inside_roots(path: Path, roots: Sequence[Path]) -> bool:
    """True when the real location of ``path`` (symlinks followed) is one of ``roots`` or lies under one."""
    real = Path(path).expanduser().resolve()
    for root in roots:
        base = Path(root).expanduser().resolve()
        if real == base or real.is_relative_to(base):
            return True
    return False


def confine(path: Path, allowed_roots: Sequence[Path] | None, what: str = "file") -> Path:
    """``path`` itself when ``allowed_roots`` is None or :func:`inside_roots`; else an :class:`InputError` naming
    the path (never its content). Loaders call it before they open a file."""
    if allowed_roots is None or inside_roots(path, allowed_roots):
        return path
    shown = ", ".join(str(r) for r in allowed_roots) or "(none)"
    raise InputError(f"{what} {str(path)!r} is outside the folders that may be read ({shown})")


def _read_text(path: Path, allowed_roots: Sequence[Path] | None = None) -> str:
    confine(path, allowed_roots, "report")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read report ({exc.strerror or exc})") from None


def _resolve_image(raw: str, roots: list[Path]) -> Path:
    path = Path(raw)
    if path.is_absolute():
        return path
    for root in roots:
        for candidate in (root / path, root / "files" / path):
            if candidate.exists():
                return candidate
    return (roots[0] / path) if roots else path


def _check_image(path: Path, decode: bool, allowed_roots: Sequence[Path] | None = None) -> str | None:
    """Return a one-line problem for the image at ``path``, or ``None`` when it is usable (an image outside
    ``allowed_roots`` raises)."""
    confine(path, allowed_roots, "image")
    if not path.exists():
        return f"{path}: file not found"
    if not is_image_path(path) and not decode:
        return f"{path}: not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))})"
    if decode:
        try:
            load_image(path)
        except InputError as exc:
            return str(exc)
    return None


def _check_shared_content(set_a: StudySet, set_b: StudySet) -> None:
    """Refuse the same image bytes in both groups, whatever their names (a study cannot be on both sides).

    Only files whose sizes occur in both groups are hashed, so disjoint sets cost one ``stat`` per image.
    """

    def sizes(group: StudySet) -> dict[int, list[Path]]:
        out: dict[int, list[Path]] = defaultdict(list)
        for study in group.studies:
            for path in study.image_paths:
                try:
                    out[Path(path).stat().st_size].append(Path(path))
                except OSError:
                    continue  # missing files are reported by the image checks
        return out

    size_a, size_b = sizes(set_a), sizes(set_b)
    for size in sorted(set(size_a) & set(size_b)):
        hashes = {content_hash(p): p for p in size_a[size]}
        for path in size_b[size]:
            twin = hashes.get(content_hash(path))
            if twin is not None:
                raise InputError(
                    f"{path}: same image as {twin} (group {set_a.name!r}); an image cannot be in both groups"
                )


def _finalise(
    set_a: StudySet, set_b: StudySet, skipped: list[SkippedItem], warnings: list[str], question: str = ""
) -> LoadedComparison:
    _check_shared_content(set_a, set_b)
    for group in (set_a, set_b):
        if not group.studies:
            lost = sum(1 for s in skipped if s.item.startswith(f"[{group.name}]"))
            extra = f" ({lost} inputs skipped; first: {skipped[0].reason})" if lost and skipped else ""
            raise InputError(f"group {group.name!r}: empty group (no usable studies){extra}")
    return LoadedComparison(
        comparison=Comparison(set_a=set_a, set_b=set_b, question=question), skipped=skipped, warnings=warnings
    )


def load_csv(
    csv_path: Path | str,
    *,
    image_root: Path | None = None,
    reports_root: Path | None = None,
    group_a: str | None = None,
    group_b: str | None = None,
    metadata_columns: list[str] | None = None,
    decode_images: bool = False,
    allowed_roots: Sequence[Path] | None = None,
) -> LoadedComparison:
    """Load RadDiff's CSV format: columns ``path`` and ``group_name`` (+ ``report``/``report_path``/``study_id``).

    Other columns are kept as study metadata (or only ``metadata_columns`` when given; naming a column the
    file lacks is an error). With more than two groups in the file, ``group_a`` and ``group_b`` choose two.
    Relative image paths resolve against ``image_root`` (default: the CSV's folder).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: CSV file not found")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: not a readable CSV file ({exc})") from None
    report_only = "path" not in columns and any(c in columns for c in CSV_REPORT_COLUMNS)
    missing = [c for c in CSV_REQUIRED if c not in columns and not (c == "path" and report_only)]
    if missing:
        hint = " (or 'report' / 'report_path' for report-only studies)" if missing[0] == "path" else ""
        raise InputError(
            f"{csv_path}: missing column {missing[0]!r}{hint} (columns present: {', '.join(columns) or 'none'})"
        )
    meta_cols = [c for c in columns if c not in CSV_RESERVED]
    if metadata_columns is not None:
        unknown = [c for c in metadata_columns if c not in columns]
        if unknown:
            raise InputError(f"{csv_path}: unknown column {unknown[0]!r} (columns present: {', '.join(columns)})")
        meta_cols = list(metadata_columns)
    groups_in_file = list(dict.fromkeys(r["group_name"].strip() for r in rows if r["group_name"].strip()))
    if group_a is None and group_b is None:
        if len(groups_in_file) != 2:
            raise InputError(
                f"{csv_path}: column 'group_name' has {len(groups_in_file)} groups "
                f"({', '.join(groups_in_file[:5]) or 'none'}); choose two with group_a/group_b"
            )
        group_a, group_b = groups_in_file
    for chosen in (group_a, group_b):
        if chosen not in groups_in_file:
            raise InputError(f"{csv_path}: group {chosen!r} not found in column 'group_name'")
    assert group_a is not None and group_b is not None
    roots = [image_root] if image_root else [csv_path.parent]
    report_roots = [reports_root] if reports_root else [csv_path.parent]
    skipped: list[SkippedItem] = []
    warnings: list[str] = []
    images: dict[str, dict[str, list[Path]]] = {group_a: defaultdict(list), group_b: defaultdict(list)}
    info: dict[str, dict[str, dict[str, str]]] = {group_a: {}, group_b: {}}
    if report_only:
        return _csv_reports(csv_path, rows, (group_a, group_b), report_roots, meta_cols)
    for line_no, row in enumerate(rows, start=2):
        group = row["group_name"].strip()
        if group not in images:
            continue
        raw_path = row["path"].strip()
        if not raw_path:
            skipped.append(SkippedItem(item=f"[{group}] {csv_path}:{line_no}", reason="empty 'path' value"))
            continue
        path = _resolve_image(raw_path, roots)
        problem = _check_image(path, decode_images, allowed_roots)
        if problem:
            skipped.append(SkippedItem(item=f"[{group}] {path}", reason=problem))
            continue
        study_id = row.get("study_id", "").strip() or Path(raw_path).with_suffix("").as_posix()
        images[group][study_id].append(path)
        info[group].setdefault(study_id, row)
    sets = []
    for group in (group_a, group_b):
        studies = []
        for study_id, paths in images[group].items():
            row = info[group][study_id]
            report, report_path = None, None
            if row.get("report", "").strip():
                report = row["report"].strip()
            elif row.get("report_path", "").strip():
                report_path = _resolve_image(row["report_path"].strip(), report_roots)
                if report_path.is_file():
                    report = _read_text(report_path, allowed_roots)
                else:
                    warnings.append(f"{report_path}: report file not found (study {study_id} kept without report)")
                    report_path = None
            elif reports_root is not None:
                report_path = mimic_report_path(paths[0], reports_root)
                report = _read_text(report_path, allowed_roots) if report_path else None
            meta = _coerce_metadata({c: row.get(c, "") for c in meta_cols})
            studies.append(
                Study(study_id=study_id, image_paths=paths, report=report, report_path=report_path, metadata=meta)
            )
        sets.append(StudySet(name=group, studies=studies))
    return _finalise(sets[0], sets[1], skipped, warnings)


def _report_study(
    study_id: str,
    item: str,
    group: str,
    text: str | None,
    report_path: Path | None,
    metadata: StudyMetadata,
    skipped: list[SkippedItem],
) -> Study | None:
    """A report-only study, or ``None`` (recorded in ``skipped``) when its report is missing or empty."""
    if report_path is not None and text is None:
        if not report_path.is_file():
            skipped.append(SkippedItem(item=f"[{group}] {item}", reason=f"{report_path}: report file not found"))
            return None
        text = _read_text(report_path)
    if not text or not text.strip():
        where = report_path or item
        skipped.append(SkippedItem(item=f"[{group}] {item}", reason=f"{where}: empty report (study skipped)"))
        return None
    return Study(study_id=study_id, report=text.strip(), report_path=report_path, metadata=metadata)


def _csv_reports(
    csv_path: Path, rows: list[dict[str, str]], groups: tuple[str, str], roots: list[Path], meta_cols: list[str]
) -> LoadedComparison:
    """Report-only rows of a CSV (``report`` text or a ``report_path`` per row, no ``path`` column)."""
    skipped: list[SkippedItem] = []
    studies: dict[str, list[Study]] = {g: [] for g in groups}
    seen: dict[str, int] = {}
    for line_no, row in enumerate(rows, start=2):
        group = row["group_name"].strip()
        if group not in studies:
            continue
        text = row.get("report", "").strip() or None
        raw_report_path = row.get("report_path", "").strip()
        report_path = _resolve_image(raw_report_path, roots) if raw_report_path and not text else None
        study_id = row.get("study_id", "").strip() or (
            Path(raw_report_path).with_suffix("").as_posix() if raw_report_path else f"row{line_no}"
        )
        if study_id in seen:
            raise InputError(f"{csv_path}:{line_no}: study id {study_id!r} already used on line {seen[study_id]}")
        seen[study_id] = line_no
        meta = _coerce_metadata({c: row.get(c, "") for c in meta_cols})
        study = _report_study(study_id, f"{csv_path}:{line_no}", group, text, report_path, meta, skipped)
        if study is not None:
            studies[group].append(study)
    sets = [StudySet(name=g, studies=studies[g]) for g in groups]
    return _finalise(sets[0], sets[1], skipped, [])


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


def _mimic_metadata(raw: str) -> StudyMetadata:
    match = MIMIC_IMAGE_RE.search(raw)
    if not match:
        return StudyMetadata()
    return StudyMetadata(extra={"subject_id": match.group(2), "mimic_study": match.group(3)})


def sidecar_metadata(image: Path, allowed_roots: Sequence[Path] | None = None) -> StudyMetadata | None:
    """Metadata from a ``<image>.json`` sidecar (view_position, sex, age; other scalar fields as extras); a
    sidecar outside ``allowed_roots`` (a symlink pointing out) is refused unread."""
    path = image.with_suffix(".json")
    if not path.is_file():
        return None
    confine(path, allowed_roots, "metadata sidecar")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: unreadable metadata sidecar (not UTF-8 at offset {exc.start})") from None
    except (OSError, json.JSONDecodeError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: unreadable metadata sidecar ({detail})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: metadata sidecar must be a JSON object")
    scalars = {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float | bool) and k != "seed"}
    return _coerce_metadata(scalars)


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
            path = _resolve_image(raw, roots)
            problem = _check_image(path, decode_images, allowed_roots)
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
                    report=_read_text(report_path, allowed_roots) if report_path else None,
                    report_path=report_path,
                    metadata=sidecar_metadata(path, allowed_roots) or _mimic_metadata(raw),
                )
            )
        sets.append(StudySet(name=group_name, description=description.strip(), studies=studies))
    return _finalise(sets[0], sets[1], skipped, warnings)


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
        path = _resolve_image(entry.report_path, roots) if entry.report_path and not entry.report else None
        study_id = entry.study_id or (
            Path(entry.report_path).with_suffix("").as_posix() if entry.report_path else f"{label}{n}"
        )
        if study_id in seen:
            warnings.append(f"{study_id}: listed twice in {group_name!r}; kept once")
            continue
        seen.add(study_id)
        study = _report_study(study_id, study_id, group_name, entry.report, path, StudyMetadata(), skipped)
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


def _folder_images(folder: Path, label: str) -> tuple[list[Path], list[SkippedItem]]:
    if not folder.exists():
        raise InputError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    images, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith(".") or path.suffix.lower() in (".txt", ".json", ".csv", ".md"):
            continue
        if is_image_path(path):
            images.append(path)
        else:
            skipped.append(SkippedItem(item=f"[{label}] {path}", reason=f"{path}: not an image file"))
    return images, skipped


def _folder_reports(folder: Path, label: str, skipped: list[SkippedItem]) -> list[Study]:
    """Report-only studies of a folder with no images: one per ``.txt`` file (searched recursively)."""
    studies = []
    for path in sorted(p for p in folder.rglob("*.txt") if p.is_file() and not p.name.startswith(".")):
        study_id = path.relative_to(folder).with_suffix("").as_posix()
        study = _report_study(study_id, str(path), label, None, path, StudyMetadata(), skipped)
        if study is not None:
            studies.append(study)
    return studies


def load_folders(
    dir_a: Path | str,
    dir_b: Path | str,
    *,
    name_a: str | None = None,
    name_b: str | None = None,
    decode_images: bool = False,
    allowed_roots: Sequence[Path] | None = None,
) -> LoadedComparison:
    """Two folders of images (searched recursively), one study per image; a sidecar ``.txt`` is its report.

    A folder with no image at all holds report-only studies, one per ``.txt`` file (two such folders make a
    report-only comparison; one of each is refused, see :class:`~tools.domain.Comparison`). Non-image files
    are reported and skipped. An image with the same content in both folders is an error (a study cannot be
    in both groups); different images that share a relative name get prefixed ids.
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    skipped: list[SkippedItem] = []
    sets: list[StudySet] = []
    found: list[tuple[str, Path, list[Path]]] = []
    report_sets: dict[int, list[Study]] = {}
    for index, (folder, name) in enumerate(((dir_a, name_a), (dir_b, name_b))):
        label = name or folder.name or str(folder)
        images, bad = _folder_images(folder, label)
        skipped.extend(bad)
        if not images and not bad:
            report_sets[index] = _folder_reports(folder, label, skipped)
            if not report_sets[index] and not any(s.item.startswith(f"[{label}]") for s in skipped):
                raise InputError(f"{folder}: no images found (empty group)")
        found.append((label, folder, images))
    if found[0][0] == found[1][0]:
        found[1] = (found[1][0] + " (B)", found[1][1], found[1][2])
    ids = [{p.relative_to(folder).with_suffix("").as_posix(): p for p in imgs} for _, folder, imgs in found]
    clash = set(ids[0]) & set(ids[1])
    for key in sorted(clash):
        confine(ids[0][key], allowed_roots, "image")
        confine(ids[1][key], allowed_roots, "image")
        if content_hash(ids[0][key]) == content_hash(ids[1][key]):
            raise InputError(f"{ids[1][key]}: same image as {ids[0][key]}; study {key!r} is present in both groups")
    if len(report_sets) == 2:
        shared = sorted({s.study_id for s in report_sets[0]} & {s.study_id for s in report_sets[1]})
        for i in (0, 1):  # two report folders may use the same file names: prefix the shared ids
            report_sets[i] = [
                s.model_copy(update={"study_id": f"{'AB'[i]}:{s.study_id}"}) if s.study_id in shared else s
                for s in report_sets[i]
            ]
    for index, (label, _folder, _images) in enumerate(found):
        if index in report_sets:
            sets.append(StudySet(name=label, studies=report_sets[index]))
            continue
        studies = []
        for study_id, path in ids[index].items():
            problem = _check_image(path, decode_images, allowed_roots)
            if problem:
                skipped.append(SkippedItem(item=f"[{label}] {path}", reason=problem))
                continue
            sid = f"{'AB'[index]}:{study_id}" if study_id in clash else study_id
            sidecar = path.with_suffix(".txt")
            report = _read_text(sidecar, allowed_roots) if sidecar.is_file() else None
            meta = sidecar_metadata(path, allowed_roots) or StudyMetadata()
            studies.append(
                Study(
                    study_id=sid,
                    image_paths=[path],
                    report=report,
                    report_path=sidecar if report else None,
                    metadata=meta,
                )
            )
        sets.append(StudySet(name=label, studies=studies))
    return _finalise(sets[0], sets[1], skipped, [])


def load_comparison(
    source_a: str | Path,
    source_b: str | Path | None = None,
    *,
    pair_index: int = 0,
    image_root: Path | None = None,
    reports_root: Path | None = None,
    decode_images: bool = False,
    allowed_roots: Sequence[Path] | None = None,
) -> LoadedComparison:
    """Load a comparison from two folders, a CSV, or a JSONL pair file (``pair_index`` picks the line)."""
    first = Path(source_a)
    if source_b is not None:
        return load_folders(first, Path(source_b), decode_images=decode_images, allowed_roots=allowed_roots)
    suffix = first.suffix.lower()
    if suffix == ".csv":
        return load_csv(
            first,
            image_root=image_root,
            reports_root=reports_root,
            decode_images=decode_images,
            allowed_roots=allowed_roots,
        )
    if suffix in (".jsonl", ".json"):
        return load_jsonl_pair(
            first,
            pair_index,
            image_root=image_root,
            reports_root=reports_root,
            decode_images=decode_images,
            allowed_roots=allowed_roots,
        )
    raise InputError(f"{first}: expected two folders, a .csv file or a .jsonl pair file")


MIMIC_METADATA_COLUMNS = ("subject_id", "study_id", "dicom_id")


def _csv_image_paths(csv_path: Path, roots: list[Path]) -> tuple[list[Path], list[SkippedItem]]:
    """Every image a CSV names: its ``path`` column (any number of groups), or MIMIC-CXR-JPG's metadata columns."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{csv_path}: not a readable CSV file ({exc})") from None
    if "path" in columns:
        raws = [r["path"] for r in rows]
    elif all(c in columns for c in MIMIC_METADATA_COLUMNS):
        # mimic-cxr-2.0.0-metadata.csv: files/pXX/pSUBJECT/sSTUDY/DICOM.jpg
        raws = [f"files/p{r['subject_id'][:2]}/p{r['subject_id']}/s{r['study_id']}/{r['dicom_id']}.jpg" for r in rows]
    else:
        raise InputError(
            f"{csv_path}: missing column 'path' (or subject_id, study_id, dicom_id of MIMIC-CXR-JPG's metadata); "
            f"columns present: {', '.join(columns) or 'none'}"
        )
    paths: list[Path] = []
    skipped: list[SkippedItem] = []
    for line_no, raw in enumerate(raws, start=2):
        if not raw:
            skipped.append(SkippedItem(item=f"{csv_path}:{line_no}", reason="empty 'path' value"))
            continue
        paths.append(_resolve_image(raw, roots))
    return paths, skipped


def list_images(source: Path | str, *, image_root: Path | None = None) -> tuple[list[Path], list[SkippedItem]]:
    """Every image of a source, for archive-wide work (``raddiff embed``): (existing image paths, skipped inputs).

    ``source`` is a folder tree (searched recursively, e.g. MIMIC-CXR-JPG's ``files/``), a CSV (its ``path``
    column, whatever its groups, or MIMIC-CXR-JPG's metadata CSV) or a JSONL pair file (both sets of every
    pair). Relative paths resolve under ``image_root`` (default: the file's folder). Duplicates are listed once;
    a missing or non-image file is skipped and reported.
    """
    source = Path(source)
    if source.is_dir():
        found, skipped = _folder_images(source, source.name or str(source))
    elif not source.exists():
        raise InputError(f"{source}: no such folder or file")
    else:
        roots = [image_root] if image_root else [source.parent]
        suffix = source.suffix.lower()
        if suffix == ".csv":
            found, skipped = _csv_image_paths(source, roots)
        elif suffix in (".jsonl", ".json"):
            found = [
                _resolve_image(raw, roots)
                for pair in read_pairs(source)
                for raw in (*pair.set1_images, *pair.set2_images)
            ]
            skipped = []
        else:
            raise InputError(f"{source}: expected a folder, a .csv file or a .jsonl pair file")
    paths: list[Path] = []
    for path in dict.fromkeys(found):
        problem = _check_image(path, False)
        if problem:
            skipped.append(SkippedItem(item=str(path), reason=problem))
        else:
            paths.append(path)
    return paths, skipped
