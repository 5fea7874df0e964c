"""The ``raddiff`` command line. Subcommands register themselves in :data:`COMMANDS`.

Each subcommand is a pair (add_arguments, run); heavy modules are imported inside ``run`` so that
``raddiff --help`` stays fast. Errors the project raises on purpose (:class:`~tools.domain.RadDiffError`)
print as one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tools.domain import GroupLabel, RadDiffError

if TYPE_CHECKING:
    from tools.settings import Settings

log = logging.getLogger("raddiff")

AddArguments = Callable[[argparse.ArgumentParser], None]

# name -> (help, "module:function" that adds the subcommand's arguments and sets ``run`` as a default).
# The modules named here must be light to import: heavy imports go inside their ``run`` functions.
COMMANDS: dict[str, tuple[str, str]] = {
    "compare": (
        "Compare two sets of studies: two folders, a CSV, or a pair of a JSONL file.",
        "evals.cli:compare_arguments",
    ),
    "train-mini": ("Train the offline mini-cxr-clip model on SynthCXR.", "evals.mini.cli:train_arguments"),
    "eval-mini": ("Measure the mini model's quality gate on fresh SynthCXR images.", "evals.mini.cli:eval_arguments"),
    "synth": ("Render SynthCXR images and build SynthDiffBench.", "evals.synth.cli:add_arguments"),
    "config": ("Print the effective settings (defaults < YAML < RADDIFF_* env < flags).", "evals.cli:config_arguments"),
}


def _resolve(target: str) -> AddArguments:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return cast(AddArguments, getattr(module, attr))


def _settings_from(args: argparse.Namespace) -> Settings:
    from tools.settings import load_settings

    overrides = {
        key: getattr(args, key, None)
        for key in ("device", "batch_size", "scorer", "describer", "llm", "llm_base_url", "seed", "cache_dir")
    }
    image_root = getattr(args, "image_root", None)
    reports_root = getattr(args, "reports_root", None)
    return load_settings(getattr(args, "config", None), image_root=image_root, reports_root=reports_root, **overrides)


# ---------------------------------------------------------------- compare


def compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff compare``."""
    parser.add_argument("source_a", type=Path, help="Folder of group A, or a .csv / .jsonl file.")
    parser.add_argument("source_b", type=Path, nargs="?", help="Folder of group B (with two folders).")
    parser.add_argument("--pair", type=int, default=0, help="0-based line of a JSONL pair file.")
    parser.add_argument("--image-root", type=Path, help="Root for relative image paths.")
    parser.add_argument("--reports-root", type=Path, help="Root of MIMIC-CXR style reports.")
    parser.add_argument("--dry-run", action="store_true", help="Load and check both sets, print sizes, stop.")
    parser.add_argument("--decode", action="store_true", help="With --dry-run: decode every image to check it.")
    parser.set_defaults(run=_compare)


def _compare(args: argparse.Namespace) -> int:
    from tools.datasets import load_comparison

    settings = _settings_from(args)
    loaded = load_comparison(
        args.source_a,
        args.source_b,
        pair_index=args.pair,
        image_root=settings.image_root,
        reports_root=settings.reports_root,
        decode_images=args.decode,
    )
    comparison = loaded.comparison
    labels: tuple[GroupLabel, GroupLabel] = ("A", "B")
    for label in labels:
        group = comparison.group(label)
        n_reports = sum(1 for s in group.studies if s.report)
        print(f"group {label}: {group.name!r}: {len(group)} studies, {n_reports} with reports")
    print(f"problems: {len(loaded.skipped)} skipped, {len(loaded.warnings)} warnings")
    for item in loaded.skipped[:20]:
        print(f"  skipped {item.reason}")
    for warning in loaded.warnings[:20]:
        print(f"  warning {warning}")
    if args.dry_run:
        return 0
    raise RadDiffError("compare: the agent run is not built yet in this version; use --dry-run to check inputs")


# ---------------------------------------------------------------- config


def config_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff config``."""
    parser.set_defaults(run=_config)


def _config(args: argparse.Namespace) -> int:
    from tools.settings import Settings

    settings = _settings_from(args)
    for name, field in Settings.model_fields.items():
        print(f"{name} = {getattr(settings, name)!s}    # {field.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="raddiff", description="Describe in clinical language how two sets of radiology studies differ."
    )
    parser.add_argument("--config", type=Path, help="YAML settings file.")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="Torch device.")
    parser.add_argument("--batch-size", type=int, help="Images per batch when embedding.")
    parser.add_argument("--cache-dir", type=Path, help="Cache folder.")
    parser.add_argument("--seed", type=int, help="Random seed.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, target) in COMMANDS.items():
        _resolve(target)(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``raddiff`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.command:
        parser.print_help()
        return 1
    try:
        return int(args.run(args) or 0)
    except RadDiffError as exc:
        print(f"raddiff {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"raddiff {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
