"""Benchmarks: commands that print tables, comparing approaches side by side in one run."""
