"""``raddiff chat`` (the local web app) and ``raddiff trace show|view RUN`` (a run's reasoning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from raddiff.cli.common import add_model_arguments, settings_from
from tools.domain import RadDiffError


def chat_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff chat``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1: this machine only)."
    )
    parser.add_argument("--port", type=int, help="Port (default: the first free one from 7860).")
    parser.add_argument(
        "--root",
        type=Path,
        action="append",
        default=[],
        help="A folder the app may read data from (repeat for several; the SynthCXR preset folder is always allowed).",
    )
    add_model_arguments(parser, rounds_help="Most rounds of each run.", rounds_default=3)
    parser.add_argument("--output-dir", type=Path, help="Where conversations (run folders) are written.")
    parser.add_argument("--preset-n", type=int, help="Studies per group of SynthCXR presets (default: the preset's).")
    parser.set_defaults(run=_chat)


def _chat(args: argparse.Namespace) -> int:
    from raddiff.chat.app import launch
    from raddiff.chat.config import AppConfig

    settings = settings_from(args)
    for root in args.root:
        if not root.is_dir():
            raise RadDiffError(f"--root {root}: not a folder")
    config = AppConfig(
        roots=list(args.root),
        output_dir=args.output_dir or settings.output_dir,
        cache_dir=settings.cache_dir,
        llm=settings.llm,
        llm_base_url=settings.llm_base_url,
        scorer=settings.scorer,
        describer=settings.describer,
        max_rounds=args.rounds,
        seed=settings.seed,
        preset_n=args.preset_n,
        settings=settings,
    )
    if args.host != "127.0.0.1":
        print(f"warning: listening on {args.host}: other machines can reach this app")
    print(f"raddiff chat: readable folders: {', '.join(str(p) for p in config.readable_roots())}")
    launch(config, host=args.host, port=args.port)
    return 0


def trace_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``raddiff trace show|view RUN``."""
    sub = parser.add_subparsers(dest="trace_command", metavar="show|view", required=True)
    show = sub.add_parser("show", help="Print a run's reasoning as a tree (rounds, decisions, tool calls).")
    view = sub.add_parser("view", help="Render a run's reasoning as an HTML page.")
    for p in (show, view):
        p.add_argument("run_ref", metavar="RUN", help="Run folder, or run id under the output folder.")
        p.add_argument("--output-dir", type=Path, help="Where run folders are (for a run id).")
    view.add_argument("--out", type=Path, help="HTML file to write (default: <run folder>/trace.html).")
    view.add_argument("--open", action="store_true", help="Open the page in a web browser.")
    parser.set_defaults(run=_trace)


def _trace(args: argparse.Namespace) -> int:
    from raddiff.trace_viewer import load_outline, resolve_run_dir, trace_html, trace_tree

    settings = settings_from(args)
    run_dir = resolve_run_dir(args.run_ref, args.output_dir or settings.output_dir)
    parts = load_outline(run_dir)
    if args.trace_command == "show":
        from rich.console import Console

        Console().print(trace_tree(parts, run_dir.name))
        return 0
    out = args.out or run_dir / "trace.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(trace_html(parts, run_dir.name), encoding="utf-8")
    tmp.replace(out)
    print(f"trace page: {out}")
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return 0
