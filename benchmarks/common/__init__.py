"""Helpers shared by the load and capacity benchmarks: latency stats, process sampling, plots."""
