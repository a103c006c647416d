"""The span hooks: deciding a span's step at its start, queueing LLM spans at their end."""
