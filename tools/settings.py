"""One typed settings object for the whole project.

Precedence, lowest first: the defaults below, then a YAML file (``--config FILE`` or ``RADDIFF_CONFIG``),
then environment variables ``RADDIFF_<FIELD>`` (e.g. ``RADDIFF_DEVICE=cuda``), then CLI flags (passed as
keyword arguments to :func:`load_settings`). Secrets never come from files: the OpenAI key and base URL
are read from ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` only, through :func:`openai_credentials`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tools.domain import InputError

SECRET_ENV_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/raddiff`` (or ``~/.cache/raddiff``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "raddiff"


class Settings(BaseSettings):
    """Run-wide settings. Each field documents itself; ``raddiff config`` prints the effective values."""

    model_config = SettingsConfigDict(env_prefix="RADDIFF_", extra="forbid", validate_default=True)

    cache_dir: Path = Field(
        default_factory=default_cache_dir, description="Embedding, description and render caches live here."
    )
    output_dir: Path = Field(default=Path("raddiff-runs"), description="Run results, traces and reports.")
    embedding_store: Path | None = Field(
        default=None,
        description="Parquet embedding store written by 'raddiff embed' (default <cache_dir>/embedding-store); "
        "the embedding cache reads through it.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Torch device for model backends; 'auto' picks CUDA when present."
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32", description="Compute dtype of model backends (half precision only on CUDA)."
    )
    batch_size: int = Field(default=32, ge=1, le=4096, description="Images per batch when embedding.")
    scorer: str = Field(
        default="mini",
        description="Image-text scorer: 'mini', 'chexzero:PATH', 'open_clip:NAME[@PRETRAINED]', 'reports'.",
    )
    describer: str = Field(default="mini", description="Image describer: 'mini', 'chexagent:MODEL_ID', 'openai:MODEL'.")
    llm: str = Field(
        default="rules",
        description="Agent policy: 'rules' (offline), 'local[:MODEL]' (llama.cpp), 'openai:MODEL' or a model name.",
    )
    llm_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp)."
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow transformers remote code (needed by CheXagent); off unless opted in."
    )
    image_root: Path | None = Field(default=None, description="Root that relative image paths are resolved in.")
    reports_root: Path | None = Field(
        default=None, description="Root of MIMIC-CXR style reports (files/pXX/pXXXXXXXX/sXXXXXXXX.txt)."
    )
    seed: int = Field(default=0, description="Seed for sampling and every random choice of a run.")
    max_rounds: int = Field(default=4, ge=1, le=50, description="Most hypothesize-verify-refine rounds.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Logging level.")

    @field_validator("scorer", "describer", "llm")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: CLI flags (init kwargs), then env vars. YAML values are merged in by
        # load_settings() as init kwargs under the CLI flags, so files never override the environment.
        return (init_settings, env_settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path}: settings file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise InputError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: settings file must be a mapping of field: value")
    leaked = [k for k in data if str(k).upper() in SECRET_ENV_VARS or "api_key" in str(k).lower()]
    if leaked:
        raise InputError(f"{path}: secrets ({', '.join(map(str, leaked))}) belong in the environment, not a file")
    unknown = sorted(str(k) for k in data if k not in Settings.model_fields)
    if unknown:
        raise InputError(f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(Settings.model_fields)})")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: defaults < YAML file < ``RADDIFF_*`` env vars < ``overrides`` (CLI flags).

    ``None`` values in ``overrides`` mean "flag not given" and are ignored.
    """
    file_values: dict[str, Any] = {}
    path = config_file or (Path(os.environ["RADDIFF_CONFIG"]) if os.environ.get("RADDIFF_CONFIG") else None)
    if path is not None:
        file_values = _read_yaml(Path(path))
    env_keys = {name for name in Settings.model_fields if f"RADDIFF_{name.upper()}" in os.environ}
    merged = {k: v for k, v in file_values.items() if k not in env_keys}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise InputError(f"setting {where}: {err['msg']}") from None


def openai_credentials() -> tuple[str | None, str | None]:
    """Return ``(OPENAI_API_KEY, OPENAI_BASE_URL)`` from the environment (the only place secrets live)."""
    return os.environ.get("OPENAI_API_KEY"), os.environ.get("OPENAI_BASE_URL")


def resolve_device(settings: Settings) -> str:
    """Turn ``settings.device`` into a concrete torch device string ('cuda' only when available)."""
    if settings.device != "auto":
        return settings.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
