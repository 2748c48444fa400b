"""``ModelArtifact``: one model on disk plus where it came from.

An artifact is immutable once built: passes read one and write a new one into
their own working folder. Lineage (``parent_sha256``, ``produced_by``,
``config``) lets a report say exactly how every variant was made.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from optimizers.hashing import sha256_path, size_bytes

Format = Literal["hf", "onnx", "gguf", "tensorrt", "openvino", "torch"]
Task = Literal["causal-lm", "feature-extraction", "text-classification", "image-classification"]

#: ``torch``: an InferOpt-native PyTorch module folder (``config.json`` naming the architecture +
#: ``model.safetensors``, never pickle), loaded by ``optimizers.models.load_torch_module``.
FORMATS: tuple[str, ...] = ("hf", "onnx", "gguf", "tensorrt", "openvino", "torch")
TASKS: tuple[str, ...] = ("causal-lm", "feature-extraction", "text-classification", "image-classification")

#: File inside an artifact folder that records how it was made.
METADATA_FILE = "inferopt.json"
#: Main graph file inside an ONNX artifact folder.
ONNX_FILE = "model.onnx"
#: OpenVINO IR inside an ``openvino`` artifact folder (weights beside it in ``model.bin``).
OPENVINO_FILE = "model.xml"

_TRACKED_LIBRARIES = ("torch", "transformers", "onnx", "onnxruntime", "onnxscript", "numpy", "openvino", "nncf")


def library_versions(names: tuple[str, ...] = _TRACKED_LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries that decide an artifact's bytes."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class ModelArtifact(BaseModel):
    """A model on disk (a folder for ``hf``/``onnx``) and its provenance.

    ``path`` is a folder holding the weights or graph plus the tokenizer files
    needed to run it, so an artifact is self-contained and can be zipped for
    download. ``metadata`` carries format-specific facts (e.g. a load-time
    transform for PyTorch dynamic quantization).
    """

    name: str
    path: str
    format: Format
    task: Task
    sha256: str
    size_bytes: int
    parent_sha256: str | None = None
    produced_by: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=library_versions)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.path)

    @property
    def onnx_file(self) -> Path:
        """The ``.onnx`` graph of an ONNX artifact."""
        return self.folder / ONNX_FILE

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        *,
        name: str,
        format: Format,
        task: Task,
        parent: ModelArtifact | None = None,
        produced_by: str | None = None,
        config: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        write_metadata: bool = True,
    ) -> ModelArtifact:
        """Describe a finished folder, hashing its contents.

        With ``write_metadata`` (the default for pass outputs) the description
        is also written to ``inferopt.json`` in the folder; inputs the library
        does not own (an installed package, a user's folder) are left untouched.
        """
        folder = Path(folder)
        meta_path = folder / METADATA_FILE
        artifact = cls(
            name=name,
            path=str(folder),
            format=format,
            task=task,
            # The metadata file describes the content; it is not part of it.
            sha256=sha256_path(folder, exclude=(METADATA_FILE,)),
            size_bytes=size_bytes(folder, exclude=(METADATA_FILE,)),
            parent_sha256=parent.sha256 if parent else None,
            produced_by=produced_by,
            config=config or {},
            metadata=metadata or {},
        )
        if write_metadata:
            meta_path.write_text(json.dumps(artifact.describe(), indent=2))
        return artifact

    def describe(self) -> dict[str, Any]:
        """JSON-ready provenance (everything but the local path)."""
        return self.model_dump(exclude={"path"})
