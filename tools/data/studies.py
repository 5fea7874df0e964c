"""What every loader shares: the loaded comparison, studies from files (images, reports, metadata sidecars,
the MIMIC-CXR report layout), path confinement to allowed roots, and the checks of a comparison as a whole.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.data.images import IMAGE_SUFFIXES, content_hash, is_image_path, load_image
from tools.domain import Comparison, InputError, SkippedItem, Study, StudyMetadata, StudySet

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


def coerce_metadata(raw: dict[str, str]) -> StudyMetadata:
    """Metadata columns (or sidecar keys) as typed study metadata: known aliases (view, sex, age) typed, the rest
    kept."""
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


def read_text(path: Path, allowed_roots: Sequence[Path] | None = None) -> str:
    """A report file's text (inside ``allowed_roots`` when given); an unreadable file is a one-line error."""
    confine(path, allowed_roots, "report")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read report ({exc.strerror or exc})") from None


def resolve_image(raw: str, roots: list[Path]) -> Path:
    """An image path as given, or relative to one of ``roots`` (also under its ``files/``), the first that exists."""
    path = Path(raw)
    if path.is_absolute():
        return path
    for root in roots:
        for candidate in (root / path, root / "files" / path):
            if candidate.exists():
                return candidate
    return (roots[0] / path) if roots else path


def check_image(path: Path, decode: bool, allowed_roots: Sequence[Path] | None = None) -> str | None:
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


def finalise(
    set_a: StudySet, set_b: StudySet, skipped: list[SkippedItem], warnings: list[str], question: str = ""
) -> LoadedComparison:
    """The loaded comparison of two study sets, once checked: no empty group, no study (or image) in both."""
    _check_shared_content(set_a, set_b)
    for group in (set_a, set_b):
        if not group.studies:
            lost = sum(1 for s in skipped if s.item.startswith(f"[{group.name}]"))
            extra = f" ({lost} inputs skipped; first: {skipped[0].reason})" if lost and skipped else ""
            raise InputError(f"group {group.name!r}: empty group (no usable studies){extra}")
    return LoadedComparison(
        comparison=Comparison(set_a=set_a, set_b=set_b, question=question), skipped=skipped, warnings=warnings
    )


def report_study(
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
        text = read_text(report_path)
    if not text or not text.strip():
        where = report_path or item
        skipped.append(SkippedItem(item=f"[{group}] {item}", reason=f"{where}: empty report (study skipped)"))
        return None
    return Study(study_id=study_id, report=text.strip(), report_path=report_path, metadata=metadata)


def mimic_metadata(raw: str) -> StudyMetadata:
    """The MIMIC-CXR subject and study of an image path in the ``files/pXX/pXXXXXXXX/sXXXXXXXX/`` layout."""
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
    return coerce_metadata(scalars)
