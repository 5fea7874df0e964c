"""Loaders: RadDiff CSV, RadDiff JSONL pairs (RadDiffBench), MIMIC-CXR report layout, two image folders.

Every loader returns a :class:`LoadedComparison`: a validated :class:`~tools.domain.Comparison` plus the
inputs that were reported and skipped (a missing image in a 500-image group does not stop a run). Errors
that make the comparison meaningless (missing file or folder, empty group, unknown column, a study in both
groups) raise :class:`~tools.domain.InputError` with one line that names the thing and the problem. Given
``allowed_roots``, a loader opens no file (image, report, metadata sidecar) whose real location lies outside them.

The formats: :mod:`tools.data.csv_input`, :mod:`tools.data.jsonl_pairs`, :mod:`tools.data.folders`; what they
share: :mod:`tools.data.studies`. :func:`load_comparison` picks the loader from the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tools.data.csv_input import csv_image_paths, load_csv
from tools.data.folders import folder_images, load_folders
from tools.data.jsonl_pairs import load_jsonl_pair, read_pairs
from tools.data.studies import LoadedComparison, check_image, resolve_image
from tools.domain import InputError, SkippedItem


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


def list_images(source: Path | str, *, image_root: Path | None = None) -> tuple[list[Path], list[SkippedItem]]:
    """Every image of a source, for archive-wide work (``raddiff embed``): (existing image paths, skipped inputs).

    ``source`` is a folder tree (searched recursively, e.g. MIMIC-CXR-JPG's ``files/``), a CSV (its ``path``
    column, whatever its groups, or MIMIC-CXR-JPG's metadata CSV) or a JSONL pair file (both sets of every
    pair). Relative paths resolve under ``image_root`` (default: the file's folder). Duplicates are listed once;
    a missing or non-image file is skipped and reported.
    """
    source = Path(source)
    if source.is_dir():
        found, skipped = folder_images(source, source.name or str(source))
    elif not source.exists():
        raise InputError(f"{source}: no such folder or file")
    else:
        roots = [image_root] if image_root else [source.parent]
        suffix = source.suffix.lower()
        if suffix == ".csv":
            found, skipped = csv_image_paths(source, roots)
        elif suffix in (".jsonl", ".json"):
            found = [
                resolve_image(raw, roots)
                for pair in read_pairs(source)
                for raw in (*pair.set1_images, *pair.set2_images)
            ]
            skipped = []
        else:
            raise InputError(f"{source}: expected a folder, a .csv file or a .jsonl pair file")
    paths: list[Path] = []
    for path in dict.fromkeys(found):
        problem = check_image(path, False)
        if problem:
            skipped.append(SkippedItem(item=str(path), reason=problem))
        else:
            paths.append(path)
    return paths, skipped
