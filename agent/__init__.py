"""Agent layer: run state, run context and decision policies (LLM and offline ``rules``)."""
