"""Reading a span as an LLM call: the attribute conventions, its step, its model's tier and its price."""
