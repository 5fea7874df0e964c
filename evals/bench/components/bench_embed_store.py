"""Archive-scale embedding: ``raddiff embed`` on Ray Data vs the single-process path, and scoring from the store.

1. Throughput (``--images``): the same N synthetic PNG images (smooth radiograph-like gradients with noise,
   ``--size`` pixels) embedded with the ``mini`` model, back to back in one run: first the current
   single-process path (:func:`~tools.embeddings.cache.embed_images` into a fresh SQLite cache), then a local
   Ray runtime (:func:`~tools.embeddings.job.run_embed_job` into a fresh Parquet store); the single process
   is also timed with one torch thread, as each Ray actor runs (a reference). Prints images/s of
   each and their ratio three ways: Ray end to end (runtime start + job), the job alone (the actors' model
   loading included) and Ray's steady state (from the first finished shard to the last, by the times the
   actors wrote into the shards' manifests). Then checks that the stored vectors equal the single-process
   ones (max difference printed).
2. Scoring from the store (``--score-n``): a store of 2 x N synthetic stored embeddings (random unit
   vectors, D = ``--d``, with a small planted signal in group A for the first 5 hypotheses; written in
   shards and not timed), then, timed: the bulk read of both groups' rows from the store by content hash
   and all statistics of ``--hypotheses`` hypotheses with contrast prompts (AUROC, DeLong CI, Mann-Whitney p,
   BH q, means, Cohen's d) in this one process. Prints seconds and the peak resident memory
   (``resource.getrusage``; the synthetic store is generated shard by shard, so the peak is the scoring's).

Run: ``python -m evals.bench.components.bench_embed_store [--images 600] [--score-n 100000] [--skip-throughput]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

PLANTED = 5


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` synthetic grayscale PNGs (a vertical gradient, a bright blob and noise), ``size`` pixels square."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
        img = 0.3 + 0.4 * yy + 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        img += rng.normal(0, 0.03, img.shape)
        path = folder / f"img{i:05d}.png"
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def bench_throughput(n: int, size: int, ray_cpus: int, shard_size: int, actors: int | None, batch_size: int) -> None:
    """Section 1: the single-process path, then local Ray, on the same images, back to back."""
    import torch

    from tools.data.images import content_hash
    from tools.embeddings.cache import EmbeddingCache, embed_images
    from tools.embeddings.job import run_embed_job, start_ray, stop_ray
    from tools.embeddings.store import EmbeddingStore
    from tools.scorers.registry import load_scorer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_images(folder / "images", n, size)
        model = load_scorer("mini", device="cpu", batch_size=batch_size)
        embed_images(model, paths[: min(16, n)], None, batch_size=batch_size)  # warm-up, not timed
        started = time.perf_counter()
        single = embed_images(model, paths, EmbeddingCache(folder / "single.sqlite3"), batch_size=batch_size)
        single_s = time.perf_counter() - started
        threads = torch.get_num_threads()
        print(
            f"single process: {n} images in {single_s:.2f} s = {n / single_s:.1f} images/s "
            f"(mini, CPU, {threads} torch threads)"
        )
        torch.set_num_threads(1)  # what each Ray actor runs with (OMP_NUM_THREADS=1): a reference, not the ratio
        started = time.perf_counter()
        embed_images(model, paths, EmbeddingCache(folder / "single1.sqlite3"), batch_size=batch_size)
        one_s = time.perf_counter() - started
        torch.set_num_threads(threads)
        print(f"  (same with 1 torch thread, as each Ray actor: {n / one_s:.1f} images/s)")

        store = EmbeddingStore(folder / "store")
        started = time.perf_counter()
        start_ray(num_cpus=ray_cpus, object_store_mb=200)
        ray_up = time.perf_counter()
        try:
            job = run_embed_job(
                paths,
                store,
                scorer="mini",
                device="cpu",
                batch_size=batch_size,
                shard_size=shard_size,
                actors=actors,
            )
        finally:
            stop_ray()
        ended = ray_up + job.seconds
        end_to_end = ended - started
        print(
            f"local Ray ({ray_cpus} CPUs, {job.actors} actors, shards of {shard_size}): runtime start "
            f"{ray_up - started:.1f} s, job {job.seconds:.1f} s (actors' model loading included)"
        )
        rates = {
            "end to end": n / end_to_end,
            "job alone": n / job.seconds,
        }
        manifests = sorted(store.manifests(job.key), key=lambda m: m.written_at)
        if len(manifests) >= 2:  # the actors' own clocks: the driver receives finished shards in bursts
            steady_images = sum(m.rows for m in manifests[1:])
            rates["steady state"] = steady_images / max(manifests[-1].written_at - manifests[0].written_at, 1e-9)
        single_rate = n / single_s
        for name, rate in rates.items():
            print(f"  Ray {name}: {rate:.1f} images/s = {rate / single_rate:.2f}x the single process")
        stored, found = store.matrix(job.key, [content_hash(p) for p in paths])
        diff = float(np.abs(stored - single.embeddings).max())
        print(f"  store holds all {int(found.sum())}/{n} images; max |store - single process| = {diff:.2e}")


def bench_scoring(n: int, hypotheses: int, d: int, shard_rows: int, seed: int) -> None:
    """Section 2: 2 x ``n`` stored embeddings read back by content hash and scored, seconds and peak memory."""
    from tools.embeddings.store import EmbeddingStore
    from tools.scoring.engine import score_hypotheses

    rng = np.random.default_rng(seed)
    txt = rng.standard_normal((hypotheses, d)).astype(np.float32)
    con = rng.standard_normal((hypotheses, d)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    con /= np.linalg.norm(con, axis=1, keepdims=True)
    key = f"synthetic-d{d}|bench|v1"
    total = 2 * n
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddingStore(Path(tmp) / "store")
        started = time.perf_counter()
        for start in range(0, total, shard_rows):
            stop = min(start + shard_rows, total)
            rows = rng.standard_normal((stop - start, d)).astype(np.float32)
            in_a = np.arange(start, stop) < n
            rows[in_a] += 0.03 * d**0.5 * (txt[:PLANTED] - con[:PLANTED]).sum(axis=0) / PLANTED
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
            hashes = [f"{i:064x}" for i in range(start, stop)]
            store.write_shard(
                key,
                f"{start:09d}",
                hashes,
                rows,
                paths=hashes,
                sizes=[0] * len(hashes),
                mtimes=[0] * len(hashes),
                covered=[],
            )
        print(
            f"synthetic store: {total} embeddings (D={d}) in {-(-total // shard_rows)} shards, written in "
            f"{time.perf_counter() - started:.1f} s (not timed below); peak RSS so far {_peak_rss_mb():.0f} MB"
        )
        wanted = [f"{i:064x}" for i in range(total)]
        group_a = np.arange(total) < n
        started = time.perf_counter()
        matrix, found = store.matrix(key, wanted)
        read_s = time.perf_counter() - started
        if not found.all():
            raise RuntimeError(f"the store lost {int((~found).sum())} of the {total} embeddings")
        scores = score_hypotheses(matrix, group_a, txt, contrast_embeddings=con)
        total_s = time.perf_counter() - started
        planted = [round(s.auroc, 3) for s in scores[:PLANTED]]
        others = np.array([s.auroc for s in scores[PLANTED:]])
        print(
            f"scoring {n} vs {n} stored images x {hypotheses} hypotheses (contrast prompts, all statistics): "
            f"{total_s:.2f} s ({read_s:.2f} s reading the store, {total_s - read_s:.2f} s statistics); "
            f"peak RSS {_peak_rss_mb():.0f} MB"
        )
        print(
            f"  planted AUROCs {planted}; other hypotheses {others.min():.3f}-{others.max():.3f}; "
            f"min q of the planted {min(s.q_value for s in scores[:PLANTED]):.2g}"
        )


def main(argv: list[str] | None = None) -> None:
    """Run the sections and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="images for the throughput section")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray runtime")
    parser.add_argument("--actors", type=int, default=None, help="embedding actors (default: one per CPU)")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--score-n", type=int, default=100_000, help="stored images per group for scoring")
    parser.add_argument("--hypotheses", type=int, default=200)
    parser.add_argument("--d", type=int, default=512, help="embedding dimension")
    parser.add_argument("--shard-rows", type=int, default=10_000, help="rows per synthetic shard")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.skip_scoring:
        bench_scoring(args.score_n, args.hypotheses, args.d, args.shard_rows, args.seed)
    if not args.skip_throughput:
        bench_throughput(args.images, args.size, args.ray_cpus, args.shard_size, args.actors, args.batch_size)


if __name__ == "__main__":
    main()
