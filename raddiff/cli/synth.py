"""``raddiff synth render|bench``: render SynthCXR images and build SynthDiffBench (light to import)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evals.synth.findings import PlantedFinding


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands ``render`` and ``bench`` of ``raddiff synth``."""
    sub = parser.add_subparsers(dest="synth_command", metavar="SUBCOMMAND", required=True)
    render = sub.add_parser("render", help="Render N images with the given findings (PNG + report sidecars).")
    render.add_argument("out_dir", type=Path, help="Output folder.")
    render.add_argument(
        "--finding",
        action="append",
        default=[],
        metavar="KEY[:attr=value,...]",
        help="Finding to plant, e.g. pleural_effusion:side=right,size=moderate (repeatable).",
    )
    render.add_argument("-n", "--count", type=int, default=8, help="Number of images.")
    render.add_argument("--size", type=int, default=512, help="Image size in pixels.")
    render.add_argument("--view", choices=["PA", "AP"], help="Force the view.")
    render.add_argument("--background", action="store_true", help="Add a random background mix of findings.")
    render.add_argument("--contact-sheet", type=Path, help="Write a contact sheet of every finding to this PNG.")
    render.set_defaults(run=_render)
    bench = sub.add_parser("bench", help="Build SynthDiffBench (the default suite or one preset).")
    bench.add_argument("out_dir", type=Path, help="Output folder (JSONL + images + reports).")
    bench.add_argument("--preset", help="Build one preset pair (effusion, cardiomegaly, ...) instead of the suite.")
    bench.add_argument("--pairs", help="Comma-separated names of suite pairs to build (default: all).")
    bench.add_argument("-n", "--per-group", type=int, default=20, help="Studies per group (suite).")
    bench.add_argument("--size", type=int, default=256, help="Image size in pixels.")
    bench.add_argument("--list", action="store_true", help="List the suite's pairs and stop.")
    bench.set_defaults(run=_bench)


def _parse_finding(text: str) -> PlantedFinding:
    from evals.synth.findings import PlantedFinding
    from tools.domain import InputError

    key, _, rest = text.partition(":")
    attrs: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--finding {text!r}: attribute {item!r} must be name=value")
        attrs[name.strip()] = value.strip()
    return PlantedFinding(finding=key.strip(), attributes=attrs)


class _Bar:
    """A tqdm progress bar driven by (done, total) callbacks."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, unit="img")

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _render(args: argparse.Namespace) -> int:
    import numpy as np

    from evals.synth.bench import _png_bytes, _write_atomic, random_findings
    from evals.synth.render import get_renderer
    from evals.synth.sheet import contact_sheet
    from raddiff.cli.common import settings_from

    settings = settings_from(args)
    findings = [_parse_finding(t) for t in args.finding]
    if args.contact_sheet:
        contact_sheet(args.contact_sheet, size=args.size, seed=settings.seed, cache_dir=settings.cache_dir)
        print(f"contact sheet: {args.contact_sheet}")  # noqa: T201
    bar = _Bar("render")
    for i in range(args.count):
        seed = settings.seed * 100003 + i
        extra = (
            random_findings(np.random.default_rng([seed, 9]), exclude={f.finding for f in findings})
            if args.background
            else []
        )
        out = args.out_dir / f"synth_{seed:08d}.png"
        meta = out.with_suffix(".json")
        key = json.dumps([[f.model_dump() for f in (*findings, *extra)], seed, args.size, args.view])
        if out.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
            bar(i + 1, args.count)
            continue
        sample = get_renderer(settings.cache_dir).render([*findings, *extra], seed, args.size, args.view)
        _write_atomic(out, _png_bytes(sample.image))
        _write_atomic(out.with_suffix(".txt"), sample.report.encode())
        meta_doc = {k: v for k, v in sample.metadata.items() if k != "patient"}
        _write_atomic(meta, json.dumps({**meta_doc, "key": key}).encode())
        bar(i + 1, args.count)
    bar.close()
    print(f"{args.count} images in {args.out_dir}")  # noqa: T201
    return 0


def _bench(args: argparse.Namespace) -> int:
    from evals.synth.bench import build_pair, build_suite
    from evals.synth.pairs import PRESETS, default_suite
    from raddiff.cli.common import settings_from
    from tools.domain import InputError

    settings = settings_from(args)
    suite = default_suite(n=args.per_group, size=args.size)
    if args.list:
        for spec in suite:
            print(f"{spec.name:32s} d={spec.difficulty}  A: {spec.set1}  |  B: {spec.set2}")  # noqa: T201
        return 0
    bar = _Bar("synthdiffbench")
    if args.preset:
        if args.preset not in PRESETS:
            raise InputError(f"unknown preset {args.preset!r}; known: {', '.join(sorted(PRESETS))}")
        path = build_pair(PRESETS[args.preset], args.out_dir, settings.seed, cache_dir=settings.cache_dir, progress=bar)
    else:
        if args.pairs:
            wanted = [p.strip() for p in args.pairs.split(",") if p.strip()]
            known = {s.name: s for s in suite}
            missing = [w for w in wanted if w not in known]
            if missing:
                raise InputError(f"unknown pair {missing[0]!r}; see 'raddiff synth bench --list'")
            suite = [known[w] for w in wanted]
        path = build_suite(args.out_dir, suite, settings.seed, cache_dir=settings.cache_dir, progress=bar)
    bar.close()
    print(f"wrote {path}")  # noqa: T201
    return 0
