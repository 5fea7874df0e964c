"""Reusable test doubles: a scripted OpenAI-compatible server (and, later, other fakes)."""

from tests.fakes.openai_server import ErrorReply, FakeOpenAIServer, RecordedRequest, TextReply, ToolCallReply

__all__ = ["ErrorReply", "FakeOpenAIServer", "RecordedRequest", "TextReply", "ToolCallReply"]
