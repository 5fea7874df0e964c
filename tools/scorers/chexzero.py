"""CheXzero: OpenAI CLIP ViT-B/32 fine-tuned on MIMIC-CXR image-report pairs (Tiu et al., 2022).

The checkpoint is a state dict of the OpenAI ``clip`` package's model (``visual.conv1.weight``,
``transformer.resblocks.0...``, ``token_embedding.weight``, ``logit_scale``...). It is loaded with
``weights_only=True`` (or from safetensors) into open_clip's ``CLIP`` (QuickGELU), its shape read off the
state dict as open_clip's ``build_model_from_openai_state_dict`` does, in float32.

Preprocessing follows CheXzero's own code, not generic CLIP preprocessing:

1. ``data_process.preprocess``: the 8-bit grayscale image is resized keeping its aspect ratio so that its
   longest side is 320 px (PIL Lanczos, ``int()`` of the scaled sizes) and pasted in the centre of a black
   320 x 320 square;
2. the gray values (0-255) are replicated to 3 channels;
3. ``Normalize(mean=101.48761, std=83.43944)`` on the 0-255 scale;
4. ``Resize(224, bicubic)`` of the tensor, without antialiasing (the torchvision CheXzero ran with did not
   antialias tensors).

Texts are tokenized with the CLIP BPE tokenizer at context length 77.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.data.images import to_uint8
from tools.domain import InputError
from tools.scorers.base import TorchCLIPModel, as_canonical, file_sha256

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

CHEXZERO_MEAN = 101.48761
CHEXZERO_STD = 83.43944
CHEXZERO_PAD_SIZE = 320
CHEXZERO_INPUT_SIZE = 224
CHEXZERO_CONTEXT_LENGTH = 77
CHEXZERO_PREPROCESS_VERSION = "chexzero-v1(pad320-lanczos,norm101.48761/83.43944,bicubic224-noaa)"
CHEXZERO_HINT = (
    "download a CheXzero checkpoint (e.g. best_64_5e-05_original_22000_0.864.pt, linked from "
    "https://github.com/rajpurkarlab/CheXzero) and pass --scorer chexzero:/path/to/file.pt"
)
_OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")


def pad_to_square(image: np.ndarray | Image.Image, size: int = CHEXZERO_PAD_SIZE) -> Image.Image:
    """CheXzero's ``preprocess``: 8-bit gray, longest side resized to ``size`` (Lanczos), centred on black."""
    from PIL import Image

    gray = Image.fromarray(to_uint8(as_canonical(image)), mode="L")
    ratio = float(size) / max(gray.size)
    new_size = (int(gray.size[0] * ratio), int(gray.size[1] * ratio))
    resized = gray.resize(new_size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size))
    canvas.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def chexzero_preprocess(image: np.ndarray | Image.Image) -> torch.Tensor:
    """One image -> CheXzero's model input, a ``(3, 224, 224)`` float32 tensor (see the module docstring)."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tf

    square = np.asarray(pad_to_square(image), dtype=np.float32)  # 0-255
    pixels = torch.from_numpy(square).unsqueeze(0).repeat(3, 1, 1)
    pixels = (pixels - CHEXZERO_MEAN) / CHEXZERO_STD
    return tf.resize(
        pixels, [CHEXZERO_INPUT_SIZE, CHEXZERO_INPUT_SIZE], interpolation=InterpolationMode.BICUBIC, antialias=False
    )


def read_state_dict(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely: safetensors, or ``torch.load(weights_only=True)``; unwrap common wrappers.

    Accepts a bare state dict, ``{"state_dict": ...}`` / ``{"model_state_dict": ...}`` / ``{"model": ...}``
    wrappers and ``module.`` prefixes (DataParallel).
    """
    import torch

    if not path.is_file():
        raise InputError(f"{path}: checkpoint file not found; {CHEXZERO_HINT}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from exc
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(
                f"{path}: cannot be loaded as a state dict with weights_only=True ({first}); "
                "re-save it with torch.save(model.state_dict(), path)"
            ) from exc
    if isinstance(raw, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(raw.get(wrapper), dict):
                raw = raw[wrapper]
                break
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: does not hold a state dict (got {type(raw).__name__})")
    state = {k: v for k, v in raw.items() if k not in _OPENAI_META_KEYS}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    not_tensor = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensor:
        raise InputError(f"{path}: entry {not_tensor[0]!r} is not a tensor; expected a state dict of tensors")
    return state


def build_openai_clip(state: dict[str, Any], path: Path) -> Any:
    """Build open_clip's CLIP (QuickGELU, float32) with the ViT shape an OpenAI-style state dict describes.

    The shape is read off the state dict as ``open_clip.model.build_model_from_openai_state_dict`` does;
    unlike that function the weights are loaded in float32 (it rounds them through float16, which is
    right for OpenAI's released fp16 weights but would alter a float32 fine-tuned checkpoint).
    """
    try:
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    except ImportError as exc:
        raise InputError(f"CheXzero needs open_clip (pip install open_clip_torch): {exc}") from exc
    for key in (
        "visual.conv1.weight",
        "visual.proj",
        "visual.positional_embedding",
        "positional_embedding",
        "text_projection",
        "token_embedding.weight",
        "ln_final.weight",
    ):
        if key not in state:
            raise InputError(
                f"{path}: not an OpenAI-CLIP ViT state dict (no {key!r}); CheXzero checkpoints are state dicts "
                "of CLIP ViT-B/32"
            )
    conv = state["visual.conv1.weight"]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    vision = CLIPVisionCfg(
        layers=sum(1 for k in state if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")),
        width=int(conv.shape[0]),
        patch_size=int(conv.shape[-1]),
        image_size=int(conv.shape[-1]) * grid,
    )
    width = int(state["ln_final.weight"].shape[0])
    text = CLIPTextCfg(
        context_length=int(state["positional_embedding"].shape[0]),
        vocab_size=int(state["token_embedding.weight"].shape[0]),
        width=width,
        heads=width // 64,
        layers=len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}),
    )
    try:
        model = CLIP(int(state["text_projection"].shape[1]), vision_cfg=vision, text_cfg=text, quick_gelu=True)
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: weights do not fit the CLIP architecture they describe ({first})") from exc
    return model.eval()


def load_chexzero(
    path: Path | str, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 32
) -> TorchCLIPModel:
    """Load a CheXzero checkpoint as an :class:`~tools.scorers.base.ImageTextModel`."""
    try:
        from open_clip.tokenizer import tokenize
    except ImportError as exc:
        raise InputError(f"CheXzero needs open_clip (pip install open_clip_torch): {exc}") from exc
    path = Path(path).expanduser()
    state = read_state_dict(path)
    model = build_openai_clip(state, path)
    context = int(model.context_length)
    if context != CHEXZERO_CONTEXT_LENGTH:
        log.warning("%s: context length %d (CheXzero uses %d)", path, context, CHEXZERO_CONTEXT_LENGTH)
    image_size = model.visual.image_size
    if tuple(np.atleast_1d(image_size).tolist())[:1] != (CHEXZERO_INPUT_SIZE,):
        raise InputError(f"{path}: vision input size {image_size}, but CheXzero preprocessing makes 224 px")
    weights_hash = file_sha256(path)
    log.info("loaded CheXzero from %s (sha256 %s)", path, weights_hash[:12])
    return TorchCLIPModel(
        model,
        preprocess=chexzero_preprocess,
        tokenize=lambda texts: tokenize(texts, context_length=context),
        model_id=f"chexzero@{weights_hash[:12]}",
        weights_hash=weights_hash,
        preprocess_version=CHEXZERO_PREPROCESS_VERSION,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
