"""Two folders of images (a sidecar ``.txt`` is the report, a sidecar ``.json`` the metadata), or of ``.txt``
reports only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tools.data.images import content_hash, is_image_path
from tools.data.studies import (
    LoadedComparison,
    check_image,
    confine,
    finalise,
    read_text,
    report_study,
    sidecar_metadata,
)
from tools.domain import InputError, SkippedItem, Study, StudyMetadata, StudySet


def folder_images(folder: Path, label: str) -> tuple[list[Path], list[SkippedItem]]:
    """The image files of a folder tree, sorted; other files are reported and skipped."""
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
        study = report_study(study_id, str(path), label, None, path, StudyMetadata(), skipped)
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
        images, bad = folder_images(folder, label)
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
            problem = check_image(path, decode_images, allowed_roots)
            if problem:
                skipped.append(SkippedItem(item=f"[{label}] {path}", reason=problem))
                continue
            sid = f"{'AB'[index]}:{study_id}" if study_id in clash else study_id
            sidecar = path.with_suffix(".txt")
            report = read_text(sidecar, allowed_roots) if sidecar.is_file() else None
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
    return finalise(sets[0], sets[1], skipped, [])
