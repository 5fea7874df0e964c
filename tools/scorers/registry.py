"""Scorer ids as data (the :data:`SCORERS` registry), and a per-process cache so each model is loaded once.

Scorer ids (``Settings.scorer`` / ``--scorer``; ``raddiff backends`` lists them and says which work here):

* ``mini`` - the project's offline mini CXR-CLIP (``tools.scorers.mini:load_mini``);
* ``chexzero:PATH`` - a CheXzero checkpoint file;
* ``open_clip:NAME@PRETRAINED`` - an open_clip architecture with a pretrained tag or a weights file
  (``open_clip:NAME@random`` builds a random model, for tests and benchmarks only);
* ``hf-hub:ORG/NAME`` (or ``open_clip:hf-hub:ORG/NAME``) and ``open_clip:local-dir:PATH`` - open_clip
  models that carry their own config and weights, e.g. BiomedCLIP;
* ``reports`` - scores from report text; it has no image-text model, so :func:`load_scorer` refuses it.

Each entry declares what it scores (capability ``scores``: ``"images"`` or ``"reports"``); the workspace and
the agent ask :func:`scorer_scores_reports` rather than comparing ids.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from tools.domain import InputError
from tools.plugins import Availability, Backend, Registry, cuda_present, needs_modules

if TYPE_CHECKING:
    from tools.scorers.base import ImageTextModel

ScorerKind = Literal["mini", "chexzero", "open_clip", "reports"]
MINI_FACTORY = "tools.scorers.mini:load_mini"
MINI_WEIGHTS = "weights/mini-cxr-clip.safetensors"  # under the tools package (tools.scorers.mini.WEIGHTS_FILE)
OPEN_CLIP_INSTALL = "pip install open_clip_torch"


def mini_weights_path() -> Path:
    """Where the committed mini CXR-CLIP weights are installed (the file may be missing)."""
    return Path(str(resources.files("tools").joinpath(MINI_WEIGHTS)))


def _device_note() -> str:
    return "CUDA present" if cuda_present() else "no CUDA device, runs on CPU"


def _check_mini(argument: str) -> Availability:
    missing = needs_modules("torch", "safetensors")
    if missing:
        return missing
    path = mini_weights_path()
    if not path.is_file():
        return Availability(False, f"weights file tools/{MINI_WEIGHTS} missing; reinstall the package")
    return Availability(True, f"weights tools/{MINI_WEIGHTS}")


def _check_chexzero(argument: str) -> Availability:
    missing = needs_modules("torch", "open_clip", install=OPEN_CLIP_INSTALL)
    if missing:
        return missing
    if not argument:
        return Availability(False, "needs a checkpoint file (none given)")
    path = Path(argument).expanduser()
    if not path.is_file():
        return Availability(False, f"checkpoint file not found: {path}")
    return Availability(True, f"checkpoint {path}; {_device_note()}")


def _check_open_clip(argument: str) -> Availability:
    missing = needs_modules("torch", "open_clip", install=OPEN_CLIP_INSTALL)
    if missing:
        return missing
    body = argument.removeprefix("local-dir:")
    if argument.startswith("local-dir:"):
        folder = Path(body).expanduser()
        if not folder.is_dir():
            return Availability(False, f"model folder not found: {folder}")
        return Availability(True, f"open_clip installed, folder {folder}; {_device_note()}")
    pretrained = argument.partition("@")[2].strip()
    weights_file = "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if weights_file and not Path(pretrained).expanduser().is_file():
        return Availability(False, f"weights file not found: {pretrained}")
    return Availability(
        True,
        f"open_clip installed; a pretrained tag downloads its weights unless cached, a weights file or @random "
        f"works offline; {_device_note()}",
    )


def _check_hf_hub(argument: str) -> Availability:
    missing = needs_modules("torch", "open_clip", install=OPEN_CLIP_INSTALL)
    if missing:
        return missing
    return Availability(
        True, f"open_clip installed; downloads from the Hugging Face hub unless cached; {_device_note()}"
    )


def _check_reports(argument: str) -> Availability:
    return Availability(True, "scores report text, no image model; needs studies with reports")


SCORERS = Registry("scorer")
"""Every scorer backend (see the module docstring)."""

SCORERS.register(
    Backend(
        name="mini",
        syntax="mini",
        description="The project's offline mini CXR-CLIP (trained on SynthCXR only).",
        factory=MINI_FACTORY,
        check=_check_mini,
        install="use chexzero:PATH or open_clip:NAME@PRETRAINED",
        capabilities={"scores": "images"},
    )
)
SCORERS.register(
    Backend(
        name="chexzero",
        syntax="chexzero:PATH",
        description="A CheXzero checkpoint file (OpenAI CLIP ViT-B/32 fine-tuned on MIMIC-CXR).",
        factory="tools.scorers.chexzero:load_chexzero",
        argument="required",
        check=_check_chexzero,
        install=OPEN_CLIP_INSTALL,
        capabilities={"scores": "images"},
    )
)
SCORERS.register(
    Backend(
        name="open_clip",
        syntax="open_clip:NAME@PRETRAINED",
        description="An open_clip architecture with a pretrained tag or weights file; also "
        "open_clip:local-dir:PATH and open_clip:hf-hub:ORG/NAME.",
        factory="tools.scorers.openclip:load_open_clip",
        argument="required",
        check=_check_open_clip,
        install=OPEN_CLIP_INSTALL,
        capabilities={"scores": "images"},
    )
)
SCORERS.register(
    Backend(
        name="hf-hub",
        syntax="hf-hub:ORG/NAME",
        description="An open_clip model from the Hugging Face hub with its own config (e.g. BiomedCLIP).",
        factory="tools.scorers.openclip:load_open_clip",
        argument="required",
        check=_check_hf_hub,
        install=OPEN_CLIP_INSTALL,
        capabilities={"scores": "images"},
    )
)
SCORERS.register(
    Backend(
        name="reports",
        syntax="reports",
        description="Scores hypotheses from each study's report text (MiniLM + the labeler), not its image.",
        factory="tools.scorers.reports_scorer:ReportTextScorer",
        check=_check_reports,
        capabilities={"scores": "reports"},
    )
)


def scorer_scores_reports(scorer_id: str) -> bool:
    """True when the scorer ``scorer_id`` names scores report text rather than images (the ``reports`` entry).

    An id that no scorer claims is not a report scorer (loading it raises the registry's error).
    """
    return SCORERS.capability(scorer_id, "scores") == "reports"


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
    entry, argument = SCORERS.parse(spec)
    if entry.name == "chexzero":
        if not argument:
            raise InputError("scorer 'chexzero:': give the checkpoint file, chexzero:/path/to/file.pt")
        return ScorerSpec(kind="chexzero", path=Path(argument).expanduser())
    if entry.name == "hf-hub":
        if not argument or "/" not in argument:
            raise InputError(f"scorer {spec!r}: expected hf-hub:ORG/NAME")
        return ScorerSpec(kind="open_clip", name=f"hf-hub:{argument}")
    if entry.name == "open_clip":
        if argument.startswith(("hf-hub:", "local-dir:")):
            return ScorerSpec(kind="open_clip", name=argument)
        name, _, pretrained = argument.partition("@")
        if not name.strip():
            raise InputError(f"scorer {spec!r}: expected open_clip:NAME@PRETRAINED (e.g. open_clip:ViT-B-32@openai)")
        return ScorerSpec(kind="open_clip", name=name.strip(), pretrained=pretrained.strip() or None)
    return ScorerSpec(kind=cast(ScorerKind, entry.name))


_LOADED: dict[tuple[str, str, str, int], Any] = {}
_LOCK = threading.Lock()


def load_scorer(
    spec: str | ScorerSpec, *, device: str = "auto", dtype: str = "float32", batch_size: int = 32
) -> ImageTextModel:
    """Load (once per process) the image-text model a scorer id names."""
    parsed = parse_scorer(spec) if isinstance(spec, str) else spec
    if SCORERS.get(parsed.kind).capabilities.get("scores") == "reports":
        raise InputError("scorer 'reports' scores hypotheses from report text; it has no image-text model")
    from tools.scorers.base import resolve_torch_device

    resolved = resolve_torch_device(device)
    key = (str(parsed), resolved, dtype, batch_size)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(parsed, resolved, dtype, batch_size)
        return cast("ImageTextModel", _LOADED[key])


def clear_loaded_scorers() -> None:
    """Forget every loaded model (tests; frees memory)."""
    with _LOCK:
        _LOADED.clear()


def _load(spec: ScorerSpec, device: str, dtype: str, batch_size: int) -> Any:
    if spec.kind == "chexzero":
        if spec.path is None:
            raise InputError("scorer 'chexzero:': give the checkpoint file, chexzero:/path/to/file.pt")
        return SCORERS.load("chexzero")(spec.path, device=device, dtype=dtype, batch_size=batch_size)
    if spec.kind == "open_clip":
        loader = SCORERS.load("open_clip")
        return loader(spec.name, spec.pretrained, device=device, dtype=dtype, batch_size=batch_size)
    return _factory(MINI_FACTORY)(device=device)


def _factory(target: str) -> Any:
    """The mini factory (``MINI_FACTORY``, read at load time so tests can point it elsewhere)."""
    from tools.plugins import load_target

    return load_target(target, what="scorer 'mini'", hint=SCORERS.get("mini").install)
