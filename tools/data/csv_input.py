"""RadDiff's CSV format: ``path, group_name[, report|report_path, study_id, metadata...]``; without a ``path``
column, report-only studies.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tools.data.studies import (
    LoadedComparison,
    check_image,
    coerce_metadata,
    finalise,
    mimic_report_path,
    read_text,
    report_study,
    resolve_image,
)
from tools.domain import InputError, SkippedItem, Study, StudySet

CSV_REQUIRED = ("path", "group_name")
CSV_REPORT_COLUMNS = ("report", "report_path")
"""A CSV with one of these columns and no ``path`` column holds report-only studies."""


CSV_RESERVED = ("path", "group_name", "report", "report_path", "study_id")


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
        path = resolve_image(raw_path, roots)
        problem = check_image(path, decode_images, allowed_roots)
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
                report_path = resolve_image(row["report_path"].strip(), report_roots)
                if report_path.is_file():
                    report = read_text(report_path, allowed_roots)
                else:
                    warnings.append(f"{report_path}: report file not found (study {study_id} kept without report)")
                    report_path = None
            elif reports_root is not None:
                report_path = mimic_report_path(paths[0], reports_root)
                report = read_text(report_path, allowed_roots) if report_path else None
            meta = coerce_metadata({c: row.get(c, "") for c in meta_cols})
            studies.append(
                Study(study_id=study_id, image_paths=paths, report=report, report_path=report_path, metadata=meta)
            )
        sets.append(StudySet(name=group, studies=studies))
    return finalise(sets[0], sets[1], skipped, warnings)


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
        report_path = resolve_image(raw_report_path, roots) if raw_report_path and not text else None
        study_id = row.get("study_id", "").strip() or (
            Path(raw_report_path).with_suffix("").as_posix() if raw_report_path else f"row{line_no}"
        )
        if study_id in seen:
            raise InputError(f"{csv_path}:{line_no}: study id {study_id!r} already used on line {seen[study_id]}")
        seen[study_id] = line_no
        meta = coerce_metadata({c: row.get(c, "") for c in meta_cols})
        study = report_study(study_id, f"{csv_path}:{line_no}", group, text, report_path, meta, skipped)
        if study is not None:
            studies[group].append(study)
    sets = [StudySet(name=g, studies=studies[g]) for g in groups]
    return finalise(sets[0], sets[1], skipped, [])


MIMIC_METADATA_COLUMNS = ("subject_id", "study_id", "dicom_id")


def csv_image_paths(csv_path: Path, roots: list[Path]) -> tuple[list[Path], list[SkippedItem]]:
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
        paths.append(resolve_image(raw, roots))
    return paths, skipped
