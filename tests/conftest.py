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
