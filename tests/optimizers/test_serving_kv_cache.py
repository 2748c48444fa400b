"""KV-cache calculator and decode roofline against hand-computed values."""

from __future__ import annotations

import pytest

from optimizers.errors import RecipeError
from optimizers.serving.kv_cache import (
    attention_comparison,
    attention_shape,
    decode_roofline,
    kv_bytes_per_token,
    kv_cache_bytes,
    llama_parameter_count,
    measure_copy_bandwidth,
)

LLAMA2_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "torch_dtype": "float16",
    "tie_word_embeddings": False,
}
LLAMA3_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "torch_dtype": "bfloat16",
}
MISTRAL_7B = {**LLAMA3_8B, "vocab_size": 32000, "sliding_window": 4096}
# zoo:tiny-lm's config.json (optimizers/zoo/tiny_lm.py, transformers 5 writes "dtype").
TINY_LM = {
    "dtype": "float32",
    "head_dim": 64,
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_attention_heads": 8,
    "num_hidden_layers": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 640,
    "tie_word_embeddings": False,
    "vocab_size": 2048,
}


def test_llama2_7b_mha_cache_is_half_a_mebibyte_per_token():
    shape = attention_shape(LLAMA2_7B)
    assert (shape.kind, shape.head_dim, shape.dtype) == ("MHA", 128, "float16")
    # 2 (K and V) × 32 layers × 32 heads × 128 dims × 2 bytes
    assert kv_bytes_per_token(shape) == 524_288
    assert kv_cache_bytes(shape, context_len=4096) == 2 * 1024**3
    assert kv_cache_bytes(shape, context_len=4096, batch_size=8, dtype="int8") == 8 * 1024**3


def test_llama2_7b_parameter_count_matches_the_published_figure():
    assert llama_parameter_count(LLAMA2_7B) == 6_738_415_616


def test_gqa_divides_the_cache_by_heads_over_kv_heads():
    shape = attention_shape(LLAMA3_8B)
    assert shape.kind == "GQA"
    assert kv_bytes_per_token(shape) == 131_072  # 2 × 32 × 8 × 128 × 2
    assert kv_cache_bytes(shape, context_len=8192, batch_size=4) == 4 * 1024**3
    rows = attention_comparison(shape, context_lens=[1024, 8192])
    assert [(row.kind, row.num_kv_heads, row.actual) for row in rows[:3]] == [
        ("MHA", 32, False),
        ("GQA", 8, True),
        ("MQA", 1, False),
    ]
    by_kind = {row.kind: row for row in rows if row.context_len == 8192}
    assert by_kind["MHA"].cache_bytes == 4 * 1024**3
    assert by_kind["GQA"].ratio_to_mha == 0.25
    assert by_kind["MQA"].ratio_to_mha == 1 / 32
    assert by_kind["MQA"].cache_bytes == 8192 * 2 * 32 * 128 * 2


def test_sliding_window_bounds_the_cache():
    shape = attention_shape(MISTRAL_7B)
    assert (shape.sliding_window, shape.sliding_layers) == (4096, 32)
    assert kv_cache_bytes(shape, context_len=2048) == 2048 * 131_072
    assert kv_cache_bytes(shape, context_len=32768) == 4096 * 131_072


def test_only_sliding_layers_are_bounded_when_layer_types_mix():
    config = {
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 4,
        "sliding_window": 8,
        "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
    }
    shape = attention_shape(config)
    assert (shape.kind, shape.sliding_layers, shape.dtype) == ("MQA", 3, "float32")
    # per layer and token 2 × 1 × 4 × 4 bytes = 32; tokens: 1 full layer × 100 + 3 windowed × 8
    assert kv_cache_bytes(shape, context_len=100) == 32 * (100 + 3 * 8)


def test_disabled_sliding_window_is_ignored():
    shape = attention_shape({**LLAMA3_8B, "sliding_window": 4096, "use_sliding_window": False})
    assert shape.sliding_window is None
    assert kv_cache_bytes(shape, context_len=32768) == 32768 * 131_072


def test_tiny_lm_cache_and_parameters():
    shape = attention_shape(TINY_LM)
    assert (shape.kind, shape.num_kv_heads, shape.head_dim) == ("GQA", 4, 64)
    assert kv_bytes_per_token(shape) == 8192  # 2 × 4 layers × 4 heads × 64 × 4 bytes
    assert kv_cache_bytes(shape, context_len=640) == 5_242_880
    assert llama_parameter_count(TINY_LM) == 11_538_944  # model.safetensors holds 46,155,776 bytes of fp32


def test_missing_sizes_and_unknown_dtypes_are_readable_errors():
    with pytest.raises(RecipeError, match="num_hidden_layers"):
        attention_shape({"hidden_size": 8})
    with pytest.raises(RecipeError, match="unknown KV-cache dtype"):
        kv_cache_bytes(attention_shape(TINY_LM), context_len=1, dtype="float7")


def test_decode_roofline_reads_weights_once_and_every_cache():
    bound = decode_roofline(weight_bytes=1000, kv_bytes_per_sequence=250, bandwidth_bytes_per_s=10_000, batch_size=4)
    assert bound.bytes_per_step == 2000
    assert bound.tokens_per_s_per_sequence == 5
    assert bound.tokens_per_s == 20
    # Llama-2-7B fp16 at 4096 tokens on a 1 TB/s device: (13.48 GB weights + 2 GiB cache) per token.
    weights = llama_parameter_count(LLAMA2_7B) * 2
    cache = kv_cache_bytes(attention_shape(LLAMA2_7B), context_len=4096)
    single = decode_roofline(weight_bytes=weights, kv_bytes_per_sequence=cache, bandwidth_bytes_per_s=1e12)
    assert single.tokens_per_s == pytest.approx(1e12 / (13_476_831_232 + 2_147_483_648))


def test_copy_bandwidth_probe_reports_a_positive_rate():
    probe = measure_copy_bandwidth(buffer_bytes=1 << 20, repeats=3)
    assert probe.device == "cpu" and probe.buffer_bytes == 1 << 20
    assert probe.bytes_per_s >= probe.median_bytes_per_s > 0
