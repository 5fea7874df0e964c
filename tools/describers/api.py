"""One call for callers (the ``describe_images`` tool): describe image files with caching."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tools.describers.base import Describer
from tools.describers.cache import DescriptionCache, default_description_cache, describe_cached
from tools.describers.registry import get_describer
from tools.settings import Settings


def describe_files(
    paths: Sequence[Path],
    prompt: str,
    *,
    settings: Settings | None = None,
    describer: Describer | None = None,
    cache: DescriptionCache | None = None,
    use_cache: bool = True,
) -> list[str]:
    """Describe image files (one description each, in order) with the configured describer and the disk cache.

    ``describer`` defaults to ``get_describer(settings.describer)``; ``cache`` to the cache under
    ``settings.cache_dir``. Files are hashed by content, and loaded only when their description is missing.
    """
    settings = settings or Settings()
    describer = describer or get_describer(settings=settings)
    if cache is None and use_cache:
        cache = default_description_cache(settings)
    items: list[tuple[str | None, Path]] = [(None, Path(p)) for p in paths]
    return describe_cached(describer, items, prompt, cache if use_cache else None)
