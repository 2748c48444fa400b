"""KV-cache quantization on the tiny LM: measured cache bytes (exact for the default cache, smaller for the
quantized one), option validation, a missing backend reported per variant, the analysis wired into
``mode: serving``. No timing thresholds."""

from __future__ import annotations

import json
import math

import pytest

from optimizers.errors import RecipeError
from optimizers.serving import kv_quant
from optimizers.serving.analysis import ServingReport, ServingSpec, run_serving_analysis
from optimizers.serving.kv_quant import (
    KVQuantOptions,
    _new_cache,
    _run_window,
    cache_bytes,
    cache_config,
    heldout_windows,
    kv_cache_quantization,
)
from tests.optimizers.llm_support import tiny_causal_lm


@pytest.fixture(scope="module")
def target():
    return tiny_causal_lm()


@pytest.fixture(scope="module")
def model(target):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(target.folder, local_files_only=True).eval()


def _bytes_per_token(folder) -> int:
    config = json.loads((folder / "config.json").read_text())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * 4  # float32 K and V


def test_options_name_what_the_backend_cannot_do():
    with pytest.raises(ValueError, match="quanto backend"):
        KVQuantOptions(backend="quanto", nbits=[8])
    with pytest.raises(RecipeError, match="nbits"):
        ServingSpec.parse({"model": "zoo:tiny-lm", "kv_quant": {"nbits": [5]}})
    with pytest.raises(RecipeError, match="must exceed decode_tokens"):
        ServingSpec.parse({"model": "zoo:tiny-lm", "kv_quant": {"context_lens": [16], "decode_tokens": 32}})
    assert KVQuantOptions().nbits == [4, 8] and KVQuantOptions().backend == "hqq"
    assert cache_config("hqq", 4, KVQuantOptions()) == {
        "backend": "hqq", "nbits": 4, "q_group_size": 64, "residual_length": 128,
    }  # fmt: skip


def test_the_default_cache_is_measured_exactly(target, model):
    options = KVQuantOptions(context_lens=[96], decode_tokens=8, windows=1)
    window = heldout_windows(target.folder, options)[0]
    assert len(window) == 97
    cache = _new_cache(model, None, None, options)
    nll, argmax, seconds = _run_window(model, cache, window, options.decode_tokens)
    assert len(nll) == len(argmax) == 8 and seconds > 0 and all(value > 0 for value in nll)
    assert cache_bytes(cache) == 96 * _bytes_per_token(target.folder)


@pytest.mark.parametrize("nbits", [4, 8])
def test_the_quantized_cache_holds_fewer_bytes(target, model, nbits):
    options = KVQuantOptions(context_lens=[256], decode_tokens=8, windows=1)
    window = heldout_windows(target.folder, options)[0]
    default = _new_cache(model, None, None, options)
    quantized = _new_cache(model, "hqq", nbits, options)
    _, default_argmax, _ = _run_window(model, default, window, options.decode_tokens)
    nll, argmax, _ = _run_window(model, quantized, window, options.decode_tokens)
    full = cache_bytes(default)
    assert full == 256 * _bytes_per_token(target.folder)
    held = cache_bytes(quantized)
    # 248 prefill tokens quantized (codes + a float32 scale and zero per 64 values), 8 decoded tokens in full precision.
    residual = 8 * _bytes_per_token(target.folder)
    assert residual < held < full * (0.5 if nbits == 4 else 0.75)
    assert all(math.isfinite(value) for value in nll) and len(argmax) == len(default_argmax)


def test_four_bits_hold_less_than_eight(target, model):
    options = KVQuantOptions(context_lens=[200], decode_tokens=4, windows=1)
    window = heldout_windows(target.folder, options)[0]
    sizes = {}
    for nbits in (4, 8):
        cache = _new_cache(model, "hqq", nbits, options)
        _run_window(model, cache, window, options.decode_tokens)
        sizes[nbits] = cache_bytes(cache)
    assert sizes[4] < sizes[8]


def test_analysis_measures_each_variant_in_its_own_process(target):
    options = KVQuantOptions(nbits=[4], context_lens=[64, 160], decode_tokens=8, windows=2)
    logs: list[str] = []
    report = kv_cache_quantization(target, options, on_log=logs.append)
    assert [variant.label for variant in report.variants] == ["default cache (float32)", "hqq int4"]
    assert all(variant.error is None for variant in report.variants)
    default, quantized = report.variants
    assert [point.context_len for point in default.points] == [64, 160]
    for base, point in zip(default.points, quantized.points, strict=True):
        assert base.memory_ratio == 1.0 and base.top1_agreement == 1.0
        assert base.cache_bytes == point.context_len * _bytes_per_token(target.folder)
        assert point.cache_bytes < base.cache_bytes and point.memory_ratio < 1.0
        assert 0.0 <= point.top1_agreement <= 1.0
        assert math.isfinite(point.perplexity) and point.perplexity > 1.0
        assert point.decode_tokens_per_s > 0 and point.peak_memory_bytes >= 0
    assert report.windows == 2 and report.dtype == "float32"
    assert any("own process" in line for line in logs)


def test_a_missing_backend_is_reported_and_the_rest_still_measured(target, monkeypatch):
    monkeypatch.setitem(kv_quant.BACKEND_PACKAGES, "quanto", ("inferopt_no_such_backend", "pip install it"))
    options = KVQuantOptions(backend="quanto", nbits=[2, 4], context_lens=[48], decode_tokens=4, windows=1)
    report = kv_cache_quantization(target, options)
    default, two, four = report.variants
    assert default.error is None and len(default.points) == 1
    for variant in (two, four):
        assert variant.points == [] and "inferopt_no_such_backend package (pip install it)" in variant.error


def test_serving_analysis_of_a_causal_lm_includes_both_measurements(target, tmp_path):
    spec = ServingSpec.parse(
        {
            "model": "zoo:tiny-lm",
            "kv_cache": {"context_lens": [128], "probe_bytes": 1 << 20},
            "speculative": {"prompts": 1, "prompt_tokens": 16, "max_new_tokens": 8},
            "kv_quant": {"nbits": [4], "context_lens": [48], "decode_tokens": 4, "windows": 1},
        }
    )
    events = []
    report = run_serving_analysis(spec, tmp_path, on_progress=events.append)
    assert [method.method for method in report.speculative.methods] == ["draft_model", "prompt_lookup"]
    assert [variant.label for variant in report.kv_quant.variants] == ["default cache (float32)", "hqq int4"]
    stages = [event.stage for event in events]
    assert "speculative decoding" in stages and "kv-cache quantization" in stages
    assert stages.index("speculative decoding") < stages.index("kv-cache quantization") < stages.index("done")
    assert ServingReport.model_validate_json((tmp_path / "serving.json").read_text()) == report

    skipped = ServingSpec.parse(
        {
            "model": "zoo:tiny-lm",
            "kv_cache": {"context_lens": [128], "probe_bytes": 1 << 20},
            "speculative": {"enabled": False},
            "kv_quant": {"enabled": False},
        }
    )
    bare = run_serving_analysis(skipped, tmp_path / "bare")
    assert bare.speculative is None and bare.kv_quant is None and bare.kv_cache
