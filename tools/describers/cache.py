"""On-disk cache of image descriptions, keyed by (backend, model id, prompt, image content hash).

One SQLite database in WAL mode (``Settings().cache_dir / "descriptions" / "descriptions.sqlite"``):
several processes may read and write it at once, and a crash never leaves a half-written entry (each
write is one transaction). Only successful descriptions are stored; errors are never cached. Each entry
carries a checksum of its key and text; a broken file is moved aside and rebuilt (:class:`DescriptionCache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from tools.data.images import content_hash, load_image
from tools.data.sqlite_store import is_corruption, move_aside, open_wal_store
from tools.describers.base import Describer, DescriberError, array_hash
from tools.settings import Settings

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS descriptions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    image_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    checksum TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))
)
"""
_COLUMNS = ("key", "backend", "model_id", "prompt", "image_hash", "text", "checksum", "created")

ImageSource = np.ndarray | Path
"""An image given either as a canonical array or as a file (loaded only on a cache miss)."""

log = logging.getLogger(__name__)


def description_key(backend: str, model_id: str, prompt: str, image_hash: str) -> str:
    """The cache key: SHA-256 of the JSON list ``[backend, model_id, prompt, image_hash]``."""
    payload = json.dumps([backend, model_id, prompt, image_hash], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def entry_checksum(key: str, text: str) -> str:
    """Checksum stored with each entry: SHA-256 of the key and the text (a row that fails it is not served)."""
    return hashlib.sha256(f"{key}\0{text}".encode()).hexdigest()


class _OtherSchema(sqlite3.DatabaseError):
    """The file is a SQLite database, but not a description cache of this schema."""


class DescriptionCache:
    """A process-safe SQLite store of descriptions; ``get_many`` / ``put_many`` work in one transaction.

    A file that is not a database, has broken pages or another schema is moved aside (``<path>.corrupt``) with
    a warning and rebuilt empty; a row whose checksum does not match its text is ignored and described again.
    """

    def __init__(self, path: Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.rebuilt = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DescriberError(f"{self.path}: cannot create the description cache ({exc.strerror or exc})") from None
        self._run(lambda conn: None)  # create or check the store now

    def _open(self) -> sqlite3.Connection:
        conn = open_wal_store(self.path, _SCHEMA, self.timeout_s)
        try:
            columns = tuple(str(row[1]) for row in conn.execute("PRAGMA table_info(descriptions)"))
            if columns != _COLUMNS:
                raise _OtherSchema(f"another schema (columns: {', '.join(columns)})")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``action`` on a fresh connection; a broken file is moved aside and rebuilt once, then retried."""
        for attempt in (0, 1):
            try:
                conn = self._open()
                try:
                    return action(conn)
                finally:
                    conn.close()
            except sqlite3.DatabaseError as exc:
                if attempt or not (isinstance(exc, _OtherSchema) or is_corruption(exc)):
                    raise DescriberError(f"{self.path}: description cache failed ({exc})") from None
                message = f"description cache {self.path} is unusable ({exc}); moving it aside and rebuilding"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                log.warning(message)
                move_aside(self.path, self.timeout_s)
                self.rebuilt = True
        raise AssertionError("unreachable")  # pragma: no cover

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Return ``{key: text}`` for the keys present in the cache whose checksum matches."""
        wanted = list(dict.fromkeys(keys))

        def action(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            bad = 0
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, text, checksum FROM descriptions WHERE key IN ({marks})", chunk)
                for key, text, checksum in rows:
                    if isinstance(text, str) and checksum == entry_checksum(str(key), text):
                        found[str(key)] = text
                    else:
                        bad += 1
            if bad:
                log.warning("description cache %s: %d entries failed their checksum; describing again", self.path, bad)
            return found

        return self._run(action)

    def put_many(self, entries: Iterable[tuple[str, str, str, str, str, str]]) -> None:
        """Store ``(key, backend, model_id, prompt, image_hash, text)`` rows in one transaction."""
        rows = [(*row, entry_checksum(row[0], row[5])) for row in entries]
        if not rows:
            return

        def action(conn: sqlite3.Connection) -> None:
            with conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO descriptions "
                    "(key, backend, model_id, prompt, image_hash, text, checksum) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

        self._run(action)

    def __len__(self) -> int:
        return self._run(lambda conn: int(conn.execute("SELECT COUNT(*) FROM descriptions").fetchone()[0]))


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
    :func:`tools.data.images.content_hash` of its file), or ``None`` to compute it from the source; ``image`` is a
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
