"""A persistent embedding cache: each image is embedded once per (model id, weights hash, preprocessing).

Images are keyed by the SHA-256 of their bytes (not their path), texts by their exact string. Vectors are
stored as float16 (unit vectors: the rounding error is below 1e-3 of a cosine) in one SQLite file in WAL
mode under ``Settings().cache_dir``; several processes can read and write it at once (SQLite's locking,
a busy timeout, one short transaction per batch), and a crash never leaves a half-written row. A corrupt
file is moved aside with a warning and rebuilt. File content hashes are memoised by (path, size, mtime)
so a second run does not re-read every image to find its key.

Whatever was computed or read, callers always get the float16-rounded values back, so a first run and a
cached run give the same numbers.

With an :class:`~tools.embeddings.store.EmbeddingStore` (the Parquet shards ``raddiff embed`` writes; the
settings' cache uses ``Settings.embedding_store``), an image missing from the SQLite file is looked up in the
store and, when found, imported into the file: a comparison of stored images computes nothing.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from tools.data.images import content_hash, load_image
from tools.data.sqlite_store import is_corruption, move_aside, open_wal_store
from tools.domain import InputError, SkippedItem, Study
from tools.scorers.base import image_cache_key, text_cache_key

if TYPE_CHECKING:
    from tools.embeddings.store import EmbeddingStore
    from tools.scorers.base import ImageTextModel
    from tools.settings import Settings

log = logging.getLogger(__name__)

CACHE_FILE = "embeddings.sqlite3"
SCHEMA_VERSION = "1"
_SQL_CHUNK = 500  # parameters per IN (...) query, well under SQLite's limit
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS images (
    model INTEGER NOT NULL, hash TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS texts (
    model INTEGER NOT NULL, text TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, text)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL
) WITHOUT ROWID;
"""


UNIT_NORM_TOLERANCE = 0.01
"""A cached row is served only when its norm is within this of 1 (the backends return unit rows; float16 rounding
moves a norm by under 1e-3): a zeroed, scaled or bit-flipped row is recomputed instead."""


_SHA256 = re.compile(r"[0-9a-f]{64}")
"""A memoised file hash is used only when it is a well-formed SHA-256 (else the file is hashed again)."""


def _is_unit_row(vec: np.ndarray) -> bool:
    if vec.size == 0 or not np.all(np.isfinite(vec)):
        return False
    return abs(float(np.linalg.norm(vec.astype(np.float32))) - 1.0) <= UNIT_NORM_TOLERANCE


def to_float16(vectors: np.ndarray) -> np.ndarray:
    """Round embeddings the way the cache stores them (float16), returned as float32."""
    return np.asarray(vectors, dtype=np.float32).astype(np.float16).astype(np.float32)


