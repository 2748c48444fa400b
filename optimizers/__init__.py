"""InferOpt optimization library.

Pure Python: passes, runtimes, evaluation, benchmark, gates, cost and recipes.
It never imports Django or Celery, so a recipe runs the same from the command
line (``python -m optimizers run recipe.yaml --out DIR``) as from a worker.
"""

__version__ = "0.1.0"
