"""Any open_clip model as a scorer: a built-in name with a pretrained tag or weights file, ``hf-hub:`` ids
(BiomedCLIP: ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``) and ``local-dir:`` folders.

Weights come through open_clip's own loaders (``weights_only=True``, safetensors preferred). Nothing is
downloaded by this project: tags and ``hf-hub:`` ids resolve from the Hugging Face cache when it holds them
(set ``HF_HUB_OFFLINE=1`` on machines without network), and a missing file gives an error that says where
to put it. Grayscale images are replicated to RGB and go through the model's own eval transform.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tools.data.images import to_uint8
from tools.domain import InputError
from tools.scorers.base import TorchCLIPModel, file_sha256, parameters_hash

log = logging.getLogger(__name__)

RANDOM_TAG = "random"
"""Pretrained tag meaning "random initialisation": for tests and benchmarks only, never for results."""


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise InputError(f"open_clip scorers need open_clip (pip install open_clip_torch): {exc}") from exc
    return open_clip


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def load_open_clip(
    name: str,
    pretrained: str | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 32,
    seed: int = 0,
    **model_kwargs: Any,
) -> TorchCLIPModel:
    """Load open_clip model ``name`` with ``pretrained`` weights (a tag, a file, or ``"random"``).

    ``name`` may carry an open_clip schema (``hf-hub:ORG/NAME``, ``local-dir:PATH``), which holds its own
    weights; otherwise ``pretrained`` is required. ``model_kwargs`` override the model config (used to build
    small random models of a real architecture for tests and benchmarks).
    """
    open_clip = _open_clip()
    schema = name.split(":", 1)[0] if name.startswith(("hf-hub:", "local-dir:")) else None
    if schema is None and not pretrained:
        raise InputError(
            f"open_clip model {name!r}: say which weights, open_clip:{name}@TAG (e.g. @openai) or @/path/to/weights "
            f"(known tags: {', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'})"
        )
    if schema is None and name not in open_clip.list_models():
        raise InputError(f"open_clip model {name!r}: unknown architecture (see open_clip.list_models())")
    weights_file: Path | None = None
    if (
        pretrained
        and pretrained != RANDOM_TAG
        and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors")))
    ):
        weights_file = Path(pretrained).expanduser()
        if not weights_file.is_file():
            raise InputError(f"{weights_file}: open_clip weights file not found")
    random_init = pretrained == RANDOM_TAG
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name,
                pretrained=None if (random_init or schema) else str(weights_file or pretrained),
                load_weights=not random_init,
                device="cpu",
                weights_only=True,
                pretrained_text=not random_init,
                **model_kwargs,
            )
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise InputError(
            f"open_clip model {name}@{pretrained or schema}: cannot load ({_first_line(exc)}); put the weights in the "
            "Hugging Face cache or pass a local file as open_clip:NAME@/path/to/weights"
        ) from exc
    if random_init:
        log.warning("open_clip model %s is randomly initialised: its scores mean nothing", name)
    weights_hash = file_sha256(weights_file) if weights_file else parameters_hash(model)
    version = "open_clip:" + hashlib.sha256(repr(preprocess).encode()).hexdigest()[:12]
    label = weights_file.name if weights_file else (pretrained or schema or "")
    context = int(getattr(model, "context_length", 0) or 0) or None

    def prep(image: np.ndarray) -> Any:
        from PIL import Image

        return preprocess(Image.fromarray(to_uint8(image), mode="L").convert("RGB"))

    def tok(texts: list[str]) -> Any:
        return tokenizer(texts, context_length=context) if context else tokenizer(texts)

    return TorchCLIPModel(
        model,
        preprocess=prep,
        tokenize=tok,
        model_id=f"open_clip:{name}@{label}",
        weights_hash=weights_hash,
        preprocess_version=version,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
