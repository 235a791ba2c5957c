"""Local-run scripts (Kafka, the LLM server, the stack) and deployment files."""
