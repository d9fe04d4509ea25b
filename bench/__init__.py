"""Benchmarks: the project's code against a baseline in the same run, as ratios (`make bench`)."""
