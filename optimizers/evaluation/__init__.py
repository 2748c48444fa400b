"""Evaluation: datasets, metrics and per-task evaluators."""
