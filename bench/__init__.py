"""Benchmarks: each module runs its variants side by side in one run and prints a markdown table."""
