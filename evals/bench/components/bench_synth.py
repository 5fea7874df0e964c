"""SynthCXR speed: one-time volume preparation, first-use finding effects, and images/second at 256/512 px.

Run: ``python -m evals.bench.components.bench_synth [--n 40] [--cache-dir DIR]``. Prints figures; asserts nothing.
The baseline in the same run is the bare base render (no findings), so the ratio shows what findings cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Measure and print SynthCXR rendering speed."""
    from evals.synth.bench import random_findings
    from evals.synth.render import Renderer
    from evals.synth.volume import _load_volume_cached, load_volume
    from tools.reports.iu import load_iu_reports

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40, help="Images per measurement.")
    parser.add_argument("--cache-dir", type=Path, help="Cache dir (default: a fresh temporary one).")
    args = parser.parse_args(argv)
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="synth-bench-"))
    load_iu_reports()

    _load_volume_cached.cache_clear()
    t = time.perf_counter()
    vol = load_volume(cache)
    t_prep = time.perf_counter() - t
    _load_volume_cached.cache_clear()
    t = time.perf_counter()
    vol = load_volume(cache)
    t_disk = time.perf_counter() - t
    t = time.perf_counter()
    renderer = Renderer(vol)
    t_init = time.perf_counter() - t
    print(f"volume preparation (first time, from NIfTI): {t_prep:.2f} s")  # noqa: T201
    print(f"volume load from the disk cache:             {t_disk:.2f} s")  # noqa: T201
    print(f"renderer init (canonical base images):       {t_init:.2f} s")  # noqa: T201

    rng = np.random.default_rng(0)
    mixes = [random_findings(rng) for _ in range(args.n)]
    t = time.perf_counter()
    for i, mix in enumerate(mixes):  # warm the finding-effect cache (first use of each shape variant)
        renderer.render(mix, i, 64, with_report=False)
    print(f"first-use finding effects for {args.n} random mixes: {time.perf_counter() - t:.2f} s")  # noqa: T201
    renderer.render([], 0, 64)  # warm the report phrase bank
    for size in (256, 512):
        for label, use in (("no findings (baseline)", False), ("random mix + report", True)):
            t = time.perf_counter()
            for i, mix in enumerate(mixes):
                renderer.render(mix if use else [], i, size, with_report=use)
            dt = time.perf_counter() - t
            print(f"{size} px, {label:24s}: {args.n / dt:6.1f} images/s ({1000 * dt / args.n:.1f} ms/image)")  # noqa: T201
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
