"""``raddiff embed``: embed every image of folders, CSVs or JSONL pair files once, on Ray Data, into the store."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def embed_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff embed``."""
    parser.add_argument("sources", type=Path, nargs="+", metavar="SOURCE", help="Folder tree, .csv or .jsonl file.")
    parser.add_argument("--scorer", help="Scorer: mini, chexzero:PATH, open_clip:NAME[@TAG], hf-hub:ID.")
    parser.add_argument("--store", type=Path, help="Embedding store folder (default: <cache-dir>/embedding-store).")
    parser.add_argument("--image-root", type=Path, help="Root for relative image paths of CSV/JSONL sources.")
    parser.add_argument("--shard-size", type=int, default=None, help="Images per shard (default 512).")
    parser.add_argument("--actors", type=int, help="Embedding actors (default: one per GPU, else one per CPU).")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs each actor reserves (default 1).")
    parser.add_argument(
        "--ray-cpus", type=int, help="CPUs of the local Ray runtime (default: all; not with RAY_ADDRESS)."
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(run=_embed)


def _embed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from raddiff.cli.common import settings_from
    from tools.data.loaders import list_images
    from tools.domain import InputError
    from tools.embeddings.job import DEFAULT_SHARD_SIZE, ShardDone, run_embed_job, start_ray, stop_ray
    from tools.embeddings.store import EmbeddingStore
    from tools.scorers.registry import scorer_scores_reports

    settings = settings_from(args)
    if scorer_scores_reports(settings.scorer):
        raise InputError("embed: scorer 'reports' scores report text; embed needs an image-text scorer")
    store = EmbeddingStore(args.store) if args.store else EmbeddingStore.from_settings(settings)
    paths: list[Path] = []
    skipped = []
    for source in args.sources:
        found, bad = list_images(source, image_root=settings.image_root)
        paths.extend(found)
        skipped.extend(bad)
    print(f"listed {len(paths)} images from {len(args.sources)} sources ({len(skipped)} skipped)")
    for item in skipped[:10]:
        print(f"  skipped {item.reason}")
    if not paths:
        raise InputError("embed: no images found in " + ", ".join(map(str, args.sources)))
    started_here = start_ray(num_cpus=args.ray_cpus)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our bar and summary instead of Ray Data's
    bar: tqdm | None = None

    def planned(inputs: int, done: int, shards: int) -> None:
        nonlocal bar
        print(f"store {store.root}: {done} of {inputs} images already stored, {shards} shards to embed")
        if not args.quiet and shards:
            bar = tqdm(total=inputs - done, unit="img", desc="embedding", smoothing=0.1)

    def progress(shard: ShardDone) -> None:
        if bar is not None:
            bar.update(shard.inputs)

    try:
        result = run_embed_job(
            paths,
            store,
            scorer=settings.scorer,
            device=settings.device,
            dtype=settings.dtype,
            batch_size=settings.batch_size,
            shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            on_plan=planned,
            on_shard=progress,
        )
    finally:
        if bar is not None:
            bar.close()
        if started_here:
            stop_ray()
    where = "GPU" if result.num_gpus else "CPU"
    print(
        f"embedded {result.images_stored} images in {result.shards_run} shards in {result.seconds:.1f} s: "
        f"{result.images_per_s:.1f} images/s ({result.actors} {where} actors, batch size {settings.batch_size}); "
        f"{result.already_done} were already stored"
    )
    if result.skipped:
        print(f"{len(result.skipped)} images skipped while embedding; first: {result.skipped[0].reason}")
    counts = store.counts(result.key)
    print(f"store holds {counts['images']} images of {result.key} in {counts['shards']} shards")
    return 0