class EmbeddingCache:
    """Image and text embeddings on disk, shared by processes; see the module docstring."""

    def __init__(
        self, path: Path | str | None = None, *, timeout_s: float = 60.0, store: EmbeddingStore | None = None
    ) -> None:
        if path is None:
            from tools.embeddings.store import EmbeddingStore
            from tools.settings import Settings

            settings = Settings()
            path = settings.cache_dir / CACHE_FILE
            store = store or EmbeddingStore.from_settings(settings)
        self.path = Path(path).expanduser()
        self.store = store
        self.timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.RLock()
        self._model_ids: dict[str, int] = {}
        self.rebuilt = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingCache:
        """The cache in ``settings.cache_dir``, reading through the settings' embedding store."""
        from tools.embeddings.store import EmbeddingStore

        return cls(settings.cache_dir / CACHE_FILE, store=EmbeddingStore.from_settings(settings))

    # ------------------------------------------------------------ connection and corruption

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None  # after a fork, never reuse the parent's connection
        self._model_ids = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.path.parent}: cannot create the cache folder ({exc.strerror or exc})") from exc
        conn = open_wal_store(self.path, _SCHEMA, self.timeout_s, autocommit=True, check_same_thread=False)
        try:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
        except sqlite3.DatabaseError:
            conn.close()
            raise
        if version != SCHEMA_VERSION:
            conn.close()
            raise sqlite3.DatabaseError(f"not a database of this schema (version {version})")
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _rebuild(self, exc: BaseException) -> None:
        message = f"embedding cache {self.path} is corrupt ({exc}); moving it aside and rebuilding"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        log.warning(message)
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        move_aside(self.path, self.timeout_s)
        self.rebuilt = True

    def _run(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``action`` on the connection; on corruption, rebuild the file once and retry."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    return action(self._connect())
                except sqlite3.DatabaseError as exc:
                    if attempt or not is_corruption(exc):
                        raise
                    self._rebuild(exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close this process' connection (it reopens on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ rows

    def _model_id(self, conn: sqlite3.Connection, key: str) -> int:
        if key not in self._model_ids:
            conn.execute("INSERT OR IGNORE INTO models (key) VALUES (?)", (key,))
            self._model_ids[key] = int(conn.execute("SELECT id FROM models WHERE key = ?", (key,)).fetchone()[0])
        return self._model_ids[key]

    def _get(self, table: str, column: str, key: str, names: Sequence[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(names))

        def action(conn: sqlite3.Connection) -> dict[str, np.ndarray]:
            model = self._model_id(conn, key)
            found: dict[str, np.ndarray] = {}
            bad: list[str] = []
            for chunk in _chunks(wanted, _SQL_CHUNK):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT {column}, vec FROM {table} WHERE model = ? AND {column} IN ({marks})", (model, *chunk)
                )
                for name, blob in rows:
                    vec = np.frombuffer(blob, dtype=np.float16) if len(blob) % 2 == 0 else np.zeros(0, np.float16)
                    if not _is_unit_row(vec):
                        bad.append(name)
                        continue
                    found[name] = vec.astype(np.float32)
            if bad:
                log.warning("embedding cache: %d %s rows unreadable or not unit rows; recomputed", len(bad), table)
            sizes = [v.size for v in found.values()]
            if len(set(sizes)) > 1:  # keep the rows of the usual dimension; the odd ones are recomputed
                usual = max(set(sizes), key=sizes.count)
                log.warning("embedding cache: %s rows of %s disagree on dimension; odd ones recomputed", table, key)
                return {name: vec for name, vec in found.items() if vec.size == usual}
            return found

        return self._run(action)

    def _put(self, table: str, key: str, items: Mapping[str, np.ndarray]) -> None:
        if not items:
            return
        rows = []
        for name, vec in items.items():
            arr = np.asarray(vec, dtype=np.float32).reshape(-1)
            if arr.size == 0 or not np.all(np.isfinite(arr)):
                raise ValueError(f"embedding of {name!r} is empty or not finite; not cached")
            rows.append((name, arr.astype(np.float16).tobytes()))

        def action(conn: sqlite3.Connection) -> None:
            model = self._model_id(conn, key)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", [(model, n, b) for n, b in rows])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._run(action)

    def get_images(self, key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached image embeddings of model ``key`` (see :func:`image_cache_key`) by content hash.

        Hashes the SQLite file lacks are looked up in the embedding store (when there is one) and imported.
        """
        found = self._get("images", "hash", key, hashes)
        if self.store is None:
            return found
        missing = [h for h in dict.fromkeys(hashes) if h not in found]
        try:
            stored = self.store.lookup(key, missing) if missing else {}
        except (OSError, ValueError, InputError) as exc:  # a damaged shard, or no pyarrow: compute instead, say so
            log.warning("embedding store %s unreadable (%s); computing the missing images", self.store.root, exc)
            stored = {}
        if stored:
            self.put_images(key, stored)
            found.update(stored)
            log.info("embedding cache: %d images read from the embedding store %s", len(stored), self.store.root)
        return found

    def put_images(self, key: str, items: Mapping[str, np.ndarray]) -> None:
        """Store image embeddings (content hash -> vector) of model ``key``, in one transaction."""
        self._put("images", key, items)

    def get_texts(self, key: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached text embeddings of model ``key`` (see :func:`text_cache_key`) by exact text."""
        return self._get("texts", "text", key, texts)

    def put_texts(self, key: str, items: Mapping[str, np.ndarray]) -> None:
        """Store text embeddings (text -> vector) of model ``key``."""
        self._put("texts", key, items)

    def text_embeddings(self, model: ImageTextModel, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Embeddings of ``texts`` (text -> float16-rounded float32 vector), computing only the missing ones."""
        key = text_cache_key(model)
        found = self.get_texts(key, texts)
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = to_float16(model.encode_texts(missing))
            if fresh.shape[0] != len(missing):
                raise RuntimeError(f"{model.model_id}: {fresh.shape[0]} text embeddings for {len(missing)} texts")
            computed = dict(zip(missing, fresh, strict=True))
            self.put_texts(key, computed)
            found.update(computed)
        return found

    def file_hashes(self, paths: Sequence[Path]) -> dict[Path, str | SkippedItem]:
        """Content hash of each file, memoised by (path, size, mtime); an unreadable file gives a SkippedItem."""
        out: dict[Path, str | SkippedItem] = {}
        stats: dict[str, tuple[Path, int, int]] = {}
        for path in paths:
            try:
                st = path.stat()
            except FileNotFoundError:
                out[path] = SkippedItem(item=str(path), reason=f"{path}: file not found")
                continue
            except OSError as exc:
                out[path] = SkippedItem(item=str(path), reason=f"{path}: cannot read ({exc.strerror or exc})")
                continue
            stats[str(path.resolve())] = (path, st.st_size, st.st_mtime_ns)

        def lookup(conn: sqlite3.Connection) -> dict[str, tuple[int, int, str]]:
            known: dict[str, tuple[int, int, str]] = {}
            for chunk in _chunks(list(stats), _SQL_CHUNK):
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT path, size, mtime_ns, hash FROM files WHERE path IN ({marks})", chunk):
                    known[row[0]] = (row[1], row[2], row[3])
            return known

        known = self._run(lookup)
        fresh: list[tuple[str, int, int, str]] = []
        for resolved, (path, size, mtime) in stats.items():
            memo = known.get(resolved)
            if memo is not None and memo[0] == size and memo[1] == mtime and _SHA256.fullmatch(str(memo[2])):
                out[path] = memo[2]
                continue
            try:
                digest = content_hash(path)
            except InputError as exc:
                out[path] = SkippedItem(item=str(path), reason=str(exc))
                continue
            out[path] = digest
            fresh.append((resolved, size, mtime, digest))
        if fresh:

            def store(conn: sqlite3.Connection) -> None:
                conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fresh)

            self._run(store)
        return out

    def counts(self) -> dict[str, int]:
        """Rows per table (models, images, texts, files)."""

        def action(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                for t in ("models", "images", "texts", "files")
            }

        return self._run(action)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class EmbeddedImages:
    """Result of :func:`embed_images`. Unpacks as ``embeddings, skipped = embed_images(...)``."""

    embeddings: np.ndarray
    """(n_kept, D) float32, float16-rounded, one row per input that was not skipped, in input order."""
    kept: list[int]
    """Index into the inputs of each row of ``embeddings``."""
    skipped: list[SkippedItem] = field(default_factory=list)
    hits: int = 0
    misses: int = 0
    seconds: float = 0.0

    def __iter__(self) -> Iterator[Any]:
        yield self.embeddings
        yield self.skipped

    @property
    def hit_rate(self) -> float:
        """Share of distinct images served from the cache."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def _item_path(item: Path | str | Study) -> tuple[Path, str]:
    if isinstance(item, Study):
        return item.primary_image, item.study_id
    return Path(item), str(item)


def embed_images(
    model: ImageTextModel,
    items: Sequence[Path | str | Study],
    cache: EmbeddingCache | None = None,
    *,
    batch_size: int = 32,
    workers: int = 4,
) -> EmbeddedImages:
    """Embed the images of ``items`` (paths, or studies' primary images), each distinct image once.

    An unreadable image is reported as a :class:`~tools.domain.SkippedItem` and the run goes on. A model
    failure raises; it never becomes an empty or zero embedding. With ``cache``, images already embedded by
    this model (same weights and preprocessing) are not embedded again, whatever their path.
    """
    if batch_size < 1:
        raise InputError(f"batch_size: must be >= 1, got {batch_size}")
    start = time.perf_counter()
    paths = [_item_path(item) for item in items]
    skipped: dict[int, SkippedItem] = {}
    # the key of each input: its content hash with a cache, its position without one
    if cache is not None:
        hashes = cache.file_hashes([p for p, _ in paths])
        keys: list[str] = []
        for i, (path, name) in enumerate(paths):
            got = hashes[path]
            if isinstance(got, SkippedItem):
                skipped[i] = SkippedItem(item=name, reason=got.reason)
                keys.append("")
            else:
                keys.append(got)
        found = cache.get_images(image_cache_key(model), [k for k in keys if k])
    else:
        keys = [str(i) for i in range(len(paths))]
        found = {}
    todo: dict[str, int] = {}
    for i, key in enumerate(keys):
        if i not in skipped and key not in found and key not in todo:
            todo[key] = i
    hits = len({k for i, k in enumerate(keys) if i not in skipped and k in found})
    computed: dict[str, np.ndarray] = {}
    todo_items = list(todo.items())
    batches = [todo_items[s : s + batch_size] for s in range(0, len(todo_items), batch_size)]

    def read(entry: tuple[str, int]) -> tuple[str, np.ndarray | InputError]:
        key, index = entry
        try:
            return key, load_image(paths[index][0])
        except InputError as exc:
            return key, exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # decode the next batch (in parallel) while the model works on this one; at most two batches in memory
        upcoming = [pool.submit(read, entry) for entry in batches[0]] if batches else []
        for number in range(len(batches)):
            decoded = [future.result() for future in upcoming]
            upcoming = [pool.submit(read, entry) for entry in batches[number + 1]] if number + 1 < len(batches) else []
            good: list[tuple[str, np.ndarray]] = []
            for key, img in decoded:
                if isinstance(img, InputError):
                    for j, other in enumerate(keys):
                        if other == key and j not in skipped:
                            skipped[j] = SkippedItem(item=paths[j][1], reason=str(img))
                else:
                    good.append((key, img))
            if not good:
                continue
            vectors = to_float16(model.encode_images([img for _, img in good]))
            if vectors.ndim != 2 or vectors.shape[0] != len(good):
                raise RuntimeError(f"{model.model_id}: returned shape {vectors.shape} for {len(good)} images")
            if not np.all(np.isfinite(vectors)):
                raise RuntimeError(f"{model.model_id}: returned non-finite embeddings")
            batch_result = {k: v for (k, _), v in zip(good, vectors, strict=True)}
            if cache is not None:
                cache.put_images(image_cache_key(model), batch_result)
            computed.update(batch_result)
    table = {**found, **computed}
    kept = [i for i in range(len(paths)) if i not in skipped]
    dim = next(iter(table.values())).size if table else 0
    embeddings = np.stack([table[keys[i]] for i in kept]) if kept else np.zeros((0, dim), dtype=np.float32)
    log.info(
        "embedded %d images with %s: %d from cache, %d computed, %d skipped",
        len(kept),
        model.model_id,
        hits,
        len(computed),
        len(skipped),
    )
    return EmbeddedImages(
        embeddings=embeddings,
        kept=kept,
        skipped=[skipped[i] for i in sorted(skipped)],
        hits=hits,
        misses=len(todo),
        seconds=time.perf_counter() - start,
    )
