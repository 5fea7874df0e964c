"""Describer ids as data (the :data:`DESCRIBERS` registry), and a per-process registry of loaded describers
(each model loads once).

Ids (``Settings.describer``; ``raddiff backends`` lists them and says which work here):

* ``mini`` - the offline describer, loaded from ``tools.describers.mini:load_mini_describer(settings)``.
* ``chexagent:MODEL_ID`` - CheXagent (or another transformers VLM) from a hub id or a local folder,
  e.g. ``chexagent:StanfordAIMI/CheXagent-2-3b`` or ``chexagent:/models/chexagent-8b``.
* ``transformers:MODEL_ID`` (alias ``hf:``) - any transformers image-text-to-text model (same loader).
* ``openai:MODEL`` - an OpenAI-compatible chat endpoint; the base URL is ``Settings.llm_base_url``, else
  ``OPENAI_BASE_URL``, else OpenAI; the key is ``OPENAI_API_KEY`` (environment only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from tools.describers.base import Describer, DescriberError
from tools.domain import InputError
from tools.plugins import Availability, Backend, Registry, cuda_present, needs_modules, openai_endpoint
from tools.settings import Settings, openai_credentials, resolve_device

BackendName = Literal["mini", "chexagent", "transformers", "openai"]
MINI_FACTORY = "tools.describers.mini:load_mini_describer"
TRANSFORMERS_FACTORY = "tools.describers.chexagent:load_transformers_describer"


def _check_mini(argument: str) -> Availability:
    from tools.scorers.registry import SCORERS

    return SCORERS.availability("mini")  # the describer is the mini CXR-CLIP's statement head: same weights


def _check_transformers(argument: str) -> Availability:
    missing = needs_modules("transformers", "torch", install="pip install transformers")
    if missing:
        return missing
    device = "CUDA present" if cuda_present() else "needs a CUDA device or runs slowly on CPU"
    if not argument:
        return Availability(
            False, f"transformers installed; {device}; needs model weights at a local path (none given, no network)"
        )
    path = Path(argument).expanduser()
    if argument.startswith(("/", ".", "~")) and not path.is_dir():
        return Availability(False, f"model folder not found: {path}")
    where = f"folder {path}" if path.is_dir() else f"hub id {argument} (downloads unless cached)"
    return Availability(True, f"transformers installed; {device}; {where}")


def _check_openai(argument: str) -> Availability:
    return openai_endpoint()


DESCRIBERS = Registry("describer", case_sensitive=False)
"""Every describer backend (see the module docstring)."""

DESCRIBERS.register(
    Backend(
        name="mini",
        syntax="mini",
        description="The offline describer: the mini CXR-CLIP's calibrated statement head (SynthCXR only).",
        factory=MINI_FACTORY,
        check=_check_mini,
        install="use describer 'chexagent:MODEL_ID' or 'openai:MODEL'",
    )
)
DESCRIBERS.register(
    Backend(
        name="chexagent",
        syntax="chexagent:MODEL_ID",
        description="CheXagent (or another transformers VLM) from a local folder or a hub id.",
        factory=TRANSFORMERS_FACTORY,
        argument="required",
        check=_check_transformers,
        install="pip install transformers",
    )
)
DESCRIBERS.register(
    Backend(
        name="transformers",
        syntax="transformers:MODEL_ID",
        description="Any transformers image-text-to-text model (alias hf:MODEL_ID); the CheXagent loader.",
        factory=TRANSFORMERS_FACTORY,
        argument="required",
        aliases=("hf",),
        check=_check_transformers,
        install="pip install transformers",
    )
)
DESCRIBERS.register(
    Backend(
        name="openai",
        syntax="openai:MODEL",
        description="A vision model behind an OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama...).",
        factory="tools.describers.openai_compat:OpenAICompatDescriber",
        argument="required",
        check=_check_openai,
    )
)


@dataclass(frozen=True)
class DescriberSpec:
    """A parsed describer id: the backend and the model (hub id, folder or API model name)."""

    backend: BackendName
    model: str

    @property
    def describer_id(self) -> str:
        """The id back in text form (``mini`` or ``backend:model``)."""
        return "mini" if self.backend == "mini" else f"{self.backend}:{self.model}"


def parse_describer_id(text: str) -> DescriberSpec:
    """Parse ``mini`` / ``chexagent:MODEL_ID`` / ``transformers:MODEL_ID`` / ``openai:MODEL`` into a spec.

    Only the first colon separates the backend, so model names with colons (``openai:llava:13b``) work.
    """
    value = (text or "").strip()
    entry, model = DESCRIBERS.parse(value)
    if entry.name == "mini":
        return DescriberSpec("mini", "mini")
    if not model:
        raise InputError(f"describer {value!r}: missing model after '{value.partition(':')[0]}:'")
    return DescriberSpec(cast(BackendName, entry.name), model)


def resolve_base_url(settings: Settings) -> str | None:
    """Base URL of the OpenAI-compatible endpoint: ``settings.llm_base_url``, else ``OPENAI_BASE_URL``, else None."""
    _, env_base_url = openai_credentials()
    return settings.llm_base_url or env_base_url or None


def _load_factory(path: str) -> Callable[[Settings], Describer]:
    from tools.plugins import load_target

    factory = load_target(
        path,
        what="the 'mini' describer",
        hint=DESCRIBERS.get("mini").install,
        error=DescriberError,
    )
    if not callable(factory):
        raise DescriberError(f"{path}: no describer factory in {path.partition(':')[0]}")
    return cast(Callable[[Settings], Describer], factory)


def load_describer(spec: DescriberSpec, settings: Settings) -> Describer:
    """Load a describer for ``spec`` now (no registry); prefer :func:`get_describer`."""
    if spec.backend == "mini":
        return _load_factory(MINI_FACTORY)(settings)
    factory = DESCRIBERS.load(spec.backend, error=DescriberError)
    if spec.backend in ("chexagent", "transformers"):
        return cast(Describer, factory(spec.model, settings, backend=spec.backend))
    api_key, _ = openai_credentials()
    return cast(Describer, factory(spec.model, base_url=resolve_base_url(settings), api_key=api_key))


_REGISTRY: dict[tuple[object, ...], Describer] = {}
_REGISTRY_LOCK = threading.Lock()


def _registry_key(spec: DescriberSpec, settings: Settings) -> tuple[object, ...]:
    if spec.backend == "openai":
        api_key, _ = openai_credentials()
        return (spec, resolve_base_url(settings), api_key)
    if spec.backend == "mini":
        return (spec, settings.device, settings.batch_size)
    return (spec, resolve_device(settings), settings.dtype, settings.trust_remote_code, settings.batch_size)


def get_describer(describer_id: str | None = None, settings: Settings | None = None) -> Describer:
    """Return the describer for ``describer_id`` (default ``settings.describer``), loading it once per process."""
    settings = settings or Settings()
    spec = parse_describer_id(describer_id if describer_id is not None else settings.describer)
    key = _registry_key(spec, settings)
    with _REGISTRY_LOCK:
        found = _REGISTRY.get(key)
        if found is None:
            found = load_describer(spec, settings)
            _REGISTRY[key] = found
        return found


def clear_describer_registry() -> None:
    """Forget every loaded describer (tests; freeing GPU memory between runs)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
