"""TensorRT runtime: run a serialized engine (``tensorrt`` artifact) on this machine's GPU.

**Never run here**: TensorRT cannot be installed on the development machines and the lent
GPU image has none; this adapter follows the TensorRT 10 Python API documentation (named
I/O tensors: ``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) with PyTorch CUDA tensors as device buffers. ``tests/gpu`` exercises
it where TensorRT imports.

Opening an engine first checks ``portability_problem`` against the GPU present, so an engine
built on another GPU is refused with a message (``PreflightError``), never run.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PreflightError
from optimizers.passes.tensorrt_build import (
    ENGINE_FILE,
    ENGINE_METADATA_FILE,
    describe_target,
    portability_problem,
)


def engine_metadata_of(artifact: ModelArtifact) -> dict[str, Any]:
    """The artifact's ``engine.json`` (``PreflightError`` when missing)."""
    path = artifact.folder / ENGINE_METADATA_FILE
    if not path.exists():
        raise PreflightError(f"{artifact.name}: no {ENGINE_METADATA_FILE}; not a TensorRT engine folder")
    return json.loads(path.read_text())


def check_engine_runs_here(metadata: dict[str, Any]) -> None:
    """Raise ``PreflightError`` unless this machine's GPU and TensorRT match the engine's."""
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    tensorrt_version = None
    try:
        import tensorrt

        tensorrt_version = tensorrt.__version__
    except ImportError:
        raise PreflightError(
            f"TensorRT is not installed here; the engine was built for {describe_target(metadata)}"
        ) from None
    gpu_name = torch.cuda.get_device_name() if cuda else None
    capability = torch.cuda.get_device_capability() if cuda else None
    problem = portability_problem(
        metadata, gpu_name=gpu_name, compute_capability=capability, tensorrt_version=tensorrt_version
    )
    if problem:
        raise PreflightError(problem)


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


class TensorRTRuntime:
    """Encoder/classifier engine: named numpy inputs in, first output as float32 out."""

    name = "tensorrt"

    def __init__(self, artifact: ModelArtifact) -> None:
        import tensorrt as trt
        import torch

        self.metadata = engine_metadata_of(artifact)
        check_engine_runs_here(self.metadata)
        self.device = "cuda"
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine((artifact.folder / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise PreflightError(f"TensorRT could not deserialize {artifact.name}'s engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(index) for index in range(self.engine.num_io_tensors)]
        self.inputs = [name for name in names if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        self.outputs = [name for name in names if name not in self.inputs]
        self._dtypes = {
            name: getattr(torch, _TORCH_DTYPES.get(self.engine.get_tensor_dtype(name).name, "float32"))
            for name in names
        }

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        buffers = {}
        for name in self.inputs:
            array = inputs[name] if name in inputs or len(self.inputs) != 1 else inputs["pixel_values"]
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to("cuda", dtype=self._dtypes[name])
            buffers[name] = tensor
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=self._dtypes[name], device="cuda")
            self.context.set_tensor_address(name, buffers[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return buffers[self.outputs[0]].float().cpu().numpy()

    def threads(self) -> dict[str, Any]:
        return {"engine_built_for": describe_target(self.metadata)}
