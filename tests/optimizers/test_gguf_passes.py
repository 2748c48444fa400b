"""``gguf_convert`` and ``gguf_quantize`` on ``zoo:tiny-lm``: real files, real llama.cpp, bad input refused."""

from __future__ import annotations

import json
import shutil

import pytest

from optimizers.errors import PassError, PreflightError, RecipeError
from optimizers.gguf_info import read_gguf
from optimizers.llama_cpp_tools import find_converter
from optimizers.passes import get_pass
from tests.optimizers.conftest import run_pass

pytestmark = pytest.mark.skipif(find_converter() is None, reason="run scripts/llama_cpp_tools.sh first")


@pytest.fixture(scope="module")
def quantized(tiny_lm_f16, tmp_path_factory):
    """Q8_0, Q5_K_M and Q4_K_M GGUFs quantized from the F16 conversion."""
    root = tmp_path_factory.mktemp("quantized")
    return {
        kind: run_pass("gguf_quantize", tiny_lm_f16, root / kind, type=kind) for kind in ("Q8_0", "Q5_K_M", "Q4_K_M")
    }


@pytest.fixture(scope="module")
def judge(tiny_lm):
    """Causal-LM evaluator on 12 held-out windows, the FP32 baseline evaluated first."""
    from optimizers.evaluation.causal_lm import CausalLMEvaluator

    evaluator = CausalLMEvaluator(None, max_samples=12)
    baseline = evaluator.evaluate(tiny_lm)
    return evaluator, baseline


def test_gguf_convert_writes_an_f16_gguf_with_the_tokenizer_and_lineage(tiny_lm, tiny_lm_f16):
    info = read_gguf(tiny_lm_f16.folder / "model.gguf")
    assert tiny_lm_f16.format == "gguf" and tiny_lm_f16.task == "causal-lm"
    assert info.architecture == "llama" and info.file_type == "F16"
    assert set(info.type_counts()) == {"F16", "F32"}  # matrices F16, norms F32
    assert info.metadata["llama.context_length"] == 640
    assert {"tokenizer.model", "tokenizer.json", "config.json"} <= {p.name for p in tiny_lm_f16.folder.iterdir()}
    assert not list(tiny_lm_f16.folder.glob("*.safetensors"))
    assert tiny_lm_f16.parent_sha256 == tiny_lm.sha256
    assert tiny_lm_f16.metadata["weight_bits"] == 16
    assert tiny_lm_f16.metadata["tensor_types"]["token_embd.weight"] == "F16"


def test_gguf_reader_agrees_with_llama_cpps_own_gguf_py(tiny_lm_f16, quantized):
    import sys

    sys.path.insert(0, str(find_converter().parent / "gguf-py"))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    for artifact in (tiny_lm_f16, quantized["Q4_K_M"]):
        reference = GGUFReader(str(artifact.folder / "model.gguf"))
        ours = read_gguf(artifact.folder / "model.gguf")
        assert ours.tensor_types() == {t.name: t.tensor_type.name for t in reference.tensors}
        assert [t.shape for t in ours.tensors] == [tuple(int(d) for d in t.shape) for t in reference.tensors]


def test_gguf_convert_to_f32_is_exact_to_the_baseline(tiny_lm, judge, tmp_path):
    evaluator, baseline = judge
    f32 = run_pass("gguf_convert", tiny_lm, tmp_path / "f32", outtype="f32")
    assert read_gguf(f32.folder / "model.gguf").file_type == "F32"
    metrics = evaluator.evaluate(f32)
    assert metrics["kl_divergence"] < 1e-4
    assert metrics["perplexity"] == pytest.approx(baseline["perplexity"], rel=1e-3)


@pytest.mark.parametrize(("kind", "main_type"), [("Q8_0", "Q8_0"), ("Q5_K_M", "Q5_K"), ("Q4_K_M", "Q4_K")])
def test_gguf_quantize_writes_the_requested_type_without_fallbacks(quantized, tiny_lm_f16, kind, main_type):
    artifact = quantized[kind]
    info = read_gguf(artifact.folder / "model.gguf")
    assert info.file_type == kind
    counts = info.type_counts()
    assert counts[main_type] >= 20, counts
    assert counts["F32"] == 9  # the 1-D norm weights stay F32
    assert artifact.metadata["fallbacks"] == {}
    assert artifact.metadata["file_type"] == kind
    assert artifact.size_bytes < 0.6 * tiny_lm_f16.size_bytes
    assert artifact.parent_sha256 == tiny_lm_f16.sha256


def test_quantized_sizes_and_weight_bits_follow_the_type(quantized):
    assert quantized["Q4_K_M"].size_bytes < quantized["Q5_K_M"].size_bytes < quantized["Q8_0"].size_bytes
    assert [quantized[kind].metadata["weight_bits"] for kind in ("Q8_0", "Q5_K_M", "Q4_K_M")] == [8, 5, 4]


