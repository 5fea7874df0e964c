"""A real local LLM, offline: a Qwen2.5-Coder GGUF from PyPI part packages, served by xllamacpp."""
