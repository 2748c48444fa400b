"""Runs a recipe: baseline → each pass → evaluation → isolated benchmarks → gate.

(Implementation in progress; the public contract below is stable.)
"""
