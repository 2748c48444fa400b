"""The capability probe on this (CPU) machine, and routing decisions over stored probes."""

from __future__ import annotations

import pytest

from optimizers.capabilities import (
    StepNeed,
    WorkerView,
    choose_queue,
    cpu_info,
    memory_mb,
    pass_support,
    probe,
    suggested_queues,
    unmet_requirement,
)
from optimizers.passes import all_passes, get_pass
from optimizers.passes.base import Requirements

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0], "memory_mb": 81_559}
T4 = {"index": 0, "name": "Tesla T4", "compute_capability": [7, 5], "memory_mb": 15_360}


@pytest.fixture(scope="module")
def here() -> dict:
    return probe(hostname="celery@here", queues=["cpu"], gpus=[])


def gpu_worker_capabilities(base: dict, gpu: dict, extra_packages=("tensorrt",)) -> dict:
    """What a GPU worker's probe looks like: this machine's libraries plus a GPU and TensorRT."""
    capabilities = {**base, "gpus": [gpu], "packages": sorted({*base["packages"], *extra_packages})}
    capabilities["passes"] = pass_support(all_passes(), capabilities)
    return capabilities


def test_probe_on_this_cpu_worker_says_no_gpu_and_lists_cpu_passes(here):
    assert here["gpus"] == []
    assert here["queues"] == ["cpu"]
    assert here["cpu"]["logical_cores"] >= 1 and here["cpu"]["model"]
    assert here["memory"]["total_mb"] > 0
    assert "torch" in here["libraries"] and "onnxruntime" in here["libraries"]
    assert "CPUExecutionProvider" in here["onnxruntime_providers"]
    for name in ("onnx_export", "ort_quantize_dynamic", "torch_quantize_dynamic", "ort_optimize"):
        assert here["passes"][name] == {"runnable": True, "reason": ""}


def test_probe_excludes_tensorrt_build_with_a_reason(here):
    verdict = here["passes"]["tensorrt_build"]
    assert verdict["runnable"] is False
    assert verdict["reason"] == "needs a CUDA GPU; this worker has none"


def test_probe_is_json_ready(here):
    import json

    assert json.loads(json.dumps(here)) == here


def test_cpu_flags_are_read_from_cpuinfo():
    text = (
        "processor : 0\nmodel name : Intel(R) Xeon(R) Platinum 8480+\n"
        "flags : fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8\n"
    )
    info = cpu_info(text)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["flags"] == ["avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"]


def test_memory_is_read_from_meminfo():
    assert memory_mb("MemTotal:       16384000 kB\nMemAvailable:    8192000 kB\n") == {
        "total_mb": 16000,
        "available_mb": 8000,
    }


def test_unmet_requirement_names_what_is_missing():
    cuda = Requirements(device="cuda", packages=("tensorrt",))
    assert unmet_requirement(cuda, {"gpus": [], "packages": ["tensorrt"]}) == "needs a CUDA GPU; this worker has none"
    assert "tensorrt" in unmet_requirement(cuda, {"gpus": [H100], "packages": []})
    assert unmet_requirement(cuda, {"gpus": [H100], "packages": ["tensorrt"]}) is None
    ampere = Requirements(device="cuda", min_compute_capability=8.0)
    assert unmet_requirement(ampere, {"gpus": [T4], "packages": []}) == (
        "needs compute capability ≥ 8.0; the best GPU here is Tesla T4 (7.5)"
    )
    assert unmet_requirement(ampere, {"gpus": [H100], "packages": []}) is None


def test_suggested_queues():
    assert suggested_queues({"gpus": []}) == ["cpu"]
    assert suggested_queues({"gpus": [H100]}) == ["gpu", "gpu.sm90"]


def need(name: str) -> StepNeed:
    technique = get_pass(name)
    return StepNeed(name, technique.requires, pins_architecture=technique.output_format == "tensorrt")


def test_cpu_job_goes_to_cpu(here):
    workers = [WorkerView("celery@cpu", ("cpu",), here)]
    routing = choose_queue([need("onnx_export"), need("ort_quantize_dynamic")], workers)
    assert (routing.queue, routing.workers) == ("cpu", ["celery@cpu"])


def test_gpu_only_pass_is_refused_on_a_cpu_fleet_naming_pass_and_reason(here):
    workers = [WorkerView("celery@cpu", ("cpu",), here)]
    routing = choose_queue([need("onnx_export"), need("tensorrt_build")], workers)
    assert routing.queue is None
    assert routing.problems == [
        "tensorrt_build cannot run on any live worker (celery@cpu: needs a CUDA GPU; this worker has none)"
    ]


def test_engine_builds_go_to_the_architecture_queue(here):
    gpu = gpu_worker_capabilities(here, H100)
    workers = [WorkerView("celery@cpu", ("cpu",), here), WorkerView("celery@h100", ("gpu", "gpu.sm90"), gpu)]
    routing = choose_queue([need("onnx_export"), need("tensorrt_build")], workers)
    assert (routing.queue, routing.workers) == ("gpu.sm90", ["celery@h100"])
    # CPU work still prefers the cpu queue while a GPU worker is live.
    assert choose_queue([need("onnx_export")], workers).queue == "cpu"


def test_gpu_preferring_pass_goes_to_gpu_when_a_gpu_worker_can_run_it(here):
    gpu = gpu_worker_capabilities(here, H100)
    cpu_only = [WorkerView("celery@cpu", ("cpu",), here)]
    assert choose_queue([need("gptq")], cpu_only).queue == "cpu"
    both = [*cpu_only, WorkerView("celery@h100", ("gpu", "gpu.sm90"), gpu)]
    assert choose_queue([need("gptq")], both).queue == "gpu"


def test_a_capable_worker_that_serves_no_needed_queue_is_reported(here):
    gpu = gpu_worker_capabilities(here, H100)
    routing = choose_queue([need("tensorrt_build")], [WorkerView("celery@odd", ("cpu",), gpu)])
    assert routing.queue is None
    assert "consume none of the queues needed: gpu.sm90" in routing.problems[0]


def test_the_workers_own_verdict_wins_over_the_requirements(here):
    # A GPU worker whose TensorRT does not import says so in its probe; routing believes it.
    gpu = gpu_worker_capabilities(here, H100, extra_packages=())
    routing = choose_queue([need("tensorrt_build")], [WorkerView("celery@h100", ("gpu", "gpu.sm90"), gpu)])
    assert routing.problems == [
        "tensorrt_build cannot run on any live worker "
        "(celery@h100: needs Python packages not installed on this worker: tensorrt)"
    ]
