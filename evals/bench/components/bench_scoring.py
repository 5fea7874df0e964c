"""Speed of the scoring engine, against a RadDiff-style reference loop measured in the same run.

1. Ranking: N images x H hypotheses (default 20,000 x 200, D = 512, embeddings given), all statistics
   (AUROC, DeLong CI, Mann-Whitney p, BH q, means, Cohen's d), best of 3, single-prompt and with contrast
   prompts; the reference does, for each hypothesis, what RadDiff's ranker does: gather the embeddings from a
   per-image store, cosine, sklearn ``roc_auc_score``, scipy ``ttest_ind`` (timed on ``--ref-hyps``
   hypotheses and scaled linearly to H). Prints both times and the ratio, and checks the AUROCs against sklearn.
2. Embedding throughput: images/second of the ``mini`` model on CPU (or, while its weights are missing, a
   small random open_clip ViT as a stand-in), then the same images again, served from the embedding cache
   (hit rate and time); a ViT-B/32 on GPU when CUDA is present (skipped with a message otherwise).
3. Negation-aware scoring on simulated CLIP-like embeddings: AUROC of "X" vs "no X" groups with the
   single prompt and with the (prompt, contrast) pair softmax.

Run: ``python -m evals.bench.components.bench_scoring [--n 20000] [--h 200] [--d 512] [--images 64]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tools.domain import InputError
from tools.scoring.engine import score_hypotheses

TINY_VIT: dict[str, Any] = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 128, "layers": 4, "width": 256, "patch_size": 16, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 256, "heads": 4, "layers": 4},
}


def best_of(runs: int, fn: Any) -> tuple[float, Any]:
    """Best wall time of ``runs`` calls (the machine is shared) and the last result."""
    best, out = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_ranking(n: int, h: int, d: int, ref_hyps: int, seed: int) -> None:
    """Section 1: vectorized ranking vs the per-hypothesis reference loop."""
    from scipy.stats import ttest_ind
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    in_a = rng.random(n) < 0.4
    img = rng.standard_normal((n, d)).astype(np.float32)
    txt = rng.standard_normal((h, d)).astype(np.float32)
    con = rng.standard_normal((h, d)).astype(np.float32)
    img[in_a] += 0.02 * txt[0]
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    con /= np.linalg.norm(con, axis=1, keepdims=True)
    score_hypotheses(img[:500], in_a[:500], txt[:5])  # warm-up

    ours, records = best_of(3, lambda: score_hypotheses(img, in_a, txt))
    ours_con, _ = best_of(3, lambda: score_hypotheses(img, in_a, txt, contrast_embeddings=con))

    store = {i: img[i] for i in range(n)}  # the reference keeps one embedding per image id
    ref_n = min(ref_hyps, h)
    start = time.perf_counter()
    ref_auc = []
    for j in range(ref_n):
        scores = np.stack([store[i] for i in range(n)]) @ txt[j]
        ref_auc.append(roc_auc_score(in_a, scores))
        ttest_ind(scores[in_a], scores[~in_a], equal_var=False)
    reference = (time.perf_counter() - start) * h / ref_n
    diff = max(abs(records[j].auroc - ref_auc[j]) for j in range(ref_n))
    print(f"== ranking: N={n:,} images, H={h} hypotheses, D={d}, all statistics (best of 3)")
    print(f"   ours, single prompt        {ours:8.3f} s")
    print(f"   ours, with contrast        {ours_con:8.3f} s")
    print(f"   reference-style loop       {reference:8.1f} s   (timed on {ref_n} hypotheses, scaled to {h})")
    print(f"   speed-up                   {reference / ours:8.0f}x   (single prompt)")
    print(f"   max |AUROC - sklearn|      {diff:8.1e}")


def _write_images(folder: Path, count: int, seed: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:512, 0:448]
    for i in range(count):
        base = 0.5 + 0.3 * np.sin(xx / (20 + i % 7)) * np.cos(yy / (30 + i % 5))
        pixels = np.clip(base + 0.1 * rng.standard_normal(base.shape), 0, 1)
        path = folder / f"cxr_{i:04d}.png"
        Image.fromarray((pixels * 255).astype(np.uint8), mode="L").save(path)
        paths.append(path)
    return paths


def _cpu_model() -> tuple[Any, str]:
    from tools.scorers.registry import load_scorer

    try:
        return load_scorer("mini", device="cpu"), "mini"
    except InputError as exc:
        from tools.scorers.openclip import load_open_clip

        print(f"   (mini model not available: {exc})")
        model = load_open_clip("ViT-B-32", "random", device="cpu", **TINY_VIT)
        return model, "stand-in: random open_clip ViT, 4 layers x 256 wide, 128 px"


def bench_embedding(count: int, batch_size: int, seed: int) -> None:
    """Section 2: images/second on CPU (mini or stand-in) and from the cache; GPU ViT-B/32 when present."""
    import torch

    from tools.embeddings.cache import EmbeddingCache, embed_images

    print(f"== embedding throughput: {count} PNG images (448 x 512), batch {batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = _write_images(folder, count, seed)
        model, label = _cpu_model()
        cache = EmbeddingCache(folder / "cache.sqlite3")
        first = embed_images(model, paths, cache, batch_size=batch_size)
        second = embed_images(model, paths, cache, batch_size=batch_size)
        print(f"   {label}, CPU ({torch.get_num_threads()} threads)")
        print(
            f"   first run   {count / first.seconds:8.1f} images/s   ({first.seconds:.2f} s, "
            f"cache hit rate {first.hit_rate:.0%})"
        )
        print(
            f"   second run  {count / second.seconds:8.1f} images/s   ({second.seconds:.3f} s, "
            f"cache hit rate {second.hit_rate:.0%})"
        )
        if not torch.cuda.is_available():
            print("   ViT-B/32 on GPU: skipped (no CUDA device on this machine)")
            return
        from tools.scorers.openclip import load_open_clip

        gpu = load_open_clip("ViT-B-32-quickgelu", "random", device="cuda", dtype="float16", batch_size=batch_size)
        gpu_cache = EmbeddingCache(folder / "gpu.sqlite3")
        embed_images(gpu, paths[: min(8, count)], None, batch_size=batch_size)  # warm-up
        run = embed_images(gpu, paths, gpu_cache, batch_size=batch_size)
        print(f"   ViT-B/32 (random weights), CUDA float16: {count / run.seconds:8.1f} images/s (decode included)")


def bench_negation(seeds: int) -> None:
    """Section 3: single prompt vs pair softmax on simulated CLIP-like embeddings (as in the tests)."""
    single, paired = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        d, n = 64, 400
        generic, finding, negation = np.linalg.qr(rng.standard_normal((d, 3)))[0].T
        in_a = np.arange(n) < n // 2
        offset = rng.uniform(0.5, 3.0, n)
        img = offset[:, None] * generic + 0.5 * in_a[:, None] * finding + 0.15 * rng.standard_normal((n, d))
        text_x = 2.0 * generic + 1.0 * finding
        text_no_x = 2.0 * generic + 0.5 * finding + np.sqrt(0.75) * negation
        single.append(score_hypotheses(img, in_a, text_x[None])[0].auroc)
        paired.append(score_hypotheses(img, in_a, text_x[None], contrast_embeddings=text_no_x[None])[0].auroc)
    print(f"== negation-aware scoring, 'X' vs 'no X' on simulated CLIP-like embeddings ({seeds} seeds)")
    print(f"   single-prompt cosine AUROC   {np.mean(single):.3f} +/- {np.std(single):.3f}")
    print(f"   pair softmax AUROC           {np.mean(paired):.3f} +/- {np.std(paired):.3f}")


def main(argv: list[str] | None = None) -> None:
    """Run the three sections and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="images")
    parser.add_argument("--h", type=int, default=200, help="hypotheses")
    parser.add_argument("--d", type=int, default=512, help="embedding dimension")
    parser.add_argument("--ref-hyps", type=int, default=20, help="hypotheses the reference loop is timed on")
    parser.add_argument("--images", type=int, default=64, help="images for the throughput section")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-embedding", action="store_true", help="only the ranking and negation sections")
    args = parser.parse_args(argv)
    bench_ranking(args.n, args.h, args.d, args.ref_hyps, args.seed)
    if not args.skip_embedding:
        bench_embedding(args.images, args.batch_size, args.seed)
    bench_negation(20)


if __name__ == "__main__":
    main()
