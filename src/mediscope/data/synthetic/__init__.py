"""Synthetic, deterministic datasets for tests, tutorials and benchmarks (no downloads needed)."""
