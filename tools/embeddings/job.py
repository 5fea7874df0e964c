"""Embed a whole archive once, on Ray Data, into the :class:`~tools.embeddings.store.EmbeddingStore`.

The driver lists the inputs, drops those a finished shard already covers (same resolved path, size and
mtime: a killed or interrupted job resumes where it stopped) and cuts the rest into shards. Each shard is
one row of a Ray Dataset; ``map_batches`` sends the rows to a pool of :class:`ShardEmbedder` actors (one
GPU each when the cluster has GPUs, else ``cpus_per_actor`` CPUs), which load the scorer once, embed their
shard with :func:`~tools.embeddings.cache.embed_images` (the same decoding, batching and float16 rounding as a
comparison) and write its Parquet file and manifest straight into the store, so every node writes in
parallel. The driver only reads back each finished shard's summary, for progress and the final figures.

Ray runs locally by default (``num_cpus`` CPUs, no dashboard, a small object store); with ``RAY_ADDRESS``
set, :func:`start_ray` connects to that cluster instead (the store root must then be a folder every node
sees, and every node needs this package installed). ``ray`` comes with the ``scale`` extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools.domain import InputError, RadDiffError, SkippedItem
from tools.embeddings.store import INSTALL_HINT, EmbeddingStore, ShardManifest, file_signature

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 512
LOCAL_OBJECT_STORE_MB = 256


def import_ray() -> Any:
    """``ray`` with Ray Data, or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (loads the submodule)
    except ImportError:
        raise InputError(f"raddiff embed runs on Ray Data, which is not installed; {INSTALL_HINT}") from None
    return ray


def _project_root() -> str:
    import tools

    return str(Path(tools.__file__).resolve().parent.parent)


