"""Serving-level analysis: KV-cache memory, dynamic batching sweeps, Triton model repositories.

``kv_cache`` (pure arithmetic from a Hugging Face config, plus a copy-bandwidth
probe), ``batching`` (an in-process dynamic batcher fed by a Poisson load
generator, and the recommendation under a p95 budget), ``triton`` (model
repository export for ONNX artifacts) and ``analysis`` (the ``mode: serving``
job that runs them). Nothing here imports Django or Celery.
"""
