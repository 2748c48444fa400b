"""Latency harness: warm-up, ≥ N iterations and ≥ T seconds, percentiles, stability.

Each variant is timed in its own process (``benchmark.isolated``): runtimes'
thread pools keep spinning after a run and distort whatever runs next in the
same process.
"""
