"""Shared fixtures: the real MiniLM baseline and its exports, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimizers.artifacts import ModelArtifact
from optimizers.passes import get_pass
from optimizers.passes.base import PassContext
from optimizers.resolve import resolve_model


def run_pass(name: str, source: ModelArtifact, work_dir: Path, **config) -> ModelArtifact:
    """Run one pass through its contract (parse → preflight → run → cleanup)."""
    technique = get_pass(name)
    parsed = technique.parse_config(config)
    technique.preflight(source, parsed)
    ctx = PassContext(work_dir=work_dir)
    try:
        return technique.run(source, parsed, ctx)
    finally:
        technique.cleanup(ctx)


@pytest.fixture(scope="session")
def minilm() -> ModelArtifact:
    return resolve_model("zoo:minilm")


@pytest.fixture(scope="session")
def minilm_onnx(minilm, tmp_path_factory) -> ModelArtifact:
    return run_pass("onnx_export", minilm, tmp_path_factory.mktemp("export") / "onnx")


@pytest.fixture(scope="session")
def eval_set():
    from optimizers.evaluation.datasets import pydoc_retrieval

    return pydoc_retrieval("eval", max_samples=48)


@pytest.fixture(scope="session")
def baseline_embeddings(minilm, eval_set):
    from optimizers.evaluation.feature_extraction import embed_dataset
    from optimizers.runtimes import load_runtime, load_tokenizer

    return embed_dataset(load_runtime(minilm), load_tokenizer(minilm), eval_set)


@pytest.fixture(scope="session")
def metrics_of(minilm, eval_set, baseline_embeddings):
    """Evaluate an artifact against the FP32 baseline on the held-out set."""
    from optimizers.evaluation.feature_extraction import embed_dataset, feature_extraction_metrics
    from optimizers.runtimes import load_runtime, load_tokenizer

    tokenizer = load_tokenizer(minilm)

    def evaluate(artifact: ModelArtifact) -> dict[str, float]:
        runtime = load_runtime(artifact, allow_spinning=False)
        return feature_extraction_metrics(embed_dataset(runtime, tokenizer, eval_set), baseline_embeddings)

    return evaluate


@pytest.fixture(scope="session")
def tiny_lm() -> ModelArtifact:
    """``zoo:tiny-lm`` (trained on first use, then cached under ``~/.cache/inferopt/zoo``)."""
    return resolve_model("zoo:tiny-lm")


@pytest.fixture(scope="session")
def tiny_lm_f16(tiny_lm, tmp_path_factory) -> ModelArtifact:
    """``zoo:tiny-lm`` converted to an F16 GGUF by llama.cpp's converter."""
    return run_pass("gguf_convert", tiny_lm, tmp_path_factory.mktemp("gguf") / "f16", outtype="f16")


@pytest.fixture(scope="session")
def digits_cnn() -> ModelArtifact:
    """``zoo:digits-cnn`` (trained in seconds on first use, then cached under ``~/.cache/inferopt/zoo``)."""
    return resolve_model("zoo:digits-cnn")
