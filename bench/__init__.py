"""Benchmarks: speed is measured here and reported as figures, never by timed tests."""
