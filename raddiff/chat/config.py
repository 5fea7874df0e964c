"""The chat app's configuration and its input checks: the roots it may read, the sources it loads.

Safety: only files under the configured roots are read (named paths outside them, and datasets that point
outside them, are refused with a message); every text from data or models is escaped and shown as text.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.data.studies import LoadedComparison, inside_roots
from tools.domain import Comparison, InputError
from tools.settings import Settings

SOURCE_KINDS = ("SynthCXR preset", "Two folders", "CSV file", "Benchmark pair (JSONL)")
LOOPBACK = "127.0.0.1"


class AppConfig(BaseModel):
    """Settings of the chat app: readable roots, output folder, models, run sizes."""

    model_config = ConfigDict(extra="forbid")

    roots: list[Path] = Field(default_factory=list, description="Folders the app may read data from.")
    output_dir: Path = Field(default=Path("raddiff-runs"), description="Where run folders (threads) are written.")
    cache_dir: Path = Field(description="Cache folder; SynthCXR presets are rendered under <cache_dir>/demo.")
    llm: str = "rules"
    llm_base_url: str | None = None
    scorer: str = "mini"
    describer: str = "mini"
    max_rounds: int = Field(default=3, ge=1, le=50)
    seed: int = 0
    preset_n: int | None = Field(default=None, ge=2, description="Studies per group of presets (None: preset's).")
    context: dict[str, Any] = Field(default_factory=dict, description="Further RunContext overrides.")
    settings: Settings | None = Field(
        default=None,
        description="The project settings the app was started with (device, dtype, batch size, remote code); "
        "the fields above override theirs. None: the defaults.",
    )

    def run_settings(self) -> Settings:
        """The one settings object of this app's runs: ``settings`` with this config's models, seed and cache."""
        base = self.settings if self.settings is not None else Settings(cache_dir=self.cache_dir)
        return base.model_copy(
            update={
                "cache_dir": self.cache_dir,
                "output_dir": self.output_dir,
                "llm": self.llm,
                "llm_base_url": self.llm_base_url,
                "scorer": self.scorer,
                "describer": self.describer,
                "seed": self.seed,
            }
        )

    @property
    def preset_dir(self) -> Path:
        """Folder of the rendered SynthCXR presets (always readable)."""
        return self.cache_dir / "demo"

    def readable_roots(self) -> list[Path]:
        """The configured roots plus the preset folder, resolved."""
        return [p.resolve() for p in [*self.roots, self.preset_dir]]


def as_text(value: object) -> str:
    """Text from data or a model, made inert for a Markdown+HTML chat: HTML-escaped, Markdown syntax escaped."""
    escaped = html.escape(str(value), quote=True)
    return re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", escaped)


def check_path(raw: str | Path, roots: list[Path], what: str = "path") -> Path:
    """The resolved path if it lies under one of ``roots``; else an :class:`InputError` saying so."""
    text = str(raw).strip()
    if not text:
        raise InputError(f"{what}: empty; give a file or folder path")
    path = Path(text).expanduser().resolve()
    if inside_roots(path, roots):
        return path
    shown = ", ".join(str(r) for r in roots) or "(none)"
    raise InputError(
        f"{what} {text!r} is outside the folders this app may read ({shown}); restart with --root to allow it"
    )


def check_comparison_paths(comparison: Comparison, roots: list[Path]) -> None:
    """Refuse a comparison any of whose image or report files lies outside the roots."""
    for _, study in comparison.all_studies():
        for path in [*study.image_paths, *([study.report_path] if study.report_path else [])]:
            check_path(path, roots, what=f"study {study.study_id}: file")


def load_source(
    config: AppConfig, kind: str, first: str = "", second: str = "", preset: str = "effusion", pair_index: int = 0
) -> Comparison:
    """Load the two sets chosen in the app (every path checked against the roots)."""
    return load_source_with_skips(config, kind, first, second, preset, pair_index).comparison


def load_source_with_skips(
    config: AppConfig, kind: str, first: str = "", second: str = "", preset: str = "effusion", pair_index: int = 0
) -> LoadedComparison:
    """:func:`load_source` with what the loader skipped (the runs list those inputs in their results)."""
    from tools.data.jsonl_pairs import load_jsonl_pair
    from tools.data.loaders import load_comparison

    roots = config.readable_roots()
    if kind == "SynthCXR preset":
        from evals.synth.bench import build_pair
        from evals.synth.pairs import PRESETS

        if preset not in PRESETS:
            raise InputError(f"preset {preset!r}: unknown (known: {', '.join(PRESETS)})")
        spec = PRESETS[preset]
        if config.preset_n is not None:
            spec = spec.model_copy(update={"n_a": config.preset_n, "n_b": config.preset_n})
        jsonl = build_pair(spec, config.preset_dir, seed=config.seed, cache_dir=config.cache_dir)
        loaded = load_jsonl_pair(jsonl, 0, allowed_roots=roots)
    elif kind == "Two folders":
        folders = (check_path(first, roots, "folder A"), check_path(second, roots, "folder B"))
        loaded = load_comparison(*folders, allowed_roots=roots)
    elif kind == "CSV file":
        loaded = load_comparison(check_path(first, roots, "CSV file"), allowed_roots=roots)
    elif kind == "Benchmark pair (JSONL)":
        path = check_path(first, roots, "JSONL file")
        loaded = load_jsonl_pair(path, int(pair_index), image_root=path.parent, allowed_roots=roots)
    else:
        raise InputError(f"source kind {kind!r}: unknown (choose one of {', '.join(SOURCE_KINDS)})")
    check_comparison_paths(loaded.comparison, roots)
    return loaded
