"""``torch_quantize_dynamic``: PyTorch-native INT8 dynamic quantization of ``nn.Linear`` layers.

Uses ``torch.ao.quantization.quantize_dynamic`` (fbgemm/x86 kernels). The
artifact stores the INT8 weights for real, not a recipe to redo at load time:
``quantized_linear.safetensors`` holds each Linear's int8 values, scales, zero
points and bias; ``model.safetensors`` holds every other (floating-point)
parameter. Safetensors only — no pickle — so the folder is safe to share.
``load_dynamic_int8`` rebuilds the module from those files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field

from optimizers.artifacts import ModelArtifact
from optimizers.errors import PassError
from optimizers.passes import register
from optimizers.passes.base import Pass, PassConfig, PassContext
from optimizers.passes.common import copy_companion_files

QUANTIZED_MARKER = "torch-dynamic-int8"
QUANTIZED_FILE = "quantized_linear.safetensors"
LAYOUT_FILE = "quantized_linear.json"
FLOAT_FILE = "model.safetensors"


class TorchQuantizeDynamicConfig(PassConfig):
    per_channel: bool = Field(True, description="Per-output-channel weight scales (more accurate) or one per tensor.")
    engine: Literal["x86", "fbgemm", "qnnpack", "onednn"] = Field(
        "x86", description="Quantized kernel backend (x86/fbgemm on Intel and AMD, qnnpack on ARM)."
    )


@register
class TorchQuantizeDynamic(Pass):
    name = "torch_quantize_dynamic"
    title = "INT8 dynamic quantization (PyTorch)"
    description = "PyTorch-native dynamic INT8 quantization of Linear layers (weights INT8, activations at run time)."
    Config = TorchQuantizeDynamicConfig
    input_formats = ("hf",)
    tasks = ("feature-extraction", "text-classification", "causal-lm")
    output_format = "hf"

    def run(self, artifact: ModelArtifact, config: TorchQuantizeDynamicConfig, ctx: PassContext) -> ModelArtifact:
        import torch

        torch.backends.quantized.engine = config.engine
        auto_class = _auto_class(_architectures(artifact.folder))
        model = auto_class.from_pretrained(artifact.folder, trust_remote_code=False, local_files_only=True).eval()
        ctx.progress(0.3, "quantizing Linear layers to INT8")
        quantized = _quantize(model, per_channel=config.per_channel)
        out = ctx.work_dir
        out.mkdir(parents=True, exist_ok=True)
        copy_companion_files(artifact.folder, out)
        count = save_dynamic_int8(quantized, out, engine=config.engine)
        if count == 0:
            raise PassError("the model has no nn.Linear layers to quantize")
        ctx.log(f"quantized {count} Linear layers to INT8 ({'per-channel' if config.per_channel else 'per-tensor'})")
        return ModelArtifact.from_folder(
            out,
            name="torch_quantize_dynamic",
            format="hf",
            task=artifact.task,
            parent=artifact,
            produced_by=self.name,
            config=config.model_dump(),
            metadata={"weights": QUANTIZED_MARKER, "quantized_layers": count, "precision": "int8-dynamic"},
        )


def _architectures(folder: Path) -> list[str]:
    try:
        return list(json.loads((Path(folder) / "config.json").read_text()).get("architectures") or [])
    except (OSError, ValueError, AttributeError):
        return []


def _auto_class(architectures: list[str]):
    """``AutoModelForCausalLM`` for causal LMs (their ``lm_head`` must be kept), ``AutoModel`` otherwise."""
    from transformers import AutoModel, AutoModelForCausalLM

    return AutoModelForCausalLM if any(str(name).endswith("ForCausalLM") for name in architectures) else AutoModel


def _quantize(model, *, per_channel: bool):
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao quantization is deprecated, still supported
        return quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)


def _dynamic_linears(model) -> dict[str, object]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {name: module for name, module in model.named_modules() if isinstance(module, DynamicLinear)}


def save_dynamic_int8(model, folder: Path, *, engine: str) -> int:
    """Write a dynamically quantized model as safetensors (see module docstring); return the layer count."""
    import torch
    from safetensors.torch import save_file

    linears = _dynamic_linears(model)
    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, dict] = {}
    for name, module in linears.items():
        weight, bias = module._weight_bias()
        tensors[f"{name}.weight_int8"] = weight.int_repr().contiguous()
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            tensors[f"{name}.scales"] = weight.q_per_channel_scales().to(torch.float64).contiguous()
            tensors[f"{name}.zero_points"] = weight.q_per_channel_zero_points().to(torch.int64).contiguous()
            layout[name] = {"scheme": "per_channel", "axis": int(weight.q_per_channel_axis())}
        else:
            tensors[f"{name}.scales"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
            tensors[f"{name}.zero_points"] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
            layout[name] = {"scheme": "per_tensor"}
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
    save_file(tensors, str(folder / QUANTIZED_FILE))
    floats = {
        key: value.detach().contiguous()
        for key, value in model.state_dict().items()
        if isinstance(value, torch.Tensor)
        and not value.is_quantized
        and value.dtype.is_floating_point
        and not any(key.startswith(f"{name}.") for name in linears)
    }
    save_file(floats, str(folder / FLOAT_FILE))
    (folder / LAYOUT_FILE).write_text(json.dumps({"engine": engine, "layers": layout}, indent=2, sort_keys=True))
    return len(linears)


def load_dynamic_int8(folder: Path):
    """Rebuild a module saved by ``save_dynamic_int8`` (eval mode, INT8 Linear layers)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig

    folder = Path(folder)
    layout = json.loads((folder / LAYOUT_FILE).read_text())
    torch.backends.quantized.engine = layout.get("engine", "x86")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    model = _auto_class(config.architectures or []).from_config(config).eval()
    missing, _ = model.load_state_dict(load_file(str(folder / FLOAT_FILE)), strict=False)
    model = _quantize(model, per_channel=True)
    stored = load_file(str(folder / QUANTIZED_FILE))
    linears = _dynamic_linears(model)
    if set(linears) != set(layout["layers"]):
        raise PassError(f"{folder.name}: quantized layer names do not match the model architecture")
    for name, module in linears.items():
        info = layout["layers"][name]
        values = stored[f"{name}.weight_int8"]
        if info["scheme"] == "per_channel":
            weight = torch._make_per_channel_quantized_tensor(
                values, stored[f"{name}.scales"], stored[f"{name}.zero_points"], info["axis"]
            )
        else:
            weight = torch._make_per_tensor_quantized_tensor(
                values, float(stored[f"{name}.scales"][0]), int(stored[f"{name}.zero_points"][0])
            )
        module.set_weight_bias(weight, stored.get(f"{name}.bias"))
    unexpected_missing = [key for key in missing if not any(key.startswith(f"{name}.") for name in linears)]
    if unexpected_missing:
        raise PassError(f"{folder.name}: weights missing for {', '.join(unexpected_missing[:5])}")
    return model
