"""Tools layer: the domain model, settings and finding vocabulary every layer imports, and the radiologist's tools.

Subpackages by concern: ``data`` (loaders, images), ``scorers`` (image-text backends), ``describers``,
``embeddings``, ``reports``, ``regions``, ``stats``, ``ranking``, ``llm``; ``workspace`` (one run's tools)
and ``agent_tools`` (the same tools as LangChain tools). Nothing here imports ``agent``, ``graphs``, ``evals`` or
``raddiff``; nothing heavy is loaded at import time.
"""
