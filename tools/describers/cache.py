"""On-disk cache of image descriptions, keyed by (backend, model id, prompt, image content hash).

One SQLite database in WAL mode (``Settings().cache_dir / "descriptions" / "descriptions.sqlite"``):
several processes may read and write it at once, and a crash never leaves a half-written entry (each
write is one transaction). Only successful descriptions are stored; errors are never cached.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from tools.describers.base import Describer, DescriberError, array_hash
from tools.images import content_hash, load_image
from tools.settings import Settings
from tools.sqlite_store import open_wal_store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS descriptions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    image_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""

ImageSource = np.ndarray | Path
"""An image given either as a canonical array or as a file (loaded only on a cache miss)."""


def description_key(backend: str, model_id: str, prompt: str, image_hash: str) -> str:
    """The cache key: SHA-256 of the JSON list ``[backend, model_id, prompt, image_hash]``."""
    payload = json.dumps([backend, model_id, prompt, image_hash], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class DescriptionCache:
    """A process-safe SQLite store of descriptions; ``get_many`` / ``put_many`` work in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            open_wal_store(self.path, _SCHEMA, 60.0).close()
        except sqlite3.Error as exc:
            raise DescriberError(f"{self.path}: cannot open the description cache ({exc})") from None
        except OSError as exc:
            raise DescriberError(f"{self.path}: cannot create the description cache ({exc.strerror or exc})") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60.0)
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Return ``{key: text}`` for the keys present in the cache."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        conn = self._connect()
        try:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, text FROM descriptions WHERE key IN ({marks})", chunk)
                found.update({str(k): str(t) for k, t in rows})
        finally:
            conn.close()
        return found

    def put_many(self, entries: Iterable[tuple[str, str, str, str, str, str]]) -> None:
        """Store ``(key, backend, model_id, prompt, image_hash, text)`` rows in one transaction."""
        rows = list(entries)
        if not rows:
            return
        conn = self._connect()
        try:
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO descriptions (key, backend, model_id, prompt, image_hash, text) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        finally:
            conn.close()

    def __len__(self) -> int:
        conn = self._connect()
        try:
            return int(conn.execute("SELECT COUNT(*) FROM descriptions").fetchone()[0])
        finally:
            conn.close()


def default_description_cache(settings: Settings | None = None) -> DescriptionCache:
    """The description cache under ``settings.cache_dir / "descriptions"``."""
    settings = settings or Settings()
    return DescriptionCache(Path(settings.cache_dir) / "descriptions" / "descriptions.sqlite")


def image_source_hash(source: ImageSource) -> str:
    """Content hash of an image source: the file's bytes for a path, the array's bytes for an array."""
    if isinstance(source, np.ndarray):
        return array_hash(source)
    return content_hash(Path(source))


def describe_cached(
    describer: Describer,
    images_with_keys: Sequence[tuple[str | None, ImageSource]],
    prompt: str,
    cache: DescriptionCache | None,
) -> list[str]:
    """Describe images, calling the backend only for cache misses (each distinct miss once).

    Each item is ``(image_hash, image)``: ``image_hash`` is the content hash of the image (e.g.
    :func:`tools.images.content_hash` of its file), or ``None`` to compute it from the source; ``image`` is a
    canonical array or a file path, loaded only when missed. ``cache=None`` describes everything uncached.
    """
    hashes = [key if key is not None else image_source_hash(source) for key, source in images_with_keys]
    keys = [description_key(describer.backend, describer.model_id, prompt, h) for h in hashes]
    found = cache.get_many(keys) if cache is not None else {}
    missing: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key not in found and key not in missing:
            missing[key] = index
    if missing:
        arrays = []
        for index in missing.values():
            source = images_with_keys[index][1]
            arrays.append(source if isinstance(source, np.ndarray) else load_image(source))
        texts = describer.describe(arrays, prompt)
        if len(texts) != len(arrays):
            raise DescriberError(
                f"{describer.backend}:{describer.model_id} returned {len(texts)} descriptions for {len(arrays)} images"
            )
        new = dict(zip(missing, texts, strict=True))
        if cache is not None:
            cache.put_many(
                (key, describer.backend, describer.model_id, prompt, hashes[index], new[key])
                for key, index in missing.items()
            )
        found = {**found, **new}
    return [found[key] for key in keys]
