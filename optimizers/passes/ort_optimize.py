"""``ort_optimize``: ONNX Runtime graph optimization, saved as a new ONNX graph.

ONNX Runtime applies these rewrites (constant folding, node fusions such as
attention, GELU and LayerNorm) when a session starts; saving the optimized
graph makes the fusions visible, reviewable and reusable without paying the
optimization time on every start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext
from optimizers.passes.common import copy_companion_files


class OrtOptimizeConfig(PassConfig):
    level: Literal["basic", "extended", "all"] = Field(
        "all", description="Graph optimization level (ORT_ENABLE_BASIC / _EXTENDED / _ALL)."
    )


@register
class OrtOptimize(Pass):
    name = "ort_optimize"
    title = "ONNX Runtime graph optimization"
    description = "Apply ONNX Runtime's graph optimizations (fusions, constant folding) and save the optimized graph."
    Config = OrtOptimizeConfig
    input_formats = ("onnx",)
    tasks = ("feature-extraction", "text-classification", "image-classification", "causal-lm")
    output_format = "onnx"

    def run(self, artifact: ModelArtifact, config: OrtOptimizeConfig, ctx: PassContext) -> ModelArtifact:
        import onnx
        import onnxruntime as ort

        from optimizers.runtimes.onnxruntime_cpu import GRAPH_LEVELS

        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = GRAPH_LEVELS[config.level]
        options.optimized_model_filepath = str(out / "model.onnx")
        ctx.progress(0.2, f"optimizing at level {config.level}")
        ort.InferenceSession(str(artifact.onnx_file), sess_options=options, providers=["CPUExecutionProvider"])
        copy_companion_files(artifact.folder, out)
        before = _op_counts(onnx.load(str(artifact.onnx_file), load_external_data=False))
        after = _op_counts(onnx.load(str(out / "model.onnx"), load_external_data=False))
        ctx.log(f"graph nodes {sum(before.values())} → {sum(after.values())}; fused ops: {_new_ops(before, after)}")
        return ModelArtifact.from_folder(
            out,
            name="ort_optimize",
            format="onnx",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={
                "graph_optimization_level": config.level,
                "nodes_before": sum(before.values()),
                "nodes_after": sum(after.values()),
                # Fused graphs use contrib ops that quantizers cannot re-type; see ort_quantize_dynamic.
                "fused": config.level in ("extended", "all"),
            },
        )


def _op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _new_ops(before: dict[str, int], after: dict[str, int]) -> str:
    new = sorted(op for op in after if op not in before)
    return ", ".join(f"{op}×{after[op]}" for op in new) or "none"
