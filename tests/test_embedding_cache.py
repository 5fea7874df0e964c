"""The persistent embedding cache and embed_images: content keys, float16, skips, errors, corruption, processes."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.domain import Study
from tools.embeddings.cache import EmbeddingCache, embed_images, to_float16
from tools.scorers.base import ImageTextModel, image_cache_key

DIM = 8


class FakeModel:
    """A deterministic image-text model that counts what it embeds (features of the pixels, normalised)."""

    def __init__(self, weights_hash: str = "w1", preprocess_version: str = "p1", fail: str | None = None) -> None:
        self.model_id = "fake"
        self.weights_hash = weights_hash
        self.preprocess_version = preprocess_version
        self.logit_scale = 1.0
        self.images_seen = 0
        self.texts_seen: list[str] = []
        self.fail = fail

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if self.fail == "raise":
            raise RuntimeError("CUDA out of memory (simulated)")
        self.images_seen += len(images)
        out = np.stack(
            [np.array([img.mean(), img.std(), img[0, 0], img[-1, -1], *img.shape, 1.0, 0.5]) for img in images]
        )
        if self.fail == "nan":
            out[0, 0] = np.nan
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_seen.extend(texts)
        out = np.stack([np.array([len(t), t.count("e"), 1, 2, 3, 4, 5, 6], dtype=np.float32) for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (12 + i % 3, 10), dtype=np.uint8), mode="L").save(path)
        paths.append(path)
    return paths


def test_fake_model_meets_the_interface() -> None:
    assert isinstance(FakeModel(), ImageTextModel)


def test_second_run_is_served_from_the_cache(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 10)
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    model = FakeModel()
    first = embed_images(model, paths, cache, batch_size=3)
    assert (first.hits, first.misses, model.images_seen) == (0, 10, 10)
    second = embed_images(model, paths, cache, batch_size=4)
    assert (second.hits, second.misses, second.hit_rate, model.images_seen) == (10, 0, 1.0, 10)
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    # the float16-rounded values come back on the first run too, so both runs agree exactly
    np.testing.assert_array_equal(first.embeddings, to_float16(first.embeddings))
    uncached = embed_images(FakeModel(), paths, None, batch_size=5, workers=1)
    np.testing.assert_array_equal(uncached.embeddings, first.embeddings)
    embeddings, skipped = second  # unpacks as (embeddings, skipped)
    assert embeddings.shape == (10, DIM) and skipped == []
    # another process' view (a fresh object on the same file) sees the rows
    assert EmbeddingCache(tmp_path / "cache.sqlite3").counts()["images"] == 10


def test_stored_as_float16_blobs(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 3)
    cache = EmbeddingCache(tmp_path / "c.sqlite3")
    embed_images(FakeModel(), paths, cache)
    with sqlite3.connect(tmp_path / "c.sqlite3") as conn:
        sizes = [row[0] for row in conn.execute("SELECT length(vec) FROM images")]
    assert sizes == [2 * DIM] * 3


def test_keyed_by_content_not_path(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 4)
    cache = EmbeddingCache(tmp_path / "c.sqlite3")
    model = FakeModel()
    embed_images(model, paths, cache)
    copy = tmp_path / "elsewhere" / "renamed.png"
    copy.parent.mkdir()
    shutil.copy(paths[2], copy)
    again = embed_images(model, [copy, paths[0]], cache)
    assert (again.hits, again.misses, model.images_seen) == (2, 0, 4)
    # the same path with new content is a new image
    time.sleep(0.01)
    Image.fromarray(np.full((9, 9), 7, dtype=np.uint8), mode="L").save(paths[0])
    changed = embed_images(model, [paths[0]], cache)
    assert (changed.hits, changed.misses, model.images_seen) == (0, 1, 5)
    # duplicates in one call are embedded once
    dup = embed_images(FakeModel(), [paths[1], copy, paths[1]], EmbeddingCache(tmp_path / "other.sqlite3"))
    assert dup.misses == 2 and dup.embeddings.shape == (3, DIM)
    np.testing.assert_array_equal(dup.embeddings[0], dup.embeddings[2])


def test_each_model_weights_and_preprocessing_has_its_own_entries(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 3)
    cache = EmbeddingCache(tmp_path / "c.sqlite3")
    base = FakeModel()
    embed_images(base, paths, cache)
    for other in (FakeModel(weights_hash="w2"), FakeModel(preprocess_version="p2")):
        assert image_cache_key(other) != image_cache_key(base)
        result = embed_images(other, paths, cache)
        assert (result.hits, result.misses) == (0, 3)
    assert embed_images(FakeModel(), paths, cache).hits == 3


def test_unreadable_images_are_skipped_and_the_run_goes_on(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 3)
    broken = tmp_path / "imgs" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "imgs" / "missing.png"
    cache = EmbeddingCache(tmp_path / "c.sqlite3")
    studies = [Study(study_id="s-broken", image_paths=[broken]), Study(study_id="s-ok", image_paths=[paths[1]])]
    for use_cache in (cache, None):
        result = embed_images(FakeModel(), [paths[0], broken, missing, paths[2]], use_cache)
        assert result.kept == [0, 3] and result.embeddings.shape == (2, DIM)
        assert [s.item for s in result.skipped] == [str(broken), str(missing)]
        assert "corrupt image" in result.skipped[0].reason or "not an image" in result.skipped[0].reason
        assert "not found" in result.skipped[1].reason
    by_study = embed_images(FakeModel(), studies, cache)
    assert by_study.kept == [1] and by_study.skipped[0].item == "s-broken"
    assert str(broken) in by_study.skipped[0].reason
    nothing = embed_images(FakeModel(), [missing], cache)
    assert nothing.embeddings.shape[0] == 0 and len(nothing.skipped) == 1


def test_model_errors_raise_and_are_never_cached(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 3)
    cache = EmbeddingCache(tmp_path / "c.sqlite3")
    with pytest.raises(RuntimeError, match="out of memory"):
        embed_images(FakeModel(fail="raise"), paths, cache)
    with pytest.raises(RuntimeError, match="non-finite"):
        embed_images(FakeModel(fail="nan"), paths, cache)
    assert cache.counts()["images"] == 0
    assert embed_images(FakeModel(), paths, cache).misses == 3


def test_text_embeddings_are_cached(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite3")
    model = FakeModel()
    first = cache.text_embeddings(model, ["pleural effusion", "no pleural effusion", "pleural effusion"])
    assert model.texts_seen == ["pleural effusion", "no pleural effusion"]
    second = cache.text_embeddings(model, ["no pleural effusion", "cardiomegaly"])
    assert model.texts_seen[2:] == ["cardiomegaly"]
    np.testing.assert_array_equal(first["no pleural effusion"], second["no pleural effusion"])
    np.testing.assert_array_equal(second["cardiomegaly"], to_float16(model.encode_texts(["cardiomegaly"]))[0])


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    paths = write_images(tmp_path / "imgs", 3)
    embed_images(FakeModel(), paths, EmbeddingCache(path))
    path.write_bytes(b"this is not a database, it was overwritten by something" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    cache = EmbeddingCache(path)
    model = FakeModel()
    with pytest.warns(RuntimeWarning, match="corrupt"):
        result = embed_images(model, paths, cache)
    assert cache.rebuilt and result.misses == 3 and result.embeddings.shape == (3, DIM)
    assert Path(str(path) + ".corrupt").exists()
    assert embed_images(model, paths, cache).hits == 3


def _worker(args: tuple[str, list[str], int]) -> tuple[int, list[list[float]]]:
    cache_path, paths, batch = args
    result = embed_images(
        FakeModel(), [Path(p) for p in paths], EmbeddingCache(cache_path, timeout_s=30), batch_size=batch
    )
    return result.misses, result.embeddings.tolist()


def test_several_processes_share_one_cache(tmp_path: Path) -> None:
    paths = [str(p) for p in write_images(tmp_path / "imgs", 40)]
    cache_path = str(tmp_path / "shared.sqlite3")
    jobs = [(cache_path, paths[i * 10 : i * 10 + 20], 2 + i) for i in range(3)]  # overlapping halves
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_worker, jobs)
    assert all(len(emb) == 20 for _, emb in results)
    cache = EmbeddingCache(cache_path)
    assert cache.counts()["images"] == 40
    final = embed_images(FakeModel(), [Path(p) for p in paths], cache)
    assert final.hits == 40
    for i, (_, emb) in enumerate(results):
        np.testing.assert_array_equal(np.array(emb, dtype=np.float32), final.embeddings[i * 10 : i * 10 + 20])


def _open_and_count(cache_path: str) -> int:
    return EmbeddingCache(cache_path, timeout_s=30).counts()["images"]


def test_many_processes_opening_a_new_cache_at_once_all_succeed(tmp_path: Path) -> None:
    # Switching a new file to WAL can answer "database is locked" at once, without the busy handler;
    # before connection set-up took a file lock, about one round in fifteen failed here.
    with multiprocessing.get_context("fork").Pool(8) as pool:
        for round_ in range(25):
            cache_path = str(tmp_path / f"fresh{round_}.sqlite3")
            assert pool.map(_open_and_count, [cache_path] * 8) == [0] * 8


def test_default_location_is_the_settings_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADDIFF_CACHE_DIR", str(tmp_path / "cachedir"))
    cache = EmbeddingCache()
    assert cache.path == tmp_path / "cachedir" / "embeddings.sqlite3"
    cache.text_embeddings(FakeModel(), ["x"])
    assert cache.path.is_file()
