"""OpenAI-compatible backends (vLLM), the small/large router."""
