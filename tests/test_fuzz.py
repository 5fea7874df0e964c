"""Fuzz-style robustness: many generated bad images, CSV files, JSONL lines and sidecars.

Every input either loads (to a valid canonical image / comparison) or fails with one
:class:`~tools.domain.InputError` line; nothing else escapes, the command line never prints a traceback, and
the embedding cache stays intact and keeps serving the good images. Seeded: the same cases every run.
"""

from __future__ import annotations

import io
import json
import sqlite3
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.domain import InputError

N_IMAGES = 160
N_TABLES = 120
N_LINES = 120


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _good_png(rng: np.random.Generator, size: tuple[int, int] = (32, 32), mode: str = "L") -> bytes:
    buf = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, size, dtype=np.uint16)).save(buf, format="PNG")
    elif mode == "RGBA":
        Image.fromarray(rng.integers(0, 255, (*size, 4), dtype=np.uint8), mode="RGBA").save(buf, format="PNG")
    else:
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _good_jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _dicom(rng: np.random.Generator, rows: int, cols: int, *, pixels: bool = True) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, generate_uid(), "CR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if pixels:
        ds.PixelData = rng.integers(0, 4095, (min(rows, 64), min(cols, 64)), dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _image_case(rng: np.random.Generator, i: int) -> tuple[str, bytes]:
    """One generated image file (name, bytes): mostly broken, some valid, chosen by ``i``."""
    kind = i % 16
    good = _good_png(rng)
    if kind == 0:
        return f"trunc{i}.png", good[: int(rng.integers(1, len(good) - 1))]
    if kind == 1:
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 20))):
            data[int(rng.integers(8, len(data)))] = int(rng.integers(0, 256))
        return f"flipped{i}.png", bytes(data)
    if kind == 2:
        return f"noise{i}.png", b"\x89PNG\r\n\x1a\n" + rng.bytes(int(rng.integers(0, 400)))
    if kind == 3:
        return f"noise{i}.jpg", b"\xff\xd8\xff" + rng.bytes(int(rng.integers(0, 400)))
    if kind == 4:
        w, h = (int(v) for v in rng.choice([1, 2, 7, 30000, 9000, 1 << 20, 0], size=2))
        ihdr = struct.pack(">IIBBBBB", w, h, int(rng.choice([1, 8, 16])), 0, 0, 0, 0)
        body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b"")
        return f"header{i}.png", b"\x89PNG\r\n\x1a\n" + body
    if kind == 5:
        return f"empty{i}.png", b""
    if kind == 6:
        return f"text{i}.jpeg", "FINDINGS: not an image at all \u00e9".encode()
    if kind == 7:
        side = int(rng.integers(1, 8))
        return f"tiny{i}.png", _good_png(rng, (side, int(rng.integers(1, 64))))
    if kind == 8:
        return f"mode{i}.png", _good_png(rng, mode=str(rng.choice(["1", "P", "RGBA", "I;16", "LA", "RGB"])))
    if kind == 9:
        return f"good{i}.jpg", _good_jpeg(rng)
    if kind == 10:
        return f"dicom{i}.dcm", _dicom(rng, int(rng.choice([1, 4, 64, 20000])), int(rng.choice([3, 64, 20000])))
    if kind == 11:
        return f"nopixels{i}.dcm", _dicom(rng, 64, 64, pixels=False)
    if kind == 12:
        data = _dicom(rng, 64, 64)
        return f"cutdicom{i}.dcm", data[: int(rng.integers(10, len(data) - 1))]
    if kind == 13:
        return f"fakedicom{i}", b"\x00" * 128 + b"DICM" + rng.bytes(int(rng.integers(0, 300)))
    if kind == 14:
        return f"flat{i}.png", _good_png(rng) if i % 2 else _flat_png(int(rng.integers(0, 65535)))
    return f"good{i}.png", good


def _flat_png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, dtype=np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def _one_line_error(exc: InputError) -> None:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message and len(message) < 600


