"""The benchmark's batch sweep of a TensorRT engine stays within its optimization profile (pure; no TensorRT)."""

from __future__ import annotations

import pytest

from optimizers.passes.tensorrt_build import ShapeRange, clamp_batch_sizes, engine_metadata, profile_batch_range


def metadata(**ranges: tuple[list[int], list[int], list[int]]) -> dict:
    profile = {name: ShapeRange(min=low, opt=mid, max=high) for name, (low, mid, high) in ranges.items()}
    return engine_metadata(
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        tensorrt_version="10.3.0",
        cuda_version="12.4",
        precision="fp16",
        profile=profile,
    )


ENCODER = metadata(
    input_ids=([1, 1], [8, 128], [32, 512]),
    attention_mask=([1, 1], [8, 128], [32, 512]),
)


def test_batch_sizes_inside_the_profile_are_all_kept():
    assert clamp_batch_sizes([1, 8, 32], ENCODER) == ([1, 8, 32], [])


def test_batch_sizes_outside_the_profile_are_dropped_with_a_note():
    kept, notes = clamp_batch_sizes([1, 8, 64, 128], ENCODER)
    assert kept == [1, 8]
    assert notes == [
        "batch sizes 64, 128 not timed: outside the TensorRT engine's optimization profile (batch 1 to 32); "
        "rebuild the engine with a wider profile to time them"
    ]


def test_the_range_is_what_every_input_accepts():
    engine = metadata(input_ids=([2, 16], [8, 128], [64, 256]), attention_mask=([1, 16], [8, 128], [16, 256]))
    assert profile_batch_range(engine) == (2, 16)
    kept, notes = clamp_batch_sizes([1, 4, 32], engine)
    assert kept == [4]
    assert notes[0].startswith("batch sizes 1, 32 not timed") and "(batch 2 to 16)" in notes[0]


def test_when_no_batch_size_fits_the_profiles_optimum_is_timed_instead():
    kept, notes = clamp_batch_sizes([64], ENCODER)
    assert kept == [8]
    assert notes == [
        "batch size 64 not timed: outside the TensorRT engine's optimization profile (batch 1 to 32); "
        "rebuild the engine with a wider profile to time them",
        "timed at the profile's optimal batch size 8 instead",
    ]


def test_without_a_recorded_profile_the_sizes_are_unchanged():
    assert clamp_batch_sizes([1, 512], {"gpu_name": "x"}) == ([1, 512], [])
    assert profile_batch_range({}) is None


def test_inputs_whose_batch_ranges_do_not_overlap_are_an_error():
    engine = {"profile": {"a": {"min": [1], "opt": [2], "max": [4]}, "b": {"min": [8], "opt": [8], "max": [16]}}}
    with pytest.raises(ValueError, match="allows no batch size"):
        profile_batch_range(engine)
