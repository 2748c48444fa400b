"""What a worker can run: a JSON-ready probe of this machine, and routing decisions over such probes.

Pure library code (no Django, no Celery). ``probe()`` describes the machine it runs on
(CPU model and vector flags, RAM, CUDA GPUs, library versions, ONNX Runtime providers) and
which registered passes it can run, judged from each pass's ``Requirements``. Workers store
the probe in the database (``webapp/fleet``); the web process then decides with
``unmet_requirement`` / ``choose_queue`` over the stored dicts, never probing itself.

CLI: ``python -m optimizers.capabilities`` prints the probe; ``--queues`` prints the queues a
worker on this machine should consume (e.g. ``cpu`` or ``gpu,gpu.sm90``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Bump when the probe's keys change, so readers can tell old rows from new ones.
PROBE_VERSION = 1

#: CPU flags (from /proc/cpuinfo) that decide which INT8/BF16 kernels are fast.
CPU_FLAGS_OF_INTEREST = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)

#: Distribution name → key in the probe's ``libraries`` (onnxruntime-gpu reports as onnxruntime-gpu).
TRACKED_DISTRIBUTIONS = (
    "torch",
    "transformers",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
    "llama-cpp-python",
    "llmcompressor",
    "openvino",
    "torchao",
)

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"


def arch_queue(compute_capability: Sequence[int]) -> str:
    """Per-architecture queue name: ``(9, 0)`` → ``gpu.sm90``."""
    major, minor = compute_capability[0], compute_capability[1]
    return f"{GPU_QUEUE}.sm{major}{minor}"


# --------------------------------------------------------------------------------------------
# Probing this machine
# --------------------------------------------------------------------------------------------


def cpu_info(cpuinfo_text: str | None = None) -> dict[str, Any]:
    """``{"model", "logical_cores", "flags": [flags of interest present], "arch"}``.

    ``cpuinfo_text`` defaults to ``/proc/cpuinfo``; without one (not Linux) the model is
    ``platform.processor()`` and the flags are empty.
    """
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo_text = ""
    model = ""
    flags: set[str] = set()
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count() or 1,
        "flags": [flag for flag in CPU_FLAGS_OF_INTEREST if flag in flags],
    }


def memory_mb(meminfo_text: str | None = None) -> dict[str, int | None]:
    """``{"total_mb", "available_mb"}`` from ``/proc/meminfo`` (None where unknown)."""
    if meminfo_text is None:
        try:
            meminfo_text = Path("/proc/meminfo").read_text()
        except OSError:
            meminfo_text = ""
    values: dict[str, int] = {}
    for line in meminfo_text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) // 1024  # kB → MB
    return {"total_mb": values.get("MemTotal"), "available_mb": values.get("MemAvailable")}


def gpu_info() -> list[dict[str, Any]]:
    """CUDA GPUs as torch sees them: ``[{"index", "name", "compute_capability": [major, minor], "memory_mb"}]``.

    Empty without torch or without CUDA. This initialises CUDA in the calling process:
    a Celery prefork parent must call ``gpu_info_isolated`` instead, or its forked
    children could not use the GPU.
    """
    try:
        import torch
    except ImportError:
        return []
    try:
        if not torch.cuda.is_available():
            return []
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "compute_capability": [props.major, props.minor],
                    "memory_mb": int(props.total_memory // (1024 * 1024)),
                }
            )
        return gpus
    except Exception:  # a broken driver must not stop a worker from starting
        return []


def gpu_info_isolated(timeout: float = 120.0) -> list[dict[str, Any]]:
    """``gpu_info()`` run in a child interpreter, so this process never initialises CUDA.

    Returns ``[]`` when the child fails or times out (the worker then says it has no GPU).
    """
    code = "import json; from optimizers.capabilities import gpu_info; print(json.dumps(gpu_info()))"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if done.returncode == 0 and lines else []
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return []


def library_versions(distributions: Iterable[str] = TRACKED_DISTRIBUTIONS) -> dict[str, str]:
    """Installed versions of ``distributions`` (absent ones are left out)."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's available execution providers (``[]`` without onnxruntime)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:
        return []