def test_quantized_models_run_in_llama_cpp_close_to_the_baseline_and_8_bit_closest(quantized, tiny_lm_f16, judge):
    evaluator, baseline = judge
    metrics = {kind: evaluator.evaluate(artifact) for kind, artifact in quantized.items()}
    f16 = evaluator.evaluate(tiny_lm_f16)
    assert f16["kl_divergence"] < 1e-3 and f16["top1_agreement"] > 0.98
    for kind, values in metrics.items():
        assert values["perplexity"] == pytest.approx(baseline["perplexity"], rel=0.25), kind
        assert values["top1_agreement"] > 0.6, kind
    assert metrics["Q8_0"]["kl_divergence"] < metrics["Q5_K_M"]["kl_divergence"] < metrics["Q4_K_M"]["kl_divergence"]
    assert metrics["Q8_0"]["perplexity"] == pytest.approx(baseline["perplexity"], rel=0.01)
    assert metrics["Q8_0"]["kl_divergence_p99"] <= metrics["Q4_K_M"]["kl_divergence_p99"]


def test_rows_that_do_not_fit_256_blocks_are_reported_as_fallbacks(tiny_lm, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tiny_lm.folder / name, folder / name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=640,  # 640 % 256 != 0: ffn_down rows cannot use K-quant blocks
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    from optimizers.artifacts import ModelArtifact

    source = ModelArtifact.from_folder(folder, name="odd", format="hf", task="causal-lm", write_metadata=False)
    f16 = run_pass("gguf_convert", source, tmp_path / "f16")
    q4 = run_pass("gguf_quantize", f16, tmp_path / "q4", type="Q4_K_M")
    assert set(q4.metadata["fallbacks"]) == {"blk.0.ffn_down.weight"}
    assert q4.metadata["fallbacks"]["blk.0.ffn_down.weight"] in {"Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q4_0"}


# ----------------------------------------------------------------------------------- bad input


def test_convert_refuses_a_model_that_is_not_a_causal_lm(minilm, tmp_path):
    with pytest.raises(PreflightError, match="causal"):
        run_pass("gguf_convert", minilm.model_copy(update={"task": "causal-lm"}), tmp_path / "x")
    with pytest.raises(PreflightError, match="does not support task feature-extraction"):
        run_pass("gguf_convert", minilm, tmp_path / "y")


def _copy_model(tiny_lm, destination, *, skip=()):
    destination.mkdir()
    for item in tiny_lm.folder.iterdir():
        if item.name not in skip:
            shutil.copy2(item, destination / item.name)
    from optimizers.artifacts import ModelArtifact

    return ModelArtifact.from_folder(destination, name="copy", format="hf", task="causal-lm", write_metadata=False)


def test_convert_names_an_architecture_the_converter_does_not_know(tiny_lm, tmp_path):
    artifact = _copy_model(tiny_lm, tmp_path / "m")
    config = json.loads((artifact.folder / "config.json").read_text())
    config["architectures"] = ["MadeUpForCausalLM"]
    (artifact.folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PreflightError, match="does not know the architecture 'MadeUpForCausalLM'"):
        run_pass("gguf_convert", artifact, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_convert_refuses_a_tokenizer_without_what_the_converter_reads(tiny_lm, tmp_path):
    artifact = _copy_model(tiny_lm, tmp_path / "m", skip=("tokenizer.model", "tokenizer.json"))
    with pytest.raises(PreflightError, match="tokenizer.model"):
        run_pass("gguf_convert", artifact, tmp_path / "out")


def test_convert_says_how_to_get_the_converter_when_it_is_missing(tiny_lm, tmp_path, monkeypatch):
    monkeypatch.setenv("INFEROPT_LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(PreflightError, match=r"run `bash scripts/llama_cpp_tools\.sh`"):
        run_pass("gguf_convert", tiny_lm, tmp_path / "out")


def test_a_failing_conversion_leaves_nothing_half_written(tiny_lm, tmp_path):
    artifact = _copy_model(tiny_lm, tmp_path / "m")
    weights = artifact.folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])  # header intact, tensors cut off
    with pytest.raises(PassError, match="converter failed"):
        run_pass("gguf_convert", artifact, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unknown_quantization_type_is_refused_before_any_work(tiny_lm_f16, tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="Q4_K_M"):
        get_pass("gguf_quantize").parse_config({"type": "Q9_K"})
    from optimizers.recipe import Recipe

    with pytest.raises(RecipeError, match="type"):
        Recipe.parse({"model": "zoo:tiny-lm", "steps": ["gguf_convert", {"pass": "gguf_quantize", "type": "Q9_K"}]})


def test_quantize_refuses_an_already_quantized_gguf(quantized, tmp_path):
    with pytest.raises(PreflightError, match="already quantized"):
        run_pass("gguf_quantize", quantized["Q4_K_M"], tmp_path / "again", type="Q4_K_M")


def test_quantize_refuses_a_hugging_face_folder(tiny_lm, tmp_path):
    with pytest.raises(PreflightError, match="takes gguf"):
        run_pass("gguf_quantize", tiny_lm, tmp_path / "q")
    with pytest.raises(RecipeError, match="takes gguf models, but receives hf"):
        from optimizers.recipe import Recipe

        Recipe.parse({"model": "zoo:tiny-lm", "steps": [{"pass": "gguf_quantize"}]})
