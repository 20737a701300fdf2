"""Evaluation: statistics, the competition metric, scoring and benchmarks."""
