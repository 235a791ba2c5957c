"""The Qdrant collection schema, query embedding and ACL-filtered search."""
