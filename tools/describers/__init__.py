"""Image describers: radiologist-style descriptions of images from CheXagent, transformers VLMs or an
OpenAI-compatible endpoint (and the offline ``mini`` describer), with an on-disk description cache.

Heavy libraries (torch, transformers, httpx) are imported only when a backend is loaded or used.
"""

from tools.describers.api import describe_files
from tools.describers.base import (
    DEFAULT_DESCRIBE_PROMPT,
    Describer,
    DescriberError,
    array_hash,
    png_bytes,
    png_data_url,
)
from tools.describers.cache import (
    DescriptionCache,
    default_description_cache,
    describe_cached,
    description_key,
    image_source_hash,
)
from tools.describers.registry import (
    DescriberSpec,
    clear_describer_registry,
    get_describer,
    load_describer,
    parse_describer_id,
    resolve_base_url,
)

__all__ = [
    "DEFAULT_DESCRIBE_PROMPT",
    "Describer",
    "DescriberError",
    "DescriberSpec",
    "DescriptionCache",
    "array_hash",
    "clear_describer_registry",
    "default_description_cache",
    "describe_cached",
    "describe_files",
    "description_key",
    "get_describer",
    "image_source_hash",
    "load_describer",
    "parse_describer_id",
    "png_bytes",
    "png_data_url",
    "resolve_base_url",
]
