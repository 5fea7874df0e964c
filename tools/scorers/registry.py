"""Scorer ids as data, and a per-process cache so each model is loaded once.

Scorer ids (``Settings.scorer`` / ``--scorer``):

* ``mini`` - the project's offline mini CXR-CLIP (``tools.scorers.mini:load_mini``);
* ``chexzero:PATH`` - a CheXzero checkpoint file;
* ``open_clip:NAME@PRETRAINED`` - an open_clip architecture with a pretrained tag or a weights file
  (``open_clip:NAME@random`` builds a random model, for tests and benchmarks only);
* ``hf-hub:ORG/NAME`` (or ``open_clip:hf-hub:ORG/NAME``) and ``open_clip:local-dir:PATH`` - open_clip
  models that carry their own config and weights, e.g. BiomedCLIP;
* ``reports`` - scores from report text; it has no image-text model, so :func:`load_scorer` refuses it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from tools.domain import InputError

if TYPE_CHECKING:
    from tools.scorers.base import ImageTextModel
    from tools.settings import Settings

ScorerKind = Literal["mini", "chexzero", "open_clip", "reports"]
MINI_FACTORY = "tools.scorers.mini:load_mini"


@dataclass(frozen=True)
class ScorerSpec:
    """A parsed scorer id."""

    kind: ScorerKind
    name: str = ""
    pretrained: str | None = None
    path: Path | None = None

    def __str__(self) -> str:
        if self.kind == "chexzero":
            return f"chexzero:{self.path}"
        if self.kind == "open_clip":
            return f"open_clip:{self.name}" + (f"@{self.pretrained}" if self.pretrained else "")
        return self.kind


def parse_scorer(spec: str) -> ScorerSpec:
    """Parse a scorer id (see the module docstring); a malformed id raises a one-line ``InputError``."""
    text = spec.strip()
    if text in ("mini", "reports"):
        return ScorerSpec(kind=cast(ScorerKind, text))
    if text.startswith("chexzero:"):
        raw = text[len("chexzero:") :].strip()
        if not raw:
            raise InputError("scorer 'chexzero:': give the checkpoint file, chexzero:/path/to/file.pt")
        return ScorerSpec(kind="chexzero", path=Path(raw).expanduser())
    if text.startswith("hf-hub:"):
        if len(text) <= len("hf-hub:") or "/" not in text:
            raise InputError(f"scorer {spec!r}: expected hf-hub:ORG/NAME")
        return ScorerSpec(kind="open_clip", name=text)
    if text.startswith("open_clip:"):
        body = text[len("open_clip:") :].strip()
        if body.startswith(("hf-hub:", "local-dir:")):
            return ScorerSpec(kind="open_clip", name=body)
        name, _, pretrained = body.partition("@")
        if not name.strip():
            raise InputError(f"scorer {spec!r}: expected open_clip:NAME@PRETRAINED (e.g. open_clip:ViT-B-32@openai)")
        return ScorerSpec(kind="open_clip", name=name.strip(), pretrained=pretrained.strip() or None)
    raise InputError(
        f"scorer {spec!r}: unknown; use mini, chexzero:PATH, open_clip:NAME@PRETRAINED, hf-hub:ORG/NAME or reports"
    )


_LOADED: dict[tuple[str, str, str, int], Any] = {}
_LOCK = threading.Lock()


def load_scorer(
    spec: str | ScorerSpec, *, device: str = "auto", dtype: str = "float32", batch_size: int = 32
) -> ImageTextModel:
    """Load (once per process) the image-text model a scorer id names."""
    parsed = parse_scorer(spec) if isinstance(spec, str) else spec
    if parsed.kind == "reports":
        raise InputError("scorer 'reports' scores hypotheses from report text; it has no image-text model")
    from tools.scorers.base import resolve_torch_device

    resolved = resolve_torch_device(device)
    key = (str(parsed), resolved, dtype, batch_size)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(parsed, resolved, dtype, batch_size)
        return cast("ImageTextModel", _LOADED[key])


def load_scorer_from_settings(settings: Settings) -> ImageTextModel:
    """The scorer of ``settings`` on its device, dtype and batch size."""
    return load_scorer(settings.scorer, device=settings.device, dtype=settings.dtype, batch_size=settings.batch_size)


def clear_loaded_scorers() -> None:
    """Forget every loaded model (tests; frees memory)."""
    with _LOCK:
        _LOADED.clear()


def _load(spec: ScorerSpec, device: str, dtype: str, batch_size: int) -> Any:
    if spec.kind == "chexzero":
        from tools.scorers.chexzero import load_chexzero

        if spec.path is None:
            raise InputError("scorer 'chexzero:': give the checkpoint file, chexzero:/path/to/file.pt")
        return load_chexzero(spec.path, device=device, dtype=dtype, batch_size=batch_size)
    if spec.kind == "open_clip":
        from tools.scorers.openclip import load_open_clip

        return load_open_clip(spec.name, spec.pretrained, device=device, dtype=dtype, batch_size=batch_size)
    return _factory(MINI_FACTORY)(device=device)


def _factory(target: str) -> Any:
    from tools.plugins import load_target

    return load_target(target, what="scorer 'mini'", hint="use chexzero:PATH or open_clip:NAME@PRETRAINED")
