"""Describer backed by any OpenAI-compatible multimodal chat-completions endpoint.

Works with OpenAI itself and with local servers that speak the same protocol (vLLM, SGLang, Ollama,
llama.cpp) through a base URL. Each image travels inline as a ``data:image/png;base64,...`` ``image_url``
content part next to the prompt text. Requests have a timeout and are retried a bounded number of times
on 429, 5xx, timeouts and connection errors; any failure surfaces as a one-line :class:`DescriberError`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tools.describers.base import DescriberError, check_images, png_data_url

logger = logging.getLogger(__name__)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


def _first_line(text: str, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:limit]


def _error_detail(response: Any) -> str:
    """The server's error message (OpenAI puts it under ``error.message``), else the body's first line."""
    try:
        body = response.json()
    except ValueError:
        return _first_line(response.text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return _first_line(str(error["message"]))
        if isinstance(error, str):
            return _first_line(error)
        if body.get("message"):
            return _first_line(str(body["message"]))
    return _first_line(json.dumps(body))


def message_text(message: dict[str, Any]) -> str:
    """Text of a chat-completions ``message``: a string, or the text parts of a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") in ("text", None)]
        return "".join(parts).strip()
    return ""


def parse_description_list(text: str, expected: int) -> list[str]:
    """Parse a reply that should be a JSON array of ``expected`` strings (tolerates a fenced code block)."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`")
        cleaned = cleaned[cleaned.find("[") :] if "[" in cleaned else cleaned
    start, end = cleaned.find("["), cleaned.rfind("]")
    try:
        values = json.loads(cleaned[start : end + 1]) if start >= 0 and end > start else None
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or len(values) != expected or not all(isinstance(v, str) for v in values):
        raise DescriberError(
            f"endpoint reply is not a JSON array of {expected} descriptions (got {_first_line(text, 80)!r}); "
            "use images_per_request=1"
        )
    return [v.strip() for v in values]


class OpenAICompatDescriber:
    """Describe images through an OpenAI-compatible ``/chat/completions`` endpoint.

    ``images_per_request`` > 1 sends several images in one request and asks for a JSON array of
    descriptions; 1 (the default) sends one image per request, which every server handles. Requests run
    ``concurrency`` at a time. ``usage`` accumulates the token counts the server reports.
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        images_per_request: int = 1,
        concurrency: int = 4,
        max_tokens: int = 512,
        temperature: float = 0.0,
        system_prompt: str | None = None,
        max_image_side: int | None = 1024,
    ) -> None:
        if not model.strip():
            raise DescriberError("openai describer: empty model name (use 'openai:MODEL')")
        if images_per_request < 1 or concurrency < 1 or max_retries < 0:
            raise DescriberError("openai describer: images_per_request and concurrency must be >= 1, retries >= 0")
        self.model_id = model.strip()
        self.base_url = (base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/")
        if base_url is None and not api_key:
            raise DescriberError(
                "openai describer: OPENAI_API_KEY is not set (export it, or point llm_base_url / OPENAI_BASE_URL "
                "at a local OpenAI-compatible server)"
            )
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.images_per_request = images_per_request
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.system_prompt = system_prompt
        self.max_image_side = max_image_side
        self.usage: dict[str, int] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "requests": 0}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAICompatDescriber(model={self.model_id!r}, base_url={self.base_url!r})"

    @property
    def endpoint(self) -> str:
        """Full URL of the chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def build_request(self, images: list[np.ndarray], prompt: str) -> dict[str, Any]:
        """The JSON body of one chat-completions request for ``images`` (inline PNG data URLs) and ``prompt``."""
        text = prompt
        if len(images) > 1:
            text = (
                f"{prompt}\n\nThere are {len(images)} images, each a separate study. Answer with only a JSON array "
                f"of {len(images)} strings: the description of each image, in the order given."
            )
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        content.extend(
            {"type": "image_url", "image_url": {"url": png_data_url(image, self.max_image_side)}} for image in images
        )
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": content})
        return {
            "model": self.model_id,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        last_problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * (2 ** (attempt - 1)))
            try:
                response = client.post(self.endpoint, json=body, headers=self._headers())
            except httpx.TimeoutException:
                last_problem = f"timed out after {self.timeout_s:g} s"
                logger.warning("describer request to %s %s (attempt %d)", self.endpoint, last_problem, attempt + 1)
                continue
            except httpx.TransportError as exc:
                last_problem = f"cannot connect ({type(exc).__name__}: {_first_line(str(exc), 120)})"
                logger.warning("describer request to %s: %s (attempt %d)", self.endpoint, last_problem, attempt + 1)
                continue
            if response.status_code in RETRY_STATUSES:
                last_problem = f"HTTP {response.status_code}: {_error_detail(response)}"
                logger.warning("describer request to %s: %s (attempt %d)", self.endpoint, last_problem, attempt + 1)
                continue
            if response.status_code in (401, 403):
                raise DescriberError(
                    f"{self.endpoint} refused the credentials (HTTP {response.status_code}: "
                    f"{_error_detail(response)}); check OPENAI_API_KEY"
                )
            if response.status_code == 404:
                raise DescriberError(
                    f"{self.endpoint}: not found (HTTP 404: {_error_detail(response)}); check the model name "
                    f"{self.model_id!r} and the base URL"
                )
            if response.status_code >= 400:
                raise DescriberError(
                    f"{self.endpoint} rejected the request (HTTP {response.status_code}: {_error_detail(response)})"
                )
            try:
                data = response.json()
            except ValueError:
                raise DescriberError(f"{self.endpoint} answered with a body that is not JSON") from None
            if not isinstance(data, dict):
                raise DescriberError(f"{self.endpoint} answered with JSON that is not an object")
            return data
        raise DescriberError(f"{self.endpoint} failed after {self.max_retries + 1} attempts ({last_problem})")

    def _record_usage(self, data: dict[str, Any]) -> None:
        usage = data.get("usage") or {}
        with self._lock:
            self.usage["requests"] += 1
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                value = usage.get(key) if isinstance(usage, dict) else None
                if isinstance(value, int):
                    self.usage[key] += value

    def _describe_chunk(self, client: Any, images: list[np.ndarray], prompt: str) -> list[str]:
        data = self._post(client, self.build_request(images, prompt))
        self._record_usage(data)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise DescriberError(f"{self.endpoint} reply has no choices")
        text = message_text(choices[0].get("message") or {})
        if not text:
            reason = choices[0].get("finish_reason")
            raise DescriberError(f"{self.endpoint} reply has no text (finish_reason={reason!r})")
        if len(images) == 1:
            return [text]
        return parse_description_list(text, len(images))

    def describe(self, images: list[np.ndarray], prompt: str) -> list[str]:
        """Describe each image; one request per ``images_per_request`` images, ``concurrency`` in flight."""
        import httpx

        check_images(images)
        if not prompt.strip():
            raise DescriberError("describe: empty prompt")
        if not images:
            return []
        step = self.images_per_request
        chunks = [images[i : i + step] for i in range(0, len(images), step)]
        with httpx.Client(timeout=self.timeout_s) as client:
            if self.concurrency == 1 or len(chunks) == 1:
                results = [self._describe_chunk(client, chunk, prompt) for chunk in chunks]
            else:
                with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks))) as pool:
                    results = list(pool.map(lambda chunk: self._describe_chunk(client, chunk, prompt), chunks))
        return [text for chunk_texts in results for text in chunk_texts]
