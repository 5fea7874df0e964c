"""``raddiff embed`` on local Ray: killed mid-job, resumed, each image stored once, compare reads the store."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import requires_mini_weights
from tools.data.images import content_hash

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

ROOT = Path(__file__).resolve().parent.parent
N_PER_GROUP = 18
SHARD_SIZE = 2


def _images(folder: Path, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (384, 384), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _kill_when_first_shard_is_done(cmd: list[str], store: Path, log_path: Path) -> int:
    """Run ``cmd`` in its own process group; SIGKILL the group (Ray's processes too) once a shard is finished."""
    import psutil

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 400
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if any(store.glob("*/shard-*.done.json")):
                    break
                time.sleep(0.005)
            children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
        for child in children:  # anything that left the group: by its pid
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.kill()
    return proc.returncode


@pytest.mark.slow
@requires_mini_weights
def test_embed_is_killed_resumed_stores_each_image_once_and_compare_reads_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tools.data.folders import load_folders
    from tools.embeddings.cache import EmbeddingCache, embed_images
    from tools.embeddings.job import run_embed_job, start_ray, stop_ray
    from tools.embeddings.store import EmbeddingStore
    from tools.scorers.registry import load_scorer
    from tools.settings import Settings

    images = tmp_path / "images"
    paths = _images(images / "a", N_PER_GROUP, 0) + _images(images / "b", N_PER_GROUP, 1)
    cache_dir = tmp_path / "cache"
    settings = Settings(cache_dir=cache_dir, device="cpu")
    store = EmbeddingStore.from_settings(settings)
    cmd = [
        sys.executable,
        "-m",
        "raddiff.cli.main",
        "--cache-dir",
        str(cache_dir),
        "--device",
        "cpu",
        "embed",
        str(images),
    ]
    cmd += ["--shard-size", str(SHARD_SIZE), "--actors", "1", "--ray-cpus", "2", "--quiet"]
    code = _kill_when_first_shard_is_done(cmd, store.root, tmp_path / "killed.log")
    log_text = (tmp_path / "killed.log").read_text()
    assert code == -signal.SIGKILL, f"the job was not killed mid-way (exit {code}):\n{log_text[-2000:]}"

    model = load_scorer("mini", device="cpu")
    key = f"{model.model_id}|{model.weights_hash}|{model.preprocess_version}"
    total_shards = 2 * N_PER_GROUP // SHARD_SIZE
    done_at_kill = len(store.manifests(key))
    assert 1 <= done_at_kill < total_shards

    assert start_ray(num_cpus=2, object_store_mb=100)
    try:
        resumed = run_embed_job(paths, store, scorer="mini", device="cpu", shard_size=SHARD_SIZE, actors=1)
    finally:
        stop_ray()
    assert resumed.shards_before == done_at_kill
    assert resumed.already_done == SHARD_SIZE * done_at_kill  # the finished shards were skipped
    assert resumed.shards_run == total_shards - done_at_kill
    assert resumed.images_stored == len(paths) - SHARD_SIZE * done_at_kill
    assert store.counts(key) == {"shards": total_shards, "rows": len(paths), "images": len(paths)}
    hashes, stored = store.load(key)
    assert sorted(hashes) == sorted(content_hash(p) for p in paths)
    assert not list(store.model_dir(key).glob("*.tmp"))

    # what `raddiff compare` does: the settings' cache, reading through the store, computes nothing
    comparison = load_folders(images / "a", images / "b").comparison
    studies = [*comparison.set_a.studies, *comparison.set_b.studies]
    cache = EmbeddingCache.from_settings(settings)
    with caplog.at_level(logging.INFO, logger="tools.embeddings.cache"):
        read = embed_images(model, studies, cache)
    cache.close()
    assert read.misses == 0 and read.hits == len(paths)
    assert f"{len(paths)} from cache, 0 computed" in caplog.text
    fresh = embed_images(model, [s.primary_image for s in studies]).embeddings
    np.testing.assert_allclose(read.embeddings, fresh, atol=2e-3)
    np.testing.assert_array_equal(read.embeddings[0], stored[hashes.index(content_hash(studies[0].primary_image))])
