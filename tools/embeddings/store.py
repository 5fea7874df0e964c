"""An archive-scale embedding store: Parquet shards, one per input chunk, that a cluster writes in parallel.

Layout under the store root, one folder per model (its image cache key, see
:func:`~tools.scorers.base.image_cache_key`, hashed into the folder name and kept in ``model.json``)::

    <root>/<key digest>/model.json
    <root>/<key digest>/shard-<id>.parquet     columns: hash (image content SHA-256), vec (D little-endian
                                               float16 as fixed_size_binary(2 D)), path, size, mtime_ns
    <root>/<key digest>/shard-<id>.done.json   the shard's manifest, written last: its rows, the inputs it
                                               covers (path, size, mtime), the images it skipped and why

A shard counts only once its manifest exists: both files are written to a temporary name and renamed, so a
job killed mid-shard leaves no half shard behind, and a resumed job skips every input a manifest covers.
Rows are keyed exactly as the SQLite cache keys them (content hash under the model's cache key), and
vectors are stored as float16 like the cache's, so :class:`~tools.embeddings.cache.EmbeddingCache` reads
through the store on a miss and gets the same numbers. ``pyarrow`` is imported only when shards exist
(it comes with the ``scale`` extra).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tools.domain import InputError, SkippedItem

log = logging.getLogger(__name__)

STORE_DIR = "embedding-store"
SHARD_SUFFIX = ".parquet"
DONE_SUFFIX = ".done.json"
INSTALL_HINT = 'install the scale extra: pip install "raddiff[scale]"'
VEC_DTYPE = np.dtype("<f2")
"""Stored vectors: little-endian float16, ``D`` of them per row in a ``fixed_size_binary(2 D)`` cell."""


def import_pyarrow() -> Any:
    """``pyarrow`` (and its parquet module), or a one-line error naming the extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (loads the submodule)
    except ImportError:
        raise InputError(f"the embedding store needs pyarrow, which is not installed; {INSTALL_HINT}") from None
    return pyarrow


def file_signature(path: Path) -> tuple[str, int, int]:
    """(resolved path, size, mtime in ns): what a manifest records of an input, to know it is done."""
    st = path.stat()
    return str(path.resolve()), int(st.st_size), int(st.st_mtime_ns)