def importable(names: Iterable[str]) -> list[str]:
    """The import names among ``names`` that this interpreter can import (sorted)."""
    found = set()
    for name in set(names):
        try:
            if importlib.util.find_spec(name) is not None:
                found.add(name)
        except (ImportError, ValueError):
            continue
    return sorted(found)


# --------------------------------------------------------------------------------------------
# Judging requirements against a probe (pure: works on stored dicts too)
# --------------------------------------------------------------------------------------------


def _cc_text(capability: Sequence[int]) -> str:
    return f"{capability[0]}.{capability[1]}"


def unmet_requirement(requires: Any, capabilities: Mapping[str, Any]) -> str | None:
    """Why a machine described by ``capabilities`` cannot run a pass with ``requires``; None if it can.

    ``requires`` is a ``passes.base.Requirements`` (device, min_compute_capability, packages).
    ``capabilities`` is a ``probe()`` dict; only ``gpus`` and ``packages`` are read.
    """
    gpus = list(capabilities.get("gpus") or [])
    if requires.device == "cuda" and not gpus:
        return "needs a CUDA GPU; this worker has none"
    minimum = requires.min_compute_capability
    if minimum is not None:
        if not gpus:
            return f"needs a CUDA GPU of compute capability ≥ {minimum}; this worker has none"
        best = max(gpus, key=lambda gpu: tuple(gpu["compute_capability"]))
        if tuple(best["compute_capability"]) < _cc_tuple(minimum):
            return (
                f"needs compute capability ≥ {minimum}; the best GPU here is "
                f"{best['name']} ({_cc_text(best['compute_capability'])})"
            )
    installed = set(capabilities.get("packages") or [])
    missing = [name for name in requires.packages if name not in installed]
    if missing:
        return f"needs Python packages not installed on this worker: {', '.join(missing)}"
    return None


def _cc_tuple(value: float | str | Sequence[int]) -> tuple[int, int]:
    """``8.6`` / ``"8.6"`` / ``[8, 6]`` → ``(8, 6)``."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    major, _, minor = f"{float(value):.1f}".partition(".")
    return int(major), int(minor)


def pass_support(passes: Iterable[type], capabilities: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{pass name: {"runnable": bool, "reason": str}}`` for each pass class on ``capabilities``."""
    support = {}
    for technique in passes:
        reason = unmet_requirement(technique.requires, capabilities)
        support[technique.name] = {"runnable": reason is None, "reason": reason or ""}
    return support


def suggested_queues(capabilities: Mapping[str, Any]) -> list[str]:
    """Queues a worker with ``capabilities`` should consume: ``cpu``, or ``gpu`` plus one per GPU architecture."""
    gpus = capabilities.get("gpus") or []
    if not gpus:
        return [CPU_QUEUE]
    arches = sorted({arch_queue(gpu["compute_capability"]) for gpu in gpus})
    return [GPU_QUEUE, *arches]


def probe(
    *,
    hostname: str | None = None,
    queues: Iterable[str] = (),
    gpus: list[dict[str, Any]] | None = None,
    passes: Iterable[type] | None = None,
) -> dict[str, Any]:
    """Describe this machine as a JSON-ready dict.

    Keys: ``probe_version, hostname, queues, probed_at (ISO, UTC), python, cpu, memory, gpus,
    libraries, onnxruntime_providers, packages (importable names any pass requires), passes``
    (see ``pass_support``). ``gpus`` defaults to ``gpu_info()`` (which initialises CUDA here:
    Celery parents pass ``gpu_info_isolated()``); ``passes`` defaults to the registry.
    """
    if passes is None:
        from optimizers.passes import all_passes

        passes = all_passes()
    passes = list(passes)
    required = {name for technique in passes for name in technique.requires.packages}
    capabilities: dict[str, Any] = {
        "probe_version": PROBE_VERSION,
        "hostname": hostname or socket.gethostname(),
        "queues": sorted(set(queues)),
        "probed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "memory": memory_mb(),
        "gpus": gpu_info() if gpus is None else gpus,
        "libraries": library_versions(),
        "onnxruntime_providers": onnxruntime_providers(),
        "packages": importable(required | {"tensorrt", "onnxruntime", "torch"}),
    }
    capabilities["passes"] = pass_support(passes, capabilities)
    return capabilities


