"""Graphs layer: the LangGraph state machine that wires the agent to its tools."""
