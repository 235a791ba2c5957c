"""Benchmarks, each with its own command (see BENCHMARKS.md)."""
