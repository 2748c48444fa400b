"""``_package_variants`` puts a model card and the data hashes into each zip (no broker needed)."""

from __future__ import annotations

import json
import zipfile

import pytest

from optimizers.report import Report
from tests.optimizers.reports import fixed_report
from workers.tasks import _package_variants


@pytest.mark.django_db
def test_each_zip_carries_a_model_card_and_data_hashes(make_job, data_dir, tmp_path):
    raw = fixed_report()
    for variant in raw["variants"]:
        folder = tmp_path / "variants" / variant["name"]
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(variant["name"].encode())
        variant["path"] = str(folder)
    (tmp_path / "variants" / "onnx_export" / "MODEL_CARD.md").write_text("the model's own card")
    job = make_job(raw["recipe"])
    stored: list[str] = []

    rows = _package_variants(job, Report.model_validate(raw), tmp_path / "work", stored)

    assert [row.name for row in rows] == ["onnx_export", "ort_quantize_dynamic"]
    assert len(stored) == 2
    with zipfile.ZipFile(rows[1].file.path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        card = archive.read("MODEL_CARD.md").decode()
    assert manifest["model_card"] == "MODEL_CARD.md"
    assert manifest["data"]["baseline_sha256"] == raw["variants"][0]["sha256"]
    assert manifest["data"]["dataset"] == "zoo:pydoc-retrieval/eval"
    assert len(manifest["data"]["eval_fingerprint_sha256"]) == 64
    assert manifest["benchmark_info"]["device"].startswith("cpu: Intel")
    assert manifest["benchmark"]["8"]["throughput_per_s"] == pytest.approx(100.0)
    assert card.startswith("# Model card: ort\\_quantize\\_dynamic of zoo:minilm")
    assert f"#{job.pk} worker test" in card and f"/jobs/{job.pk}/" in card
    assert manifest["data"]["eval_fingerprint_sha256"] in card
    with zipfile.ZipFile(rows[0].file.path) as archive:
        # The artifact's own MODEL_CARD.md is kept; ours goes beside it.
        assert archive.read("MODEL_CARD.md") == b"the model's own card"
        assert json.loads(archive.read("manifest.json"))["model_card"] == "INFEROPT_MODEL_CARD.md"
        assert archive.read("INFEROPT_MODEL_CARD.md").startswith(b"# Model card: onnx\\_export")