def _write_images(folder: Path, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(N_IMAGES):
        name, data = _image_case(rng, i)
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def test_generated_bad_images_load_or_fail_with_one_line(tmp_path):
    from tools.data.images import MIN_IMAGE_SIDE, load_image

    outcomes = {"loaded": 0, "refused": 0}
    for path in _write_images(tmp_path / "img"):
        try:
            array = load_image(path)
        except InputError as exc:
            _one_line_error(exc)
            assert path.name in str(exc)
            outcomes["refused"] += 1
            continue
        assert array.dtype == np.float32 and array.ndim == 2 and min(array.shape) >= MIN_IMAGE_SIDE
        assert np.all(np.isfinite(array)) and array.min() >= 0.0 and array.max() <= 1.0
        outcomes["loaded"] += 1
    assert outcomes["loaded"] >= 20 and outcomes["refused"] >= 80


def test_embedding_generated_bad_images_skips_them_and_keeps_the_cache_intact(tmp_path):
    from tests.test_embedding_cache import FakeModel
    from tools.data.images import content_hash
    from tools.embeddings.cache import EmbeddingCache, embed_images

    paths = _write_images(tmp_path / "img", seed=1)
    cache_path = tmp_path / "e.sqlite3"
    first = embed_images(FakeModel(), paths, EmbeddingCache(cache_path), batch_size=7)
    assert first.kept and first.skipped and len(first.kept) + len(first.skipped) == len(paths)
    for item in first.skipped:
        assert item.reason and "\n" not in item.reason
    with sqlite3.connect(cache_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT count(*) FROM images").fetchone()[0]
    assert stored == len({content_hash(paths[i]) for i in first.kept})  # one row per distinct good image
    model = FakeModel()
    again = embed_images(model, paths, EmbeddingCache(cache_path), batch_size=5)
    assert model.images_seen == 0 and again.kept == first.kept  # served from the intact cache
    np.testing.assert_array_equal(again.embeddings, first.embeddings)


# ---------------------------------------------------------------- tables and lines


def _mutations(base: str, rng: np.random.Generator) -> Callable[[int], bytes]:
    pieces = [
        "\x00",
        '"',
        '""',
        ",",
        "\n",
        "\r",
        "\ufeff",
        "\u202e",
        "../../../etc/passwd",
        "/dev/zero",
        "A" * 200_000,
        "path",
        "group_name",
        "report_path",
        "\\",
        "{",
        "}",
        "[",
        "]",
        "null",
        "1e309",
        "-1",
        "\ud800",
    ]

    def make(i: int) -> bytes:
        text = base
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, len(text) + 1))
            op = int(rng.integers(0, 3))
            if op == 0:
                text = text[:at] + str(rng.choice(pieces)) + text[at:]
            elif op == 1:
                text = text[:at] + text[at + int(rng.integers(1, 12)) :]
            else:
                text = text[:at] + text[at:][::-1]
        data = text.encode("utf-8", errors="surrogatepass")
        if i % 9 == 0:
            data = rng.bytes(int(rng.integers(0, 300)))
        if i % 13 == 0:
            data = data[: len(data) // 2]
        return data

    return make


def _data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(3):
        for group in "AB":
            img = root / group / f"{group.lower()}{i}.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(i + (10 if group == "B" else 0))
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(img)
            (root / group / f"{group.lower()}{i}.txt").write_text("FINDINGS: No pleural effusion.")
    return root


def test_generated_bad_csv_files_load_or_fail_with_one_line(tmp_path):
    from tools.data.loaders import load_comparison

    root = _data_root(tmp_path)
    base = (
        "path,group_name,report,age,view\n"
        "A/a0.png,A,Moderate right effusion.,61,PA\nA/a1.png,A,,70,AP\nA/a2.png,A,Clear.,55,PA\n"
        "B/b0.png,B,Clear.,40,PA\nB/b1.png,B,,33,PA\nB/b2.png,B,Clear.,48,AP\n"
    )
    make = _mutations(base, np.random.default_rng(2))
    loaded = 0
    for i in range(N_TABLES):
        path = root / f"t{i}.csv"
        path.write_bytes(make(i))
        try:
            result = load_comparison(path)
        except InputError as exc:
            _one_line_error(exc)
            continue
        loaded += 1
        assert len(result.comparison.set_a) and len(result.comparison.set_b)
        assert all("\n" not in s.reason for s in result.skipped)
    assert 0 < loaded < N_TABLES


def test_generated_bad_jsonl_lines_load_or_fail_with_one_line(tmp_path):
    from tools.data.jsonl_pairs import load_jsonl_pair

    root = _data_root(tmp_path)
    good = {"set1": "effusion", "set2": "normal", "set1_images": ["A/a0.png", "A/a1.png"], "set2_images": ["B/b0.png"]}
    make = _mutations(json.dumps(good) + "\n", np.random.default_rng(3))
    loaded = 0
    for i in range(N_LINES):
        path = root / f"p{i}.jsonl"
        path.write_bytes(make(i))
        try:
            result = load_jsonl_pair(path, int(i % 3 == 0))
        except InputError as exc:
            _one_line_error(exc)
            continue
        loaded += 1
        assert len(result.comparison.set_a) and len(result.comparison.set_b)
    assert 0 < loaded < N_LINES


def test_generated_bad_sidecars_load_or_fail_with_one_line(tmp_path):
    from tools.data.folders import load_folders

    root = _data_root(tmp_path)
    make = _mutations(json.dumps({"view_position": "PA", "age": 61, "sex": "F", "site": "x"}), np.random.default_rng(4))
    for i in range(40):
        (root / "A" / "a0.json").write_bytes(make(i))
        try:
            load_folders(root / "A", root / "B")
        except InputError as exc:
            _one_line_error(exc)


@pytest.mark.slow
def test_the_command_line_never_prints_a_traceback_on_generated_inputs(tmp_path, capsys):
    from raddiff.cli.main import main
    from tools.data.images import load_image

    root = _data_root(tmp_path)
    make = _mutations("path,group_name\nA/a0.png,A\nA/a1.png,A\nB/b0.png,B\n", np.random.default_rng(5))
    images = _write_images(root / "A" / "bad", seed=6)
    assert images
    for i in range(40):
        source = root / (f"c{i}.csv" if i % 2 else f"j{i}.jsonl")
        source.write_bytes(make(i))
        code = main(["compare", str(source), "--dry-run", "--decode"])
        captured = capsys.readouterr()
        assert code in (0, 2) and "Traceback" not in captured.err + captured.out
        if code == 2:
            assert len(captured.err.strip().splitlines()) == 1
    code = main(["compare", str(root / "A"), str(root / "B"), "--dry-run", "--decode"])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    decodable = 0
    for path in images:
        try:
            load_image(path)
            decodable += 1
        except InputError:
            pass
    assert f"group A: 'A': {3 + decodable} studies" in captured.out
    assert f"while loading: {len(images) - decodable} inputs skipped" in captured.out
