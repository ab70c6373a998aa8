"""Benchmarks on held-out seeds: runner, metrics, reports, contamination check."""
