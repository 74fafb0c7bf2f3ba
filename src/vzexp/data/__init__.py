"""Benchmarks: samples, readers/generators and scorers."""
