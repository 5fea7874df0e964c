"""Local vision-language describers through Hugging Face transformers: CheXagent and generic VLMs.

Three model families, detected from the model's ``config.json``:

* ``chexagent-8b`` (``StanfordAIMI/CheXagent-8b``, architecture ``CheXagentForConditionalGeneration``):
  remote code; ``AutoProcessor`` + the model's ``GenerationConfig``; the prompt is
  ``" USER: <s>{prompt} ASSISTANT: <s>"`` (model card usage). The card only shows one image per call, so
  this family generates one image at a time (batching its remote processor is unconfirmed).
* ``chexagent-2`` (``StanfordAIMI/CheXagent-2-3b``, architecture ``CheXagentForCausalLM``): remote code;
  tokenizer only. The query is ``tokenizer.from_list_format([{'image': PATH}, {'text': prompt}])`` (the
  model reads the image from PATH, so each image is written to a temporary PNG), wrapped in the
  conversation ``[{"from": "system", "value": "You are a helpful assistant."}, {"from": "human",
  "value": query}]`` and ``tokenizer.apply_chat_template(conv, add_generation_prompt=True)``. Batched with
  left padding.
* ``image-text-to-text``: any model transformers knows natively (LLaVA, Qwen2-VL, Idefics, PaliGemma...)
  through ``AutoProcessor`` + ``AutoModelForImageTextToText`` and the processor's chat template. Batched
  with left padding.

Remote code runs only when ``Settings.trust_remote_code`` is true; a model that needs it without the
opt-in is refused with a one-line :class:`DescriberError`. Weights load from a local folder
(``local_files_only``) or a hub id (from the local hub cache, or downloaded where the network allows).
On CUDA the model runs in bfloat16/float16, on CPU in float32.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tools.data.images import to_pil
from tools.describers.base import DescriberError, check_images
from tools.settings import Settings, resolve_device

logger = logging.getLogger(__name__)

FAMILY_CHEXAGENT_8B = "chexagent-8b"
FAMILY_CHEXAGENT_2 = "chexagent-2"
FAMILY_GENERIC = "image-text-to-text"
CHEXAGENT2_SYSTEM_PROMPT = "You are a helpful assistant."


# --- prompt builders (pure; their exact output is tested) -------------------------------------------------


def chexagent_8b_prompt(prompt: str) -> str:
    """CheXagent-8b's text input for one image: ``" USER: <s>{prompt} ASSISTANT: <s>"``."""
    return f" USER: <s>{prompt} ASSISTANT: <s>"


def chexagent2_query_items(image_path: str, prompt: str) -> list[dict[str, str]]:
    """CheXagent-2's list format for one image (passed to the tokenizer's own ``from_list_format``)."""
    return [{"image": image_path}, {"text": prompt}]


def chexagent2_conversation(query: str, system_prompt: str = CHEXAGENT2_SYSTEM_PROMPT) -> list[dict[str, str]]:
    """CheXagent-2's conversation (``from``/``value`` keys) around a query from ``from_list_format``."""
    return [{"from": "system", "value": system_prompt}, {"from": "human", "value": query}]


def generic_conversation(image: Any, prompt: str) -> list[dict[str, Any]]:
    """A one-turn chat for a transformers image-text-to-text processor: the image, then the prompt."""
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]


def strip_echo(text: str, marker: str = "ASSISTANT:") -> str:
    """Drop an echoed prompt: keep what follows the last ``marker`` (if present), stripped."""
    if marker in text:
        text = text.rsplit(marker, 1)[1]
    return text.strip()


# --- family detection and loading -------------------------------------------------------------------------


def detect_family(config: dict[str, Any]) -> str:
    """Which prompt family a ``config.json`` belongs to (see the module docstring)."""
    architectures = [str(a) for a in config.get("architectures") or []]
    if "CheXagentForConditionalGeneration" in architectures:
        return FAMILY_CHEXAGENT_8B
    if "CheXagentForCausalLM" in architectures:
        return FAMILY_CHEXAGENT_2
    return FAMILY_GENERIC


def needs_remote_code(config: dict[str, Any]) -> bool:
    """True when the model's classes are not part of transformers and come from the repository's own code."""
    from transformers import CONFIG_MAPPING

    model_type = str(config.get("model_type") or "")
    return bool(config.get("auto_map")) and model_type not in CONFIG_MAPPING


