"""ONNX Runtime on the CPU execution provider."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from optimizers.artifacts import ModelArtifact


def session_options(*, threads: int | None, allow_spinning: bool, level: str = "all") -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = GRAPH_LEVELS[level]
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return options


#: ONNX input element types → numpy dtypes (token ids are int64, images float32).
_NUMPY_TYPES = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}

GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OrtCpuSession:
    """One ``InferenceSession`` of an ONNX artifact on the CPU execution provider, with the
    product's thread settings; the ONNX Runtime adapters (encoders, causal LMs) build on it."""

    name = "onnxruntime-cpu"

    def __init__(self, artifact: ModelArtifact, *, threads: int | None = None, allow_spinning: bool = True) -> None:
        self._threads = threads
        self._allow_spinning = allow_spinning
        self.session = ort.InferenceSession(
            str(artifact.onnx_file),
            sess_options=session_options(threads=threads, allow_spinning=allow_spinning),
            providers=["CPUExecutionProvider"],
        )
        self.device = "cpu"

    def threads(self) -> dict[str, Any]:
        return {
            "ort_intra_op": self._threads or "default (physical cores)",
            "ort_allow_spinning": self._allow_spinning,
            "providers": self.session.get_providers(),
        }


class OrtCpuRuntime(OrtCpuSession):
    def __init__(self, artifact: ModelArtifact, *, threads: int | None = None, allow_spinning: bool = True) -> None:
        super().__init__(artifact, threads=threads, allow_spinning=allow_spinning)
        self._input_names = [item.name for item in self.session.get_inputs()]
        self._input_dtypes = {item.name: _NUMPY_TYPES.get(item.type, np.int64) for item in self.session.get_inputs()}
        self._output_name = self.session.get_outputs()[0].name

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: self._input(inputs, name).astype(self._input_dtypes[name]) for name in self._input_names}
        return self.session.run([self._output_name], feed)[0]

    def _input(self, inputs: dict[str, np.ndarray], name: str) -> np.ndarray:
        # Image classifiers exported elsewhere often call their one input "input": callers
        # always pass "pixel_values", so a single-input graph takes it under any name.
        if name not in inputs and len(self._input_names) == 1 and "pixel_values" in inputs:
            return inputs["pixel_values"]
        return inputs[name]