# --------------------------------------------------------------------------------------------
# Routing over stored probes (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerView:
    """One live worker as routing sees it: its name, the queues it consumes and its probe."""

    hostname: str
    queues: tuple[str, ...]
    capabilities: Mapping[str, Any]

    def refusal(self, pass_name: str, requires: Any) -> str | None:
        """Why this worker cannot run ``pass_name``; None if it can.

        The worker's own verdict (from its probe) wins: it knows what imports there. A pass
        the worker's probe does not list (an older worker) is judged from ``requires``.
        """
        verdict = (self.capabilities.get("passes") or {}).get(pass_name)
        if verdict is not None:
            return None if verdict.get("runnable") else (verdict.get("reason") or "cannot run it")
        return unmet_requirement(requires, self.capabilities)

    def arch_queues(self) -> list[str]:
        return sorted(
            {arch_queue(gpu["compute_capability"]) for gpu in self.capabilities.get("gpus") or []}, reverse=True
        )


@dataclass(frozen=True)
class StepNeed:
    """What one recipe step asks of a worker (routing's view of a pass)."""

    pass_name: str
    requires: Any
    #: The output only runs on the GPU architecture it was built on (TensorRT engines).
    pins_architecture: bool = False


@dataclass
class Routing:
    """``queue`` when some live worker serving it can run every step; else ``problems`` (one line per step)."""

    queue: str | None
    workers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.queue is not None


def choose_queue(steps: Sequence[StepNeed], workers: Sequence[WorkerView]) -> Routing:
    """Pick the queue for a job whose steps all run on one worker.

    Candidates are the ``workers`` that can run every step. Preference: a step that pins the
    GPU architecture → that worker's ``gpu.smXY`` queue; a step needing CUDA → ``gpu`` (then
    arch queues); a step preferring a GPU → ``gpu``, arch queues, then ``cpu``; otherwise
    ``cpu`` first. The first preferred queue some candidate consumes wins. No candidate →
    ``problems`` naming each step no worker can run and every worker's reason.
    """
    if not workers:
        return Routing(queue=None, problems=["no live worker is registered"])
    candidates = [worker for worker in workers if all(worker.refusal(s.pass_name, s.requires) is None for s in steps)]
    if not candidates:
        return Routing(queue=None, problems=_refusals(steps, workers))
    arches = sorted({queue for worker in candidates for queue in worker.arch_queues()}, reverse=True)
    if any(step.pins_architecture for step in steps):
        preferred = arches
    elif any(step.requires.device == "cuda" or step.requires.min_compute_capability for step in steps):
        preferred = [GPU_QUEUE, *arches]
    elif any(getattr(step.requires, "prefers_gpu", False) for step in steps):
        preferred = [GPU_QUEUE, *arches, CPU_QUEUE]
    else:
        preferred = [CPU_QUEUE, GPU_QUEUE, *arches]
    for queue in preferred:
        serving = [worker.hostname for worker in candidates if queue in worker.queues]
        if serving:
            return Routing(queue=queue, workers=sorted(serving))
    names = ", ".join(f"{worker.hostname} [{', '.join(worker.queues) or 'no queues'}]" for worker in candidates)
    wanted = " or ".join(preferred) or "a gpu.smXY queue"
    return Routing(
        queue=None,
        problems=[f"the workers that can run these steps ({names}) consume none of the queues needed: {wanted}"],
    )


def _refusals(steps: Sequence[StepNeed], workers: Sequence[WorkerView]) -> list[str]:
    problems = []
    for step in steps:
        reasons = {worker.hostname: worker.refusal(step.pass_name, step.requires) for worker in workers}
        if all(reasons.values()):
            detail = "; ".join(f"{host}: {reason}" for host, reason in sorted(reasons.items()))
            problems.append(f"{step.pass_name} cannot run on any live worker ({detail})")
    if not problems:  # each step runs somewhere, but no single worker runs them all
        names = ", ".join(step.pass_name for step in steps)
        problems.append(f"no single live worker can run all of {names} (a job runs on one worker)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m optimizers.capabilities", description=__doc__.split("\n")[0])
    parser.add_argument("--queues", action="store_true", help="print the queues a worker here should consume")
    args = parser.parse_args(argv)
    capabilities = probe()
    if args.queues:
        print(",".join(suggested_queues(capabilities)))
    else:
        print(json.dumps(capabilities, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
