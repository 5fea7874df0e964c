"""Describer ids as data, and a per-process registry of loaded describers (each model loads once).

Ids (``Settings.describer``):

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
from typing import Literal, cast

from tools.describers.base import Describer, DescriberError
from tools.domain import InputError
from tools.settings import Settings, openai_credentials, resolve_device

BackendName = Literal["mini", "chexagent", "transformers", "openai"]
MINI_FACTORY = "tools.describers.mini:load_mini_describer"
_PREFIXES: dict[str, BackendName] = {
    "chexagent": "chexagent",
    "transformers": "transformers",
    "hf": "transformers",
    "openai": "openai",
}
KNOWN_IDS = "'mini', 'chexagent:MODEL_ID', 'transformers:MODEL_ID', 'openai:MODEL'"


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
    if not value:
        raise InputError(f"describer: empty id (expected one of {KNOWN_IDS})")
    if value.lower() == "mini":
        return DescriberSpec("mini", "mini")
    prefix, sep, model = value.partition(":")
    backend = _PREFIXES.get(prefix.strip().lower())
    if not sep or backend is None:
        raise InputError(f"describer {value!r}: unknown backend (expected one of {KNOWN_IDS})")
    if not model.strip():
        raise InputError(f"describer {value!r}: missing model after '{prefix}:'")
    return DescriberSpec(backend, model.strip())


def resolve_base_url(settings: Settings) -> str | None:
    """Base URL of the OpenAI-compatible endpoint: ``settings.llm_base_url``, else ``OPENAI_BASE_URL``, else None."""
    _, env_base_url = openai_credentials()
    return settings.llm_base_url or env_base_url or None


def _load_factory(path: str) -> Callable[[Settings], Describer]:
    from tools.plugins import load_target

    factory = load_target(
        path,
        what="the 'mini' describer",
        hint="use describer 'chexagent:MODEL_ID' or 'openai:MODEL'",
        error=DescriberError,
    )
    if not callable(factory):
        raise DescriberError(f"{path}: no describer factory in {path.partition(':')[0]}")
    return cast(Callable[[Settings], Describer], factory)


def load_describer(spec: DescriberSpec, settings: Settings) -> Describer:
    """Load a describer for ``spec`` now (no registry); prefer :func:`get_describer`."""
    if spec.backend == "mini":
        return _load_factory(MINI_FACTORY)(settings)
    if spec.backend in ("chexagent", "transformers"):
        from tools.describers.chexagent import load_transformers_describer

        return load_transformers_describer(spec.model, settings, backend=spec.backend)
    from tools.describers.openai_compat import OpenAICompatDescriber

    api_key, _ = openai_credentials()
    return OpenAICompatDescriber(spec.model, base_url=resolve_base_url(settings), api_key=api_key)


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
