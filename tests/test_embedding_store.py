"""The Parquet embedding store, one shard's embedding, shard planning, archive listing and the cache's read-through."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_embedding_cache import FakeModel, write_images
from tools.data.images import content_hash
from tools.data.loaders import list_images
from tools.domain import InputError
from tools.embeddings.cache import EmbeddingCache, embed_images, to_float16
from tools.embeddings.job import embed_shard, import_ray, plan_shards, worker_error
from tools.embeddings.store import EmbeddingStore, file_signature
from tools.scorers.base import image_cache_key
from tools.settings import Settings

pytest.importorskip("pyarrow")

KEY = "fake|w1|p1"


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write(store: EmbeddingStore, shard_id: str, hashes: list[str], vectors: np.ndarray) -> None:
    n = len(hashes)
    store.write_shard(
        KEY,
        shard_id,
        hashes,
        vectors,
        paths=[f"/x/{h}.png" for h in hashes],
        sizes=[1] * n,
        mtimes=[2] * n,
        covered=[(f"/x/{h}.png", 1, 2) for h in hashes],
    )


def test_shards_round_trip_as_float16_and_duplicates_read_once(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    vectors = _vectors(5)
    _write(store, "a", ["h0", "h1", "h2"], vectors[:3])
    _write(store, "b", ["h3", "h4", "h0"], np.concatenate([vectors[3:], vectors[:1]]))
    found = store.lookup(KEY, ["h4", "h0", "nope"])
    assert set(found) == {"h4", "h0"}
    np.testing.assert_array_equal(found["h4"], to_float16(vectors[4:5])[0])
    hashes, matrix = store.load(KEY)
    assert hashes == ["h0", "h1", "h2", "h3", "h4"]
    np.testing.assert_array_equal(matrix, to_float16(vectors))
    assert store.counts(KEY) == {"shards": 2, "rows": 6, "images": 5}
    assert store.lookup("other|model|p", ["h0"]) == {}
    matrix, found = store.matrix(KEY, ["h2", "nope", "h0"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(matrix[[0, 2]], to_float16(vectors[[2, 0]]))
    assert not matrix[1].any()
    manifest = json.loads(store.manifest_path(KEY, "a").read_text())
    assert manifest["rows"] == 3 and len(manifest["covered"]) == 3


def test_a_shard_without_its_manifest_does_not_count_and_is_removed(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store")
    _write(store, "a", ["h0"], _vectors(1))
    _write(store, "b", ["h1"], _vectors(1, seed=1))
    store.manifest_path(KEY, "b").unlink()  # killed between the Parquet file and its manifest
    (store.model_dir(KEY) / ".shard-c.parquet.1234.tmp").write_bytes(b"half a shard")
    assert store.lookup(KEY, ["h0", "h1"]).keys() == {"h0"}
    assert store.covered(KEY) == {("/x/h0.png", 1, 2)}
    assert store.remove_partial(KEY) == 2
    assert sorted(p.name for p in store.model_dir(KEY).iterdir()) == [
        "model.json",
        "shard-a.done.json",
        "shard-a.parquet",
    ]


def test_embed_shard_skips_bad_images_and_stores_each_content_once(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 4)
    twin = tmp_path / "imgs" / "twin.png"
    twin.write_bytes(paths[0].read_bytes())
    broken = tmp_path / "imgs" / "broken.png"
    broken.write_bytes(b"not a png")
    store = EmbeddingStore(tmp_path / "store")
    model = FakeModel()
    key = image_cache_key(model)
    manifest = embed_shard(model, store, key, "s1", [*paths, twin, broken, tmp_path / "gone.png"], batch_size=2)
    assert manifest.rows == 4
    assert {s.item for s in manifest.skipped} == {str(broken), str(tmp_path / "gone.png")}
    assert len(manifest.covered) == 6  # the broken file counts as done (recorded), the missing one does not
    hashes, matrix = store.load(key)
    assert sorted(hashes) == sorted(content_hash(p) for p in paths)
    direct = embed_images(FakeModel(), paths).embeddings
    np.testing.assert_array_equal(matrix[[hashes.index(content_hash(p)) for p in paths]], direct)


def test_plan_skips_covered_inputs_and_replans_changed_files(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 6)
    store = EmbeddingStore(tmp_path / "store")
    model = FakeModel()
    key = image_cache_key(model)
    shards, done, skipped = plan_shards(store, key, paths, 4)
    assert [len(chunk) for _, chunk in shards] == [4, 2] and done == 0 and not skipped
    assert plan_shards(store, key, paths, 4)[0] == shards  # same inputs, same shard ids
    embed_shard(model, store, key, shards[0][0], shards[0][1])
    shards2, done2, _ = plan_shards(store, key, [*paths, tmp_path / "missing.png"], 4)
    assert done2 == 4 and [chunk for _, chunk in shards2] == [shards[1][1]]
    os.utime(paths[0], ns=(1, 1))  # a changed file is embedded again
    shards3, done3, skipped3 = plan_shards(store, key, [*paths, tmp_path / "missing.png"], 4)
    assert done3 == 3 and str(paths[0].resolve()) in shards3[0][1]
    assert [s.item for s in skipped3] == [str(tmp_path / "missing.png")]
    with pytest.raises(InputError, match="shard_size"):
        plan_shards(store, key, paths, 0)


def test_the_cache_reads_through_the_store_and_computes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_images(tmp_path / "imgs", 5)
    settings = Settings(cache_dir=tmp_path / "cache")
    store = EmbeddingStore.from_settings(settings)
    assert store.root == tmp_path / "cache" / "embedding-store"
    key = image_cache_key(FakeModel())
    embed_shard(FakeModel(), store, key, "s1", paths)
    model = FakeModel()
    cache = EmbeddingCache.from_settings(settings)
    with caplog.at_level(logging.INFO):
        first = embed_images(model, paths, cache)
    assert model.images_seen == 0 and first.misses == 0 and first.hits == 5
    assert "5 from cache, 0 computed" in caplog.text
    np.testing.assert_array_equal(first.embeddings, embed_images(FakeModel(), paths).embeddings)
    assert cache.counts()["images"] == 5  # imported: the next read is the SQLite file's
    for p in store.model_dir(key).glob("*.parquet"):
        p.unlink()
    second = embed_images(model, paths, cache)
    assert model.images_seen == 0 and second.misses == 0
    cache.close()


def test_a_damaged_store_is_reported_and_the_images_are_computed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_images(tmp_path / "imgs", 3)
    store = EmbeddingStore(tmp_path / "store")
    key = image_cache_key(FakeModel())
    embed_shard(FakeModel(), store, key, "s1", paths)
    next(store.model_dir(key).glob("*.parquet")).write_bytes(b"garbage")
    model = FakeModel()
    with caplog.at_level(logging.WARNING):
        result = embed_images(model, paths, EmbeddingCache(tmp_path / "c.sqlite3", store=store))
    assert model.images_seen == 3 and result.misses == 3
    assert "unreadable" in caplog.text


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)
    return path


def test_list_images_reads_folder_trees_csvs_mimic_metadata_and_jsonl(tmp_path: Path) -> None:
    root = tmp_path / "mimic-cxr-jpg"
    a = _png(root / "files/p10/p10000032/s50414267/d1.jpg", 10)
    b = _png(root / "files/p10/p10000032/s50414267/d2.jpg", 20)
    c = _png(root / "files/p11/p11000011/s51111111/d3.jpg", 30)
    (root / "files/p10/p10000032/s50414267.txt").write_text("report")
    tree, skipped = list_images(root / "files")
    assert tree == [a, b, c] and not skipped
    meta = tmp_path / "mimic-cxr-2.0.0-metadata.csv"
    meta.write_text(
        "dicom_id,subject_id,study_id,ViewPosition\nd1,10000032,50414267,PA\nd3,11000011,51111111,AP\n"
        "dx,10000032,50414267,PA\n"
    )
    listed, skipped = list_images(meta, image_root=root)
    assert listed == [a, c] and [s.reason.endswith("file not found") for s in skipped] == [True]
    groups = tmp_path / "groups.csv"
    groups.write_text(f"path,group_name\n{a},x\n{b},y\n{c},z\n{a},y\n,x\n")
    listed, skipped = list_images(groups)
    assert listed == [a, b, c] and [s.reason for s in skipped] == ["empty 'path' value"]
    pairs = tmp_path / "pairs.jsonl"
    rel = "files/p10/p10000032/s50414267/d1.jpg"
    pairs.write_text(json.dumps({"set1": "x", "set2": "y", "set1_images": [rel], "set2_images": [str(c)]}) + "\n")
    assert list_images(pairs, image_root=root)[0] == [a, c]
    with pytest.raises(InputError, match="missing column 'path'"):
        bad = tmp_path / "bad.csv"
        bad.write_text("x,y\n1,2\n")
        list_images(bad)
    with pytest.raises(InputError, match="no such folder or file"):
        list_images(tmp_path / "nowhere")


def test_missing_ray_is_a_one_line_error_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"raddiff\[scale\]"):
        import_ray()


def test_file_signature_names_the_resolved_path(tmp_path: Path) -> None:
    path = _png(tmp_path / "x.png", 1)
    resolved, size, mtime = file_signature(tmp_path / "." / "x.png")
    assert resolved == str(path.resolve()) and size == path.stat().st_size and mtime == path.stat().st_mtime_ns


def test_a_worker_failure_is_told_by_the_worker_s_own_error() -> None:
    text = (
        "ray::MapWorker(MapBatches(ShardEmbedder)).submit() (pid=1, ip=10.0.0.1)\n"
        '  File "tools/embeddings/job.py", line 9, in __call__\n'
        '    raise RuntimeError("CUDA out of memory")\n'
        "RuntimeError: CUDA out of memory\n\n"
        "The above exception was the direct cause of the following exception:\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
    )
    assert worker_error(Exception(text)) == "RuntimeError: CUDA out of memory"
    assert worker_error(Exception("\nsomething odd\n")) == "something odd"
