"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A scripted OpenAI chat-completions server on 127.0.0.1 (``.base_url``, ``.queue(...)``, ``.requests``)."""
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


def _mini_weights_present() -> bool:
    from tools.scorers.mini import WEIGHTS_FILE, weights_dir

    return (weights_dir() / WEIGHTS_FILE).is_file()


requires_mini_weights = pytest.mark.skipif(not _mini_weights_present(), reason="mini weights not in tools/weights")
"""Skip marker for tests that run the offline stack (the committed mini model)."""


@pytest.fixture(scope="session")
def effusion_pair(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The SynthCXR 'effusion' preset (moderate right effusion vs none), 24 studies per group, built once."""
    from evals.synth.bench import build_pair
    from evals.synth.pairs import PRESETS
    from tools.data.jsonl_pairs import load_jsonl_pair

    root = tmp_path_factory.getbasetemp() / "synth-cache"
    spec = PRESETS["effusion"].model_copy(update={"n_a": 24, "n_b": 24})
    return load_jsonl_pair(build_pair(spec, root / "pairs", seed=0, cache_dir=root), 0).comparison
