"""Arguments several ``raddiff`` subcommands share, defined once, and the settings they resolve to.

Light to import (no project module is loaded until :func:`settings_from` runs).
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.settings import Settings

LLM_HELP = (
    "Agent policy: 'rules' (offline), 'local' / 'local:qwen2.5-coder-0.5b' (a real LLM, offline: llama.cpp on "
    "127.0.0.1), 'openai:MODEL', or a model name with --llm-base-url (see 'raddiff backends')."
)


def add_model_arguments(
    parser: argparse.ArgumentParser, *, rounds_help: str, rounds_default: int | None = None
) -> None:
    """``--llm``, ``--llm-base-url``, ``--scorer``, ``--describer`` and ``--rounds``: what runs the agent."""
    parser.add_argument("--llm", help=LLM_HELP)
    parser.add_argument("--llm-base-url", help="OpenAI-compatible server for the LLM (vLLM, SGLang, Ollama...).")
    parser.add_argument(
        "--scorer", help="Scorer: mini, chexzero:PATH, open_clip:NAME[@TAG], hf-hub:ID, reports (raddiff backends)."
    )
    parser.add_argument("--describer", help="Describer: mini, chexagent:MODEL_ID, openai:MODEL (raddiff backends).")
    parser.add_argument("--rounds", type=int, default=rounds_default, help=rounds_help)


def settings_from(args: argparse.Namespace) -> Settings:
    """The effective settings of a subcommand: defaults < YAML (``--config``) < ``RADDIFF_*`` env < its flags."""
    from tools.settings import load_settings

    overrides = {
        key: getattr(args, key, None)
        for key in (
            "device",
            "dtype",
            "batch_size",
            "scorer",
            "describer",
            "llm",
            "llm_base_url",
            "seed",
            "cache_dir",
            "output_dir",
        )
    }
    image_root = getattr(args, "image_root", None)
    reports_root = getattr(args, "reports_root", None)
    settings = load_settings(
        getattr(args, "config", None), image_root=image_root, reports_root=reports_root, **overrides
    )
    if not getattr(args, "verbose", False):  # --verbose wins over the configured level
        logging.getLogger().setLevel(settings.log_level)
    return settings