def read_model_config(model_id: str) -> tuple[dict[str, Any], bool]:
    """Return ``(config.json as a dict, is_local_folder)`` for a local folder or a hub id."""
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
        if not path.is_file():
            raise DescriberError(f"{folder}: no config.json (not a transformers model folder)")
        local = True
    else:
        if model_id.startswith((".", "/", "~")):
            raise DescriberError(f"{model_id}: model folder not found")
        from transformers.utils import cached_file

        try:
            resolved = cached_file(model_id, "config.json")
        except (OSError, ValueError) as exc:
            raise DescriberError(
                f"{model_id}: model not available ({_first_line(exc)}); download it first (huggingface-cli "
                "download) or pass a local model folder"
            ) from None
        if resolved is None:
            raise DescriberError(f"{model_id}: model has no config.json")
        path = Path(resolved)
        local = False
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DescriberError(f"{path}: unreadable config.json ({_first_line(exc)})") from None
    if not isinstance(config, dict):
        raise DescriberError(f"{path}: config.json is not a JSON object")
    return config, local


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def compute_dtype(device: str, requested: str) -> Any:
    """Torch dtype of a model: half precision on CUDA (bfloat16 unless float16 is asked for), float32 on CPU."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    if requested == "float16":
        return torch.float16
    if requested == "bfloat16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _dtype_kwargs(dtype: Any) -> dict[str, Any]:
    import transformers

    major_minor = tuple(int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if major_minor >= (4, 56) else {"torch_dtype": dtype}


@dataclass
class _Loaded:
    model: Any
    processor: Any = None
    tokenizer: Any = None
    generation_config: Any = None


class TransformersDescriber:
    """A loaded transformers VLM (CheXagent or a generic image-text-to-text model) that describes images."""

    def __init__(
        self,
        model_id: str,
        family: str,
        loaded: _Loaded,
        *,
        device: str,
        dtype: Any,
        batch_size: int,
        max_new_tokens: int,
        backend: str = "chexagent",
    ) -> None:
        self.backend = backend
        self.model_id = model_id
        self.family = family
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._loaded = loaded

    def __repr__(self) -> str:
        return f"TransformersDescriber(model={self.model_id!r}, family={self.family!r}, device={self.device!r})"

    def describe(self, images: list[np.ndarray], prompt: str) -> list[str]:
        """Describe each image with ``prompt``; batches of ``batch_size`` (CheXagent-8b: one at a time)."""
        import torch

        check_images(images)
        if not prompt.strip():
            raise DescriberError("describe: empty prompt")
        step = 1 if self.family == FAMILY_CHEXAGENT_8B else self.batch_size
        out: list[str] = []
        try:
            with torch.inference_mode():
                for start in range(0, len(images), step):
                    batch = images[start : start + step]
                    if self.family == FAMILY_CHEXAGENT_8B:
                        out.extend(self._describe_8b(batch, prompt))
                    elif self.family == FAMILY_CHEXAGENT_2:
                        out.extend(self._describe_chexagent2(batch, prompt))
                    else:
                        out.extend(self._describe_generic(batch, prompt))
        except torch.cuda.OutOfMemoryError:
            raise DescriberError(
                f"{self.model_id}: out of GPU memory; lower batch_size (now {self.batch_size})"
            ) from None
        return out

    # -- CheXagent-8b --------------------------------------------------------------------------------------
    def _describe_8b(self, batch: list[np.ndarray], prompt: str) -> list[str]:
        loaded = self._loaded
        texts = []
        for image in batch:
            inputs = loaded.processor(
                images=[to_pil(image).convert("RGB")], text=chexagent_8b_prompt(prompt), return_tensors="pt"
            ).to(device=self.device, dtype=self.dtype)
            kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
            if loaded.generation_config is not None:
                kwargs["generation_config"] = loaded.generation_config
            output = loaded.model.generate(**inputs, **kwargs)[0]
            texts.append(strip_echo(loaded.processor.tokenizer.decode(output, skip_special_tokens=True)))
        return texts

    # -- CheXagent-2 ---------------------------------------------------------------------------------------
    def _describe_chexagent2(self, batch: list[np.ndarray], prompt: str) -> list[str]:
        import torch

        tokenizer = self._loaded.tokenizer
        rows: list[list[int]] = []
        with tempfile.TemporaryDirectory(prefix="raddiff-chexagent-") as folder:
            for index, image in enumerate(batch):
                path = Path(folder) / f"image_{index}.png"
                to_pil(image).save(path)
                query = tokenizer.from_list_format(chexagent2_query_items(str(path), prompt))
                ids = tokenizer.apply_chat_template(chexagent2_conversation(query), add_generation_prompt=True)
                rows.append(_as_id_list(ids))
            input_ids, attention_mask = left_pad(rows, _pad_id(tokenizer))
            output = self._loaded.model.generate(
                input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                do_sample=False,
                num_beams=1,
                use_cache=True,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=_pad_id(tokenizer),
            )
        new_tokens = output[:, input_ids.shape[1] :]
        stop_ids = {i for i in (tokenizer.eos_token_id, getattr(tokenizer, "pad_token_id", None)) if i is not None}
        texts = []
        for row in new_tokens.tolist():
            kept = []
            for token in row:
                if token in stop_ids:
                    break
                kept.append(token)
            texts.append(tokenizer.decode(torch.tensor(kept), skip_special_tokens=True).strip())
        return texts

    # -- generic image-text-to-text ------------------------------------------------------------------------
    def _describe_generic(self, batch: list[np.ndarray], prompt: str) -> list[str]:
        import inspect

        processor = self._loaded.processor
        conversations = [generic_conversation(to_pil(image).convert("RGB"), prompt) for image in batch]
        options: dict[str, Any] = {"padding": True}
        params = inspect.signature(processor.apply_chat_template).parameters
        call: dict[str, Any] = {"processor_kwargs": options} if "processor_kwargs" in params else dict(options)
        try:
            inputs = processor.apply_chat_template(
                conversations,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
                **call,
            )
        except ValueError as exc:
            raise DescriberError(f"{self.model_id}: cannot build the chat input ({_first_line(exc)})") from None
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        output = self._loaded.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        decoded = processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [str(text).strip() for text in decoded]


def _as_id_list(ids: Any) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    return [int(i) for i in ids]


def _pad_id(tokenizer: Any) -> int:
    for candidate in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if candidate is not None:
            return int(candidate)
    return 0


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Left-pad token id rows into ``(input_ids, attention_mask)`` tensors (decoder-only batched generation)."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def load_transformers_describer(
    model_id: str, settings: Settings, *, backend: str = "chexagent", max_new_tokens: int = 256
) -> TransformersDescriber:
    """Load a CheXagent or generic transformers VLM from a hub id or a local folder (see module docstring)."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - core dependency
        raise DescriberError(f"the {backend} describer needs transformers (pip install transformers): {exc}") from None
    config, local = read_model_config(model_id)
    family = detect_family(config)
    remote = needs_remote_code(config)
    if remote and not settings.trust_remote_code:
        raise DescriberError(
            f"{model_id} runs its own code from the model repository; if you trust it, set trust_remote_code: true "
            "(or RADDIFF_TRUST_REMOTE_CODE=true)"
        )
    device = resolve_device(settings)
    dtype = compute_dtype(device, settings.dtype)
    common: dict[str, Any] = {"local_files_only": local}
    if remote:
        common["trust_remote_code"] = True
    source = str(Path(model_id).expanduser()) if local else model_id
    logger.info("loading %s (%s) on %s as %s", model_id, family, device, dtype)
    try:
        if family == FAMILY_CHEXAGENT_8B:
            processor = transformers.AutoProcessor.from_pretrained(source, **common)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, **common, **_dtype_kwargs(dtype))
            try:
                generation_config = transformers.GenerationConfig.from_pretrained(source, local_files_only=local)
            except OSError:
                generation_config = None
            loaded = _Loaded(model=model, processor=processor, generation_config=generation_config)
        elif family == FAMILY_CHEXAGENT_2:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **common)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, **common, **_dtype_kwargs(dtype))
            loaded = _Loaded(model=model, tokenizer=tokenizer)
        else:
            processor = transformers.AutoProcessor.from_pretrained(source, **common)
            text_tokenizer: Any = getattr(processor, "tokenizer", None)
            if text_tokenizer is None:
                raise DescriberError(f"{model_id}: processor has no tokenizer (not an image-text-to-text model)")
            text_tokenizer.padding_side = "left"
            if (
                getattr(processor, "chat_template", None) is None
                and getattr(text_tokenizer, "chat_template", None) is None
            ):
                raise DescriberError(f"{model_id}: processor has no chat template; cannot build prompts for it")
            model = transformers.AutoModelForImageTextToText.from_pretrained(source, **common, **_dtype_kwargs(dtype))
            loaded = _Loaded(model=model, processor=processor)
    except DescriberError:
        raise
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise DescriberError(f"{model_id}: cannot load ({_first_line(exc)})") from None
    loaded.model.to(device)
    loaded.model.eval()
    return TransformersDescriber(
        model_id,
        family,
        loaded,
        device=device,
        dtype=dtype,
        batch_size=settings.batch_size,
        max_new_tokens=max_new_tokens,
        backend=backend,
    )
