"""Keel's benchmarks (`make bench`): figures and side-by-side ratios, never asserts."""
