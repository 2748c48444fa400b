"""OpenVINO on the CPU, for ``openvino`` artifacts (IR ``model.xml`` + ``model.bin``).

``forward`` takes the same named numpy inputs as the other runtimes (token
arrays for encoders, ``pixel_values`` for image classifiers) and returns the
model's first output as float32: ``last_hidden_state`` (B, S, H) or logits (N, classes).

Inference precision is pinned to f32: on CPUs with AMX or AVX512-BF16 the CPU
plugin would otherwise run float layers in bf16, so an "FP32" IR would not be
FP32 and an INT8 IR's float layers would lose precision the report never shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optimizers.artifacts import OPENVINO_FILE, ModelArtifact

#: OpenVINO element type names → numpy dtypes for the inputs.
_NUMPY_TYPES = {"i64": np.int64, "i32": np.int32, "f32": np.float32, "f16": np.float16}


class OpenVinoCpuRuntime:
    name = "openvino-cpu"

    def __init__(self, artifact: ModelArtifact, *, threads: int | None = None, allow_spinning: bool = True) -> None:
        import openvino as ov

        self._threads = threads
        self._core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        # OpenVINO's thread pool has no spin switch like ONNX Runtime's; ``allow_spinning`` is
        # accepted so callers treat every runtime alike, and timing stays one variant per process.
        self._allow_spinning = allow_spinning
        self.compiled = self._core.compile_model(str(artifact.folder / OPENVINO_FILE), "CPU", config)
        self._request = self.compiled.create_infer_request()
        self._inputs = [
            (port.get_any_name(), _NUMPY_TYPES.get(port.get_element_type().get_type_name(), np.float32))
            for port in self.compiled.inputs
        ]
        self.device = "cpu"

    def forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(self._input(inputs, name), dtype=dtype) for name, dtype in self._inputs}
        self._request.infer(feed)
        # Copy: the request reuses its output buffer on the next call.
        return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _input(self, inputs: dict[str, np.ndarray], name: str) -> np.ndarray:
        # A single-input image graph may name its input anything; callers pass "pixel_values".
        if name not in inputs and len(self._inputs) == 1 and "pixel_values" in inputs:
            return inputs["pixel_values"]
        return inputs[name]

    def threads(self) -> dict[str, Any]:
        return {
            "openvino_inference_num_threads": self.compiled.get_property("INFERENCE_NUM_THREADS"),
            "openvino_inference_precision": _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
            "openvino_performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT")),
        }


def _type_name(value: Any) -> str:
    """``f32`` for an ``ov.Type`` (its ``str`` is ``<Type: 'float32'>``), else ``str(value)``."""
    name = getattr(value, "get_type_name", None)
    return name() if callable(name) else str(value)
