"""The describer interface: images in, one radiologist-style description per image out.

Images are the canonical arrays of :func:`tools.data.images.load_image` (``float32``, 2-D, values in ``[0, 1]``).
Backends batch internally and return exactly one string per input image, in order.
"""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Protocol, runtime_checkable

import numpy as np

from tools.data.images import to_pil
from tools.domain import RadDiffError

DEFAULT_DESCRIBE_PROMPT = (
    "Describe this chest radiograph as a radiologist: every abnormality with side, size and location, "
    "every support device with its tip position, and pertinent negatives."
)
"""The describe prompt of every run (and the default of the describe tool); part of the description cache key."""


class DescriberError(RadDiffError):
    """A describer backend failed (cannot load, endpoint refused, bad reply). One line the agent can act on."""


@runtime_checkable
class Describer(Protocol):
    """A loaded image-describing backend.

    ``backend`` names the family (``'mini'``, ``'chexagent'``, ``'transformers'``, ``'openai'``) and
    ``model_id`` the model; together with the prompt and the image content they key the description cache.
    """

    backend: str
    model_id: str

    def describe(self, images: list[np.ndarray], prompt: str) -> list[str]:
        """Return one description per image (same order), batching internally."""
        ...


def check_images(images: list[np.ndarray]) -> None:
    """Raise :class:`DescriberError` unless every item is a 2-D finite array (the canonical image form)."""
    for index, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.ndim != 2:
            shape = getattr(image, "shape", type(image).__name__)
            raise DescriberError(f"image {index}: expected a 2-D grayscale array, got {shape}")


def array_hash(image: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes: the cache key of an in-memory image."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def png_bytes(image: np.ndarray, max_side: int | None = None) -> bytes:
    """Encode a canonical image as an 8-bit grayscale PNG, shrunk so its longer side is at most ``max_side``."""
    pil = to_pil(image)
    if max_side is not None and max(pil.size) > max_side:
        scale = max_side / max(pil.size)
        size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
        pil = pil.resize(size, resample=3)  # PIL.Image.BICUBIC
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_url(image: np.ndarray, max_side: int | None = None) -> str:
    """``data:image/png;base64,...`` URL of a canonical image (how images travel inline in chat requests)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image, max_side)).decode("ascii")
