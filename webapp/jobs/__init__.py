"""Optimization jobs: submission, live progress, results, charts and artifacts."""
