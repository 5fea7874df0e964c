"""Prompt templates shipped as package data, read with :func:`load_prompt`."""

from importlib import resources


def load_prompt(name: str) -> str:
    """Return the text of the prompt template ``name`` (a file in this package, e.g. ``"hypothesize.md"``)."""
    path = resources.files(__package__).joinpath(name)
    if not path.is_file():
        available = sorted(p.name for p in resources.files(__package__).iterdir() if p.name.endswith(".md"))
        raise FileNotFoundError(f"prompt {name!r}: no such template (available: {', '.join(available)})")
    return path.read_text(encoding="utf-8")