def start_ray(*, num_cpus: int | None = None, object_store_mb: int = LOCAL_OBJECT_STORE_MB) -> bool:
    """Connect to ``RAY_ADDRESS``'s cluster, or start a local Ray runtime; True when this call started Ray.

    A local runtime gets ``num_cpus`` CPUs (default: all), no dashboard and an object store of
    ``object_store_mb`` MB (shards travel as paths, never as pixels), and its workers import this checkout.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        path = os.pathsep.join(p for p in (_project_root(), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            object_store_memory=object_store_mb * 1024 * 1024,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    return True


def stop_ray() -> None:
    """Shut the Ray runtime of this process down (a no-op when none is running)."""
    ray = import_ray()
    if ray.is_initialized():
        ray.shutdown()


# ---------------------------------------------------------------- one shard (no Ray needed)


def embed_shard(
    model: Any,
    store: EmbeddingStore,
    key: str,
    shard_id: str,
    paths: Sequence[Path | str],
    *,
    batch_size: int = 32,
    worker: str = "",
) -> ShardManifest:
    """Embed one shard's images with ``model`` and write the shard (each distinct image once) and its manifest.

    An unreadable image is skipped and recorded in the manifest (a resumed job does not retry it unless the
    file changes); a model failure raises and writes nothing.
    """
    from tools.data.images import content_hash
    from tools.embeddings.cache import embed_images

    started = time.perf_counter()
    skipped: list[SkippedItem] = []
    readable: list[Path] = []
    signatures: list[tuple[str, int, int]] = []
    hashes: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            signature = file_signature(path)
            digest = content_hash(path)
        except (OSError, InputError) as exc:
            skipped.append(
                SkippedItem(item=str(path), reason=str(exc) if isinstance(exc, InputError) else f"{path}: {exc}")
            )
            continue
        readable.append(path)
        signatures.append(signature)
        hashes.append(digest)
    result = embed_images(model, readable, None, batch_size=batch_size)
    skipped.extend(result.skipped)
    seen: set[str] = set()
    rows: list[int] = []
    for position, index in enumerate(result.kept):
        if hashes[index] not in seen:
            seen.add(hashes[index])
            rows.append(position)
    kept = [result.kept[r] for r in rows]
    dim = result.embeddings.shape[1] if result.embeddings.size else 1
    vectors = result.embeddings[rows] if rows else np.zeros((0, dim), dtype=np.float32)
    return store.write_shard(
        key,
        shard_id,
        [hashes[i] for i in kept],
        vectors,
        paths=[signatures[i][0] for i in kept],
        sizes=[signatures[i][1] for i in kept],
        mtimes=[signatures[i][2] for i in kept],
        covered=signatures,
        skipped=skipped,
        seconds=time.perf_counter() - started,
        worker=worker,
    )


class ShardEmbedder:
    """The Ray Data actor: loads the scorer once, then embeds and writes each shard it is given."""

    def __init__(self, scorer: str, device: str, dtype: str, batch_size: int, store_root: str, key: str) -> None:
        from tools.scorers.base import image_cache_key
        from tools.scorers.registry import load_scorer

        self.model = load_scorer(scorer, device=device, dtype=dtype, batch_size=batch_size)
        found = image_cache_key(self.model)
        if found != key:
            raise RuntimeError(f"worker loaded {found!r} but the job was planned for {key!r}; the nodes disagree")
        self.store = EmbeddingStore(store_root)
        self.key = key
        self.batch_size = batch_size
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """Embed every shard of ``batch`` (columns shard, paths as JSON); one summary row per shard."""
        out: dict[str, list[Any]] = {"shard": [], "inputs": [], "rows": [], "skipped": [], "seconds": [], "worker": []}
        for shard_id, paths_json in zip(batch["shard"], batch["paths"], strict=True):
            paths = json.loads(str(paths_json))
            manifest = embed_shard(
                self.model, self.store, self.key, str(shard_id), paths, batch_size=self.batch_size, worker=self.worker
            )
            out["shard"].append(manifest.shard_id)
            out["inputs"].append(len(paths))
            out["rows"].append(manifest.rows)
            out["skipped"].append(json.dumps([s.model_dump() for s in manifest.skipped]))
            out["seconds"].append(manifest.seconds)
            out["worker"].append(manifest.worker)
        return out


# ---------------------------------------------------------------- the job


@dataclass
class ShardDone:
    """One finished shard, as the driver sees it (for progress)."""

    shard_id: str
    inputs: int
    rows: int
    skipped: list[SkippedItem]
    seconds: float
    worker: str


@dataclass
class EmbedJobResult:
    """What :func:`run_embed_job` did."""

    key: str
    store_root: Path
    inputs: int
    """Distinct images listed."""
    already_done: int
    """Of those, covered by shards finished before this run (skipped)."""
    shards_before: int
    shards_run: int
    images_stored: int
    """Rows written by this run (distinct images per shard)."""
    skipped: list[SkippedItem] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time from submitting the shards to the last one finished (model loading in the actors included)."""
    actors: int = 0
    num_gpus: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Images embedded per second of :attr:`seconds`."""
        return self.images_stored / self.seconds if self.seconds > 0 else 0.0


def plan_shards(
    store: EmbeddingStore, key: str, paths: Sequence[Path], shard_size: int
) -> tuple[list[tuple[str, list[str]]], int, list[SkippedItem]]:
    """(shards still to do as (id, resolved paths), inputs already covered, inputs that cannot be stat'ed).

    A shard's id is a digest of its paths, so re-planning the same remaining inputs gives the same shards.
    """
    if shard_size < 1:
        raise InputError(f"shard_size: must be >= 1, got {shard_size}")
    covered = store.covered(key)
    todo: list[str] = []
    done = 0
    skipped: list[SkippedItem] = []
    for path in paths:
        try:
            signature = file_signature(Path(path))
        except OSError as exc:
            skipped.append(SkippedItem(item=str(path), reason=f"{path}: cannot read ({exc.strerror or exc})"))
            continue
        if signature in covered:
            done += 1
        else:
            todo.append(signature[0])
    todo = list(dict.fromkeys(todo))
    shards = []
    for start in range(0, len(todo), shard_size):
        chunk = todo[start : start + shard_size]
        shard_id = hashlib.sha256(("\n".join(chunk)).encode()).hexdigest()[:16]
        shards.append((shard_id, chunk))
    return shards, done, skipped


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def worker_error(exc: BaseException) -> str:
    """The worker's own error (``RuntimeError: ...``) from a Ray error's text, not Ray's wrapper around it."""
    lines = [line.strip() for line in str(exc).splitlines()]
    found = [m for m in map(_ERROR_LINE.match, lines) if m and not m.group(1).startswith("ray.")]
    if found:
        return f"{found[0].group(1)}: {found[0].group(2)}"
    return next((line for line in lines if line), type(exc).__name__)


def _collect(row: dict[str, Any], result: EmbedJobResult, on_shard: Callable[[ShardDone], None] | None) -> None:
    done = ShardDone(
        shard_id=str(row["shard"]),
        inputs=int(row["inputs"]),
        rows=int(row["rows"]),
        skipped=[SkippedItem.model_validate(s) for s in json.loads(str(row["skipped"]))],
        seconds=float(row["seconds"]),
        worker=str(row["worker"]),
    )
    result.shards_run += 1
    result.images_stored += done.rows
    result.skipped.extend(done.skipped)
    if on_shard is not None:
        on_shard(done)


def run_embed_job(
    paths: Sequence[Path],
    store: EmbeddingStore,
    *,
    scorer: str,
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 32,
    shard_size: int = DEFAULT_SHARD_SIZE,
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    on_plan: Callable[[int, int, int], None] | None = None,
    on_shard: Callable[[ShardDone], None] | None = None,
) -> EmbedJobResult:
    """Embed every image of ``paths`` not yet in ``store`` with ``scorer``, on the running Ray runtime.

    Call :func:`start_ray` first. ``actors`` defaults to the cluster's GPUs (one each) or its CPUs divided by
    ``cpus_per_actor``. ``on_plan(inputs, already_done, shards_to_run)`` is called once before embedding and
    ``on_shard`` after each finished shard (progress).
    """
    if not cpus_per_actor > 0:
        raise InputError(f"cpus_per_actor: must be > 0, got {cpus_per_actor}")
    ray = import_ray()
    if not ray.is_initialized():
        raise InputError("run_embed_job: Ray is not running; call tools.embeddings.job.start_ray() first")
    from tools.scorers.base import image_cache_key
    from tools.scorers.registry import load_scorer

    key = image_cache_key(load_scorer(scorer, device="cpu", dtype="float32", batch_size=batch_size))
    distinct = list(dict.fromkeys(Path(p) for p in paths))
    shards_before = len(store.manifests(key))
    removed = store.remove_partial(key)
    if removed:
        log.info("embedding store: removed %d partial files of an interrupted job", removed)
    shards, already_done, skipped = plan_shards(store, key, distinct, shard_size)
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0.0))
    use_gpu = gpus >= 1 and device != "cpu"
    if device == "cuda" and not use_gpu:
        raise InputError("device 'cuda': the Ray cluster has no GPU (use --device cpu or auto)")
    if actors is None:
        actors = int(gpus) if use_gpu else max(1, int(float(resources.get("CPU", 1.0)) // cpus_per_actor))
    actors = max(1, min(actors, len(shards) or 1))
    if on_plan is not None:
        on_plan(len(distinct), already_done, len(shards))
    result = EmbedJobResult(
        key=key,
        store_root=store.root,
        inputs=len(distinct),
        already_done=already_done,
        shards_before=shards_before,
        shards_run=0,
        images_stored=0,
        skipped=skipped,
        actors=actors,
        num_gpus=1.0 if use_gpu else 0.0,
    )
    if not shards:
        return result
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller shows one bar over shards
    dataset = ray.data.from_items([{"shard": sid, "paths": json.dumps(chunk)} for sid, chunk in shards])
    dataset = dataset.map_batches(
        ShardEmbedder,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=result.num_gpus,
        num_cpus=cpus_per_actor,
        fn_constructor_kwargs={
            "scorer": scorer,
            "device": "cuda" if use_gpu else ("cpu" if device == "auto" else device),
            "dtype": dtype,
            "batch_size": batch_size,
            "store_root": str(store.root),
            "key": key,
        },
    )
    started = time.perf_counter()
    try:
        for row in dataset.iter_rows():
            _collect(row, result, on_shard)
    except ray.exceptions.RayError as exc:  # a worker failed: one line, the finished shards stay
        raise RadDiffError(
            f"embed: a shard failed after {result.shards_run} of {len(shards)} finished ({worker_error(exc)}); "
            "run the command again to resume"
        ) from exc
    result.seconds = time.perf_counter() - started
    log.info(
        "embedded %d images into %d shards with %s in %.1f s (%.1f images/s, %d actors); %d already stored",
        result.images_stored,
        result.shards_run,
        key,
        result.seconds,
        result.images_per_s,
        actors,
        already_done,
    )
    return result
