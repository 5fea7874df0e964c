"""The ``raddiff`` command line. Subcommands register themselves in :data:`COMMANDS`.

Each subcommand is a pair (add_arguments, run); heavy modules are imported inside ``run`` so that
``raddiff --help`` stays fast. Errors the project raises on purpose (:class:`~tools.domain.RadDiffError`)
print as one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from raddiff.cli.common import add_model_arguments, settings_from
from tools.domain import Comparison, GroupLabel, RadDiffError, SkippedItem

if TYPE_CHECKING:
    from tools.settings import Settings

log = logging.getLogger("raddiff")

AddArguments = Callable[[argparse.ArgumentParser], None]

# name -> (help, "module:function" that adds the subcommand's arguments and sets ``run`` as a default).
# The modules named here must be light to import: heavy imports go inside their ``run`` functions.
COMMANDS: dict[str, tuple[str, str]] = {
    "compare": (
        "Compare two sets of studies: two folders, a CSV, or a pair of a JSONL file.",
        "raddiff.cli.main:compare_arguments",
    ),
    "train-mini": ("Train the offline mini-cxr-clip model on SynthCXR.", "raddiff.cli.mini:train_arguments"),
    "eval-mini": ("Measure the mini model's quality gate on fresh SynthCXR images.", "raddiff.cli.mini:eval_arguments"),
    "synth": ("Render SynthCXR images and build SynthDiffBench.", "raddiff.cli.synth:add_arguments"),
    "demo": ("Offline demo: a SynthCXR pair, the mini models and the rules policy.", "raddiff.cli.main:demo_arguments"),
    "config": (
        "Print the effective settings (defaults < YAML < RADDIFF_* env < flags).",
        "raddiff.cli.main:config_arguments",
    ),
    "chat": ("Local web app: explore two sets in a conversation with the agent.", "raddiff.cli.ui:chat_arguments"),
    "trace": ("Show a run's reasoning: 'show RUN' (a tree) or 'view RUN' (a page).", "raddiff.cli.ui:trace_arguments"),
    "bench": ("Run benchmarks: raddiffbench, synthdiffbench or a JSONL pair file.", "raddiff.cli.bench:add_arguments"),
    "embed": (
        "Embed every image of folders, CSVs or JSONL files once (Ray Data) into the embedding store.",
        "raddiff.cli.embed:embed_arguments",
    ),
    "backends": (
        "List every scorer, describer, policy and judge, its id syntax, and whether it is usable here.",
        "raddiff.cli.backends:backends_arguments",
    ),
}


def _resolve(target: str) -> AddArguments:
    from tools.plugins import load_target

    return cast(AddArguments, load_target(target, what="raddiff subcommand"))


# ---------------------------------------------------------------- compare


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, rounds_help="Most hypothesize-verify-refine rounds.")
    parser.add_argument("--question", default="", help="Your question or focus, e.g. 'look at the left base'.")
    parser.add_argument("--run-id", help="Name of the run (default: a timestamp).")
    parser.add_argument("--output-dir", type=Path, help="Where run folders are written.")
    parser.add_argument("--quiet", action="store_true", help="No live progress view.")


def compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff compare``."""
    parser.add_argument("source_a", type=Path, nargs="?", help="Folder of group A, or a .csv / .jsonl file.")
    parser.add_argument("source_b", type=Path, nargs="?", help="Folder of group B (with two folders).")
    parser.add_argument("--pair", type=int, default=0, help="0-based line of a JSONL pair file.")
    parser.add_argument("--image-root", type=Path, help="Root for relative image paths.")
    parser.add_argument("--reports-root", type=Path, help="Root of MIMIC-CXR style reports.")
    parser.add_argument("--dry-run", action="store_true", help="Load and check both sets, print sizes, stop.")
    parser.add_argument("--decode", action="store_true", help="With --dry-run: decode every image to check it.")
    parser.add_argument("--resume", metavar="RUN_ID", help="Resume an interrupted run by its id.")
    _run_arguments(parser)
    parser.set_defaults(run=_compare)


def _compare(args: argparse.Namespace) -> int:
    from tools.data.loaders import load_comparison

    settings = settings_from(args)
    if args.resume:
        return _run_agent(None, args, settings, resume=args.resume)
    if args.source_a is None:
        raise RadDiffError("compare: give two folders, a CSV, or a JSONL pair file (or --resume RUN_ID)")
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
    if comparison.report_only:
        print("report-only comparison (no images): hypotheses are scored on report text, no describe or zoom")
    print(f"while loading: {len(loaded.skipped)} inputs skipped, {len(loaded.warnings)} warnings")
    for item in loaded.skipped[:20]:
        print(f"  skipped {item.reason}")
    for warning in loaded.warnings[:20]:
        print(f"  warning {warning}")
    if args.dry_run:
        return 0
    comparison = comparison.model_copy(update={"question": args.question})
    return _run_agent(comparison, args, settings, skipped=loaded.skipped)


