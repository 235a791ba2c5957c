"""The FastAPI app: wires acl + retrieval + inference behind an OpenAI-compatible API."""
