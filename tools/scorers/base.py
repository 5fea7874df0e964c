"""The image-text model interface every scorer backend implements, and shared torch plumbing.

A backend embeds images (canonical grayscale ``float32`` arrays in ``[0, 1]``, see :mod:`tools.data.images`)
and texts into one space, returning L2-normalised ``float32`` rows. ``model_id``, ``weights_hash`` and
``preprocess_version`` together name what an embedding depends on: they make the embedding cache's key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from tools.domain import InputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@runtime_checkable
class ImageTextModel(Protocol):
    """What the scoring engine needs from an image-text model (CheXzero, any open_clip model, mini)."""

    @property
    def model_id(self) -> str:
        """Readable identifier, e.g. ``chexzero@1a2b3c4d5e6f`` or ``open_clip:ViT-B-32@openai``."""
        ...

    @property
    def weights_hash(self) -> str:
        """Hash of the weights (file content or parameters): part of every cache key."""
        ...

    @property
    def preprocess_version(self) -> str:
        """Names the image preprocessing: embeddings made with another preprocessing are not reused."""
        ...

    @property
    def logit_scale(self) -> float:
        """The model's learned temperature (``exp`` of its logit scale)."""
        ...

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Canonical grayscale images -> ``(N, D)`` float32, rows L2-normalised."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(H, D)`` float32, rows L2-normalised."""
        ...


def image_cache_key(model: ImageTextModel) -> str:
    """Cache key of a model's image embeddings: model id, weights hash and preprocessing version."""
    return f"{model.model_id}|{model.weights_hash}|{model.preprocess_version}"


def text_cache_key(model: ImageTextModel) -> str:
    """Cache key of a model's text embeddings (the image preprocessing plays no part)."""
    return f"{model.model_id}|{model.weights_hash}|text"


def as_canonical(image: np.ndarray | Image.Image, index: int = 0) -> np.ndarray:
    """A canonical grayscale ``float32`` image in ``[0, 1]`` from an array of that kind or any PIL image."""
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
        gray = image if image.mode == "L" else image.convert("L")
        return np.asarray(gray, dtype=np.float32) / 255.0
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2 or min(array.shape) < 2:
        raise InputError(f"image {index}: expected a 2-D grayscale array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"image {index}: has NaN or infinite pixel values")
    if array.min() < -1e-6 or array.max() > 1.0 + 1e-6:
        raise InputError(
            f"image {index}: values outside [0, 1] (min {array.min():.3g}, max {array.max():.3g}); "
            "pass canonical images from tools.data.images.load_image"
        )
    return array


def l2_normalise(vectors: np.ndarray, what: str) -> np.ndarray:
    """Rows divided by their norm; a non-finite or zero row is a model failure and raises ``RuntimeError``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] <= 0)
    if bad.any():
        raise RuntimeError(
            f"{what}: the model returned a NaN, infinite or zero embedding (row {np.flatnonzero(bad)[0]})"
        )
    return vectors / norms


def resolve_torch_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU is an error that says so."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: no CUDA device is available (use --device cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"device {device!r}: expected 'cpu', 'cuda' or 'auto'")
    return device


def resolve_torch_dtype(dtype: str, device: str) -> torch.dtype:
    """Compute dtype: half precision only on CUDA (on CPU it falls back to float32 with a warning)."""
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise InputError(f"dtype {dtype!r}: expected one of {', '.join(table)}")
    if dtype != "float32" and not device.startswith("cuda"):
        log.warning("dtype %s is only used on CUDA; computing in float32 on %s", dtype, device)
        return torch.float32
    return table[dtype]


def parameters_hash(module: Any) -> str:
    """SHA-256 over a torch module's state dict (names, shapes, dtypes, bytes): a weights hash without a file."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        cpu = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(cpu.shape)}:{cpu.dtype}".encode())
        digest.update(cpu.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Any) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class TorchCLIPModel:
    """A CLIP-style torch module (``encode_image``, ``encode_text``, ``logit_scale``) behind the interface.

    ``preprocess`` turns one canonical image into a ``(3, H, W)`` tensor; ``tokenize`` turns a list of texts
    into a token tensor. Weights stay on ``device`` in ``dtype``; outputs are float32 unit rows.
    """

    def __init__(
        self,
        module: Any,
        *,
        preprocess: Callable[[np.ndarray], torch.Tensor],
        tokenize: Callable[[list[str]], torch.Tensor],
        model_id: str,
        weights_hash: str,
        preprocess_version: str,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 32,
    ) -> None:
        self.device = resolve_torch_device(device)
        self.torch_dtype = resolve_torch_dtype(dtype, self.device)
        self.module = module.to(device=self.device, dtype=self.torch_dtype).eval()
        self._preprocess = preprocess
        self._tokenize = tokenize
        self._model_id = model_id
        self._weights_hash = weights_hash
        self._preprocess_version = preprocess_version
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        """Readable identifier of the model."""
        return self._model_id

    @property
    def weights_hash(self) -> str:
        """Hash of the weights."""
        return self._weights_hash

    @property
    def preprocess_version(self) -> str:
        """Name of the image preprocessing."""
        return self._preprocess_version

    @property
    def logit_scale(self) -> float:
        """``exp`` of the module's learned logit scale."""
        return float(self.module.logit_scale.detach().float().exp().item())

    def preprocess(self, image: np.ndarray | Image.Image) -> torch.Tensor:
        """One image -> the model's input tensor ``(3, H, W)`` (float32, on CPU)."""
        return self._preprocess(as_canonical(image))

    def encode_images(self, images: Sequence[np.ndarray | Image.Image]) -> np.ndarray:
        """Images -> ``(N, D)`` float32 unit rows, in batches of ``batch_size``."""
        import torch

        canonical = [as_canonical(img, i) for i, img in enumerate(images)]
        chunks: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(canonical), self.batch_size):
                batch = torch.stack([self._preprocess(img) for img in canonical[start : start + self.batch_size]])
                out = self.module.encode_image(batch.to(self.device, self.torch_dtype))
                chunks.append(out.float().cpu().numpy())
        if not chunks:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return l2_normalise(np.concatenate(chunks), f"{self.model_id} images")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(H, D)`` float32 unit rows."""
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
        if bad:
            raise InputError(f"text {bad[0]!r}: empty or not a string")
        chunks: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(texts), 256):
                tokens = self._tokenize(texts[start : start + 256]).to(self.device)
                chunks.append(self.module.encode_text(tokens).float().cpu().numpy())
        return l2_normalise(np.concatenate(chunks), f"{self.model_id} texts")

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint embedding space."""
        proj = getattr(self.module, "text_projection", None)
        if proj is not None and hasattr(proj, "shape"):
            return int(proj.shape[-1])
        return int(self.encode_texts(["x"]).shape[1])
