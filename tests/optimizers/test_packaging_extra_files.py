"""package_artifact(extra_files=...): files beside the model (the model card), still deterministic."""

from __future__ import annotations

import zipfile

import pytest

from optimizers.packaging import package_artifact


@pytest.fixture
def folder(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_bytes(b"graph")
    return model


def test_extra_files_are_added_and_the_zip_stays_deterministic(folder, tmp_path):
    extra = {"MODEL_CARD.md": "# Card\n", "notes/b.bin": b"\x00\x01"}
    first = package_artifact(folder, {"a": 1}, tmp_path / "a.zip", extra_files=extra)
    second = package_artifact(folder, {"a": 1}, tmp_path / "b.zip", extra_files=dict(reversed(extra.items())))
    assert first == second
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.namelist() == ["model.onnx", "manifest.json", "MODEL_CARD.md", "notes/b.bin"]
        assert archive.read("MODEL_CARD.md") == b"# Card\n"
        assert archive.read("notes/b.bin") == b"\x00\x01"
        assert archive.getinfo("MODEL_CARD.md").date_time == (2020, 1, 1, 0, 0, 0)


def test_without_extra_files_the_bytes_do_not_change(folder, tmp_path):
    assert package_artifact(folder, {}, tmp_path / "a.zip") == package_artifact(
        folder, {}, tmp_path / "b.zip", extra_files={}
    )


@pytest.mark.parametrize("name", ["model.onnx", "manifest.json", "../escape.md", "/abs.md", "a/../b.md", "a\\b", ""])
def test_extra_files_cannot_replace_artifact_files_or_escape(folder, tmp_path, name):
    with pytest.raises(ValueError):
        package_artifact(folder, {}, tmp_path / "a.zip", extra_files={name: "x"})
    assert not (tmp_path / "a.zip").exists()