@dataclass(frozen=True)
class ShardManifest:
    """What a finished shard holds and covers (the content of its ``.done.json``)."""

    shard_id: str
    rows: int
    covered: list[tuple[str, int, int]]
    skipped: list[SkippedItem]
    seconds: float
    worker: str = ""
    written_at: float = 0.0
    """Unix time the worker finished the shard (its own clock)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "shard_id": self.shard_id,
            "rows": self.rows,
            "covered": [list(c) for c in self.covered],
            "skipped": [s.model_dump() for s in self.skipped],
            "seconds": self.seconds,
            "worker": self.worker,
            "written_at": self.written_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardManifest:
        """Parse a manifest written by :meth:`to_json`."""
        return cls(
            shard_id=str(data["shard_id"]),
            rows=int(data["rows"]),
            covered=[(str(p), int(s), int(m)) for p, s, m in data["covered"]],
            skipped=[SkippedItem.model_validate(s) for s in data.get("skipped", [])],
            seconds=float(data.get("seconds", 0.0)),
            worker=str(data.get("worker", "")),
            written_at=float(data.get("written_at", 0.0)),
        )


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class EmbeddingStore:
    """Parquet shards of image embeddings under ``root``; see the module docstring."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    @classmethod
    def from_settings(cls, settings: Any) -> EmbeddingStore:
        """The store of ``settings`` (``embedding_store``, default ``<cache_dir>/embedding-store``)."""
        configured = getattr(settings, "embedding_store", None)
        return cls(configured if configured is not None else Path(settings.cache_dir) / STORE_DIR)

    # ------------------------------------------------------------ layout

    def model_dir(self, key: str) -> Path:
        """The folder of one model's shards (``key``: the image cache key)."""
        return self.root / hashlib.sha256(key.encode()).hexdigest()[:24]

    def _ensure_model_dir(self, key: str) -> Path:
        folder = self.model_dir(key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{folder}: cannot create the embedding store folder ({exc.strerror or exc})") from exc
        meta = folder / "model.json"
        if not meta.exists():
            _atomic_write_bytes(meta, json.dumps({"key": key}).encode())
        return folder

    def shard_path(self, key: str, shard_id: str) -> Path:
        """The Parquet file of a shard."""
        return self.model_dir(key) / f"shard-{shard_id}{SHARD_SUFFIX}"

    def manifest_path(self, key: str, shard_id: str) -> Path:
        """The done marker (manifest) of a shard."""
        return self.model_dir(key) / f"shard-{shard_id}{DONE_SUFFIX}"

    # ------------------------------------------------------------ manifests

    def manifests(self, key: str) -> list[ShardManifest]:
        """Manifests of the finished shards of model ``key``; an unreadable manifest is ignored with a warning."""
        folder = self.model_dir(key)
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.glob(f"shard-*{DONE_SUFFIX}")):
            try:
                manifest = ShardManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("embedding store: unreadable manifest %s (%s); its shard will be redone", path, exc)
                continue
            if not self.shard_path(key, manifest.shard_id).is_file():
                log.warning("embedding store: %s has no Parquet file; its shard will be redone", path)
                continue
            out.append(manifest)
        return out

    def covered(self, key: str) -> set[tuple[str, int, int]]:
        """(resolved path, size, mtime) of every input a finished shard of ``key`` covers."""
        return {c for m in self.manifests(key) for c in m.covered}

    def remove_partial(self, key: str) -> int:
        """Delete temporary files and Parquet files without a manifest (left by a killed job); their count."""
        folder = self.model_dir(key)
        if not folder.is_dir():
            return 0
        done = {m.shard_id for m in self.manifests(key)}
        removed = 0
        for path in folder.iterdir():
            is_tmp = path.name.endswith(".tmp")
            orphan = path.name.endswith(SHARD_SUFFIX) and path.name[len("shard-") : -len(SHARD_SUFFIX)] not in done
            if is_tmp or orphan:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # ------------------------------------------------------------ writing

    def write_shard(
        self,
        key: str,
        shard_id: str,
        hashes: Sequence[str],
        vectors: np.ndarray,
        *,
        paths: Sequence[str],
        sizes: Sequence[int],
        mtimes: Sequence[int],
        covered: Sequence[tuple[str, int, int]],
        skipped: Sequence[SkippedItem] = (),
        seconds: float = 0.0,
        worker: str = "",
    ) -> ShardManifest:
        """Write one shard (rows: hash, float16 vector, path, size, mtime) and then its manifest, atomically."""
        pa = import_pyarrow()
        import pyarrow.parquet as pq

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(hashes):
            raise ValueError(f"shard {shard_id}: {vectors.shape} vectors for {len(hashes)} hashes")
        if not np.all(np.isfinite(vectors)):
            raise ValueError(f"shard {shard_id}: embeddings are not finite; not stored")
        dim = vectors.shape[1] if vectors.shape[0] else 1
        half = np.ascontiguousarray(vectors.astype(VEC_DTYPE))
        vec = pa.FixedSizeBinaryArray.from_buffers(pa.binary(2 * dim), len(hashes), [None, pa.py_buffer(half)])
        table = pa.table(
            {
                "hash": pa.array(list(hashes), type=pa.string()),
                "vec": vec,
                "path": pa.array(list(paths), type=pa.string()),
                "size": pa.array(list(sizes), type=pa.int64()),
                "mtime_ns": pa.array(list(mtimes), type=pa.int64()),
            }
        )
        self._ensure_model_dir(key)
        target = self.shard_path(key, shard_id)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        codecs = {"hash": "zstd", "vec": "none", "path": "zstd", "size": "zstd", "mtime_ns": "zstd"}
        pq.write_table(table, tmp, compression=codecs)  # float16 bytes barely compress: stored raw, read fast
        os.replace(tmp, target)
        manifest = ShardManifest(
            shard_id=shard_id,
            rows=len(hashes),
            covered=[tuple(c) for c in covered],  # type: ignore[misc]
            skipped=list(skipped),
            seconds=seconds,
            worker=worker,
            written_at=time.time(),
        )
        _atomic_write_bytes(self.manifest_path(key, shard_id), json.dumps(manifest.to_json()).encode())
        return manifest

    # ------------------------------------------------------------ reading

    def _shard_files(self, key: str) -> list[str]:
        return [str(self.shard_path(key, m.shard_id)) for m in self.manifests(key) if m.rows > 0]

    def _read(self, files: list[str], hashes: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
        pa = import_pyarrow()
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        dataset = ds.dataset(files, format="parquet")
        expression = pc.field("hash").isin(pa.array(list(dict.fromkeys(hashes)), pa.string())) if hashes else None
        table = dataset.to_table(columns=["hash", "vec"], filter=expression)
        if table.num_rows == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        vec = table.column("vec").combine_chunks()
        width = vec.type.byte_width
        data = vec.buffers()[1]
        matrix = np.frombuffer(data, dtype=VEC_DTYPE, count=len(vec) * width // 2, offset=vec.offset * width)
        return table.column("hash").to_pylist(), matrix.reshape(len(vec), width // 2)

    def lookup(self, key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings of model ``key`` by content hash (float32 of the stored float16); absent ones left out."""
        matrix, found = self.matrix(key, hashes)
        out: dict[str, np.ndarray] = {}
        for i in np.flatnonzero(found):
            out.setdefault(hashes[int(i)], matrix[i])
        return out

    def matrix(self, key: str, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rows for ``hashes`` in their order, (N, D) float32, and a boolean (N,) of those found (others are 0).

        The bulk read for archive-scale scoring: one shard at a time (memory stays at the output plus one
        shard), no per-image objects. A row found in several shards is taken from the first; a stored row
        that is not finite counts as not found.
        """
        files = self._shard_files(key) if len(hashes) else []
        found = np.zeros(len(hashes), dtype=bool)
        if not files:
            return np.zeros((len(hashes), 0), dtype=np.float32), found
        wanted: dict[str, list[int]] = {}
        for i, name in enumerate(hashes):
            wanted.setdefault(name, []).append(i)
        out: np.ndarray | None = None
        for file in files:
            names, stored = self._read([file], None)
            if out is None and len(names):
                out = np.zeros((len(hashes), stored.shape[1]), dtype=np.float32)
            if out is None or stored.shape[1] != out.shape[1]:
                log.warning("embedding store: %s has another dimension than the first shard; ignored", file)
                continue
            source: list[int] = []
            target: list[int] = []
            for row, name in enumerate(names):
                for i in wanted.pop(name, ()):
                    source.append(row)
                    target.append(i)
            if not target:
                continue
            dest = np.asarray(target, dtype=np.int64)
            out[dest] = stored[np.asarray(source, dtype=np.int64)]
            good = np.isfinite(out[dest]).all(axis=1)
            out[dest[~good]] = 0.0
            found[dest[good]] = True
            if not wanted:
                break
        if out is None:
            return np.zeros((len(hashes), 0), dtype=np.float32), found
        return out, found

    def load(self, key: str) -> tuple[list[str], np.ndarray]:
        """Every stored embedding of model ``key``: (distinct content hashes, (N, D) float32), in shard order."""
        files = self._shard_files(key)
        if not files:
            return [], np.zeros((0, 0), dtype=np.float32)
        names, matrix = self._read(files, None)
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            first.setdefault(name, i)
        rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        return list(first), matrix[rows].astype(np.float32)

    def counts(self, key: str) -> dict[str, int]:
        """Finished shards, stored rows and distinct images of model ``key``."""
        manifests = self.manifests(key)
        files = [str(self.shard_path(key, m.shard_id)) for m in manifests if m.rows > 0]
        distinct = 0
        if files:
            import_pyarrow()
            import pyarrow.dataset as ds

            distinct = len(set(ds.dataset(files, format="parquet").to_table(columns=["hash"])["hash"].to_pylist()))
        return {"shards": len(manifests), "rows": sum(m.rows for m in manifests), "images": distinct}
