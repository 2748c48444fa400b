"""``{{ artifact|engine_target:job }}``: which GPU a TensorRT engine artifact was built for ("" otherwise)."""

from __future__ import annotations

from django import template

from optimizers.passes.tensorrt_build import describe_target
from webapp.fleet.engines import engine_metadata_for

register = template.Library()


@register.filter
def engine_target(artifact, job) -> str:
    if getattr(artifact, "format", None) != "tensorrt":
        return ""
    metadata = engine_metadata_for(job, artifact)
    return describe_target(metadata) if metadata else "unknown GPU (no engine metadata)"
