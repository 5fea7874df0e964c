"""Entry point for ``langgraph dev`` / LangGraph Studio (see ``langgraph.json``): the compiled graph.

The server provides its own checkpointer; the run context (models, rounds, budgets) is given per run.
"""

from __future__ import annotations

from graphs.radiologist import build_graph

graph = build_graph().compile()