def _run_agent(
    comparison: Comparison | None,
    args: argparse.Namespace,
    settings: Settings,
    *,
    resume: str | None = None,
    skipped: list[SkippedItem] | None = None,
    overrides: dict[str, object] | None = None,
) -> int:
    import time

    from agent.context import RunContext
    from graphs.run import result_summary, run_agent, skipped_summary

    run_id = resume or args.run_id or time.strftime("run-%Y%m%d-%H%M%S")
    output_dir = args.output_dir or settings.output_dir
    context = RunContext.from_settings(
        settings,
        run_id=run_id,
        run_dir=Path(output_dir) / run_id,
        max_rounds=args.rounds,
        **(overrides or {}),
    )
    progress = None if args.quiet else _progress_printer()
    result = run_agent(
        comparison, context, question=args.question, resume=bool(resume), on_event=progress, skipped=skipped
    )
    if result.skipped:
        print(f"\n{skipped_summary(result)}:")
        for item in result.skipped[:20]:
            print(f"  skipped {item.reason}")
    print(f"\n{result.rounds} rounds; {result.stop_reason}")
    print(result_summary(result, top=8))
    print(f"\nresults: {context.run_dir / 'result.json'} and result.md; trace: {context.run_dir / 'trace.jsonl'}")
    return 0


def _progress_printer() -> Callable[[str, dict[str, Any]], None]:
    """A live progress callback printing each step and the current best hypotheses."""

    def show(node: str, update: dict[str, Any]) -> None:
        history = update.get("history") or []
        if node == "verify" and history:
            stat = history[-1]
            print(
                f"  round {stat.round}: best AUROC {stat.best_auroc:.3f} ({stat.best_text}); "
                f"top-k mean {stat.topk_mean:.3f}"
            )
        elif node == "reflect":
            decision = update.get("decision")
            reason = update.get("stop_reason")
            print(f"  reflect: {reason or (f'{decision.action}: {decision.reason}' if decision else '')}")
        elif node == "zoom":
            for obs in update.get("observations", []):
                if obs.data.get("error"):
                    print(f"  zoom into {obs.data.get('region')} failed: {obs.data['error']}")
                else:
                    print(f"  zoom into {obs.data.get('region')}: region AUROCs {obs.data.get('aurocs', {})}")
        else:
            print(f"  {node}")

    return show


def demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff demo``."""
    parser.add_argument("--preset", default="effusion", help="SynthCXR preset pair (effusion, cardiomegaly, ...).")
    _run_arguments(parser)
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    import time

    from evals.synth.bench import build_pair
    from evals.synth.pairs import PRESETS
    from tools.data.jsonl_pairs import load_jsonl_pair

    settings = settings_from(args)
    if args.preset not in PRESETS:
        raise RadDiffError(f"demo: unknown preset {args.preset!r} (known: {', '.join(PRESETS)})")
    started = time.perf_counter()
    spec = PRESETS[args.preset]
    print(f"building SynthCXR pair '{spec.name}': A = {spec.set1!r}, B = {spec.set2!r} (cached after the first run)")
    jsonl = build_pair(spec, settings.cache_dir / "demo", seed=settings.seed, cache_dir=settings.cache_dir)
    loaded = load_jsonl_pair(jsonl, 0)
    n_a, n_b = len(loaded.comparison.set_a), len(loaded.comparison.set_b)
    print(f"  {n_a} vs {n_b} studies in {time.perf_counter() - started:.1f} s")
    if not args.run_id:
        args.run_id = time.strftime(f"demo-{spec.name}-%Y%m%d-%H%M%S")
    code = _run_agent(loaded.comparison, args, settings, skipped=loaded.skipped)
    print(f"demo finished in {time.perf_counter() - started:.1f} s; ground truth: A = {spec.set1!r}, B = {spec.set2!r}")
    return code


# ---------------------------------------------------------------- config


def config_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff config``."""
    parser.set_defaults(run=_config)


def _config(args: argparse.Namespace) -> int:
    from tools.settings import Settings

    settings = settings_from(args)
    for name, field in Settings.model_fields.items():
        print(f"{name} = {getattr(settings, name)!s}    # {field.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="raddiff", description="Describe in clinical language how two sets of radiology studies differ."
    )
    _settings_arguments(parser)
    # The same options after the subcommand (``raddiff compare A B --config FILE``); not given there, they
    # leave the value given before the subcommand (SUPPRESS: no default overrides it).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, target) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        _resolve(target)(command)
        _settings_arguments_below(command)
    return parser


def _settings_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The settings options every command accepts (before or after the subcommand's name). With ``suppress``
    an option not given sets nothing, so it leaves the value given before the subcommand; options the parser
    defines itself are left alone."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    options: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--config",), {"type": Path, "help": "YAML settings file."}),
        (("--device",), {"choices": ["auto", "cpu", "cuda"], "help": "Torch device."}),
        (("--dtype",), {"choices": ["float32", "float16", "bfloat16"], "help": "Compute dtype of model backends."}),
        (("--batch-size",), {"type": int, "help": "Images per batch when embedding."}),
        (("--cache-dir",), {"type": Path, "help": "Cache folder."}),
        (("--seed",), {"type": int, "help": "Random seed."}),
        (("-v", "--verbose"), {"action": "store_true", "help": "Debug logging."}),
    ]
    for flags, kwargs in options:
        if not any(flag in parser._option_string_actions for flag in flags):
            parser.add_argument(*flags, **kwargs, **default)


def _settings_arguments_below(parser: argparse.ArgumentParser) -> None:
    """Add the settings options to ``parser`` and to every nested subcommand (``raddiff bench run ... --config``)."""
    _settings_arguments(parser, suppress=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                _settings_arguments_below(nested)


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
