"""optimizers.model_card: the card's sections, Markdown escaping, the packaged snapshot."""

from __future__ import annotations

import json

import pytest

from optimizers.cost import InstanceType, cost_breakdown
from optimizers.model_card import (
    ApprovalInfo,
    Code,
    DatasetInfo,
    ModelCard,
    Section,
    Table,
    build_model_card,
    card_file_name,
    cost_lines,
    data_manifest,
    escape_markdown,
    evaluation_data_info,
    packaged_card,
)
from optimizers.report import Report
from tests.optimizers.reports import DEVICE, fixed_report

DATASET = DatasetInfo(name="zoo:pydoc-retrieval/eval", eval_fingerprint="f" * 64, texts=16, pairs=8)


@pytest.fixture
def report() -> Report:
    return Report.model_validate(fixed_report())


def test_card_has_every_section_in_order(report):
    card = build_model_card(report, "ort_quantize_dynamic", job="#3 nightly", dataset=DATASET, approvals=[])
    assert [s.title for s in card.sections] == [
        "Summary", "Recipe", "Data", "Quality", "Quality gate", "Benchmark", "Cost", "Library versions", "Approvals",
    ]  # fmt: skip
    facts = dict(card.section("Summary").facts)
    assert facts["Base model"] == Code("zoo:minilm")
    assert facts["Gate outcome"] == "needs approval"
    assert facts["Parent sha256"] == Code("bb" * 32)


def test_markdown_carries_recipe_data_gate_benchmark_hardware_and_versions(report):
    text = build_model_card(report, "ort_quantize_dynamic", dataset=DATASET).to_markdown()
    assert text.startswith("# Model card: ort\\_quantize\\_dynamic of zoo:minilm\n")
    assert '| 2 | `ort_quantize_dynamic` | `{"per_channel": true}` |' in text
    assert f"**Evaluated texts fingerprint (sha256)**: `{'f' * 64}`" in text
    assert "| `cosine` | 0\\.993 | \\[0.99, 0.995\\] | 1 | \\-0.007 |" not in text  # numbers are not escaped
    assert "| `cosine` | 0.993 | \\[0.99, 0.995\\] | 1 | -0.007 |" in text
    assert "| `cosine` | absolute drop | 0.01 | 1 | 0.993 | yes | — |" in text
    assert f"**Hardware**: {DEVICE}" in text
    assert "| 8 | 128 | 80 | 96 | 112 | 100 | 2.50× | 40 | yes |" in text
    assert "| `onnxruntime` | `1.23.2` |" in text
    assert '```json\n{\n  "evaluation"' in text


def test_baseline_card_says_it_was_not_optimized(report):
    card = build_model_card(report, "baseline")
    assert card.section("Recipe").table is None
    assert "baseline" in card.section("Quality gate").paragraphs[0]
    with pytest.raises(KeyError):
        build_model_card(report, "no-such-variant")


def test_hostile_text_cannot_break_tables_or_inject_html(report):
    approvals = [ApprovalInfo("mallory", "approved", "2026-01-01", "ok | <script>alert(1)</script> **bold** [x](y)")]
    text = build_model_card(report, "ort_quantize_dynamic", approvals=approvals).to_markdown()
    row = next(line for line in text.splitlines() if line.startswith("| mallory"))
    assert row.count(" | ") == 3, row  # four cells: the comment's pipe is escaped
    assert "<script>" not in text and "\\<script\\>" in text
    assert "\\*\\*bold\\*\\*" in text and "\\[x\\](y)" in text


def test_escaping_rules():
    assert escape_markdown("a_b *c* `d` <e> f|g & h\nnext") == "a\\_b \\*c\\* \\`d\\` \\<e\\> f\\|g \\& h next"
    assert escape_markdown("# not a heading", line_start=True) == "\\# not a heading"
    assert escape_markdown("1. not a list", line_start=True) == "1\\. not a list"
    assert escape_markdown("1.5 ms") == "1.5 ms"


def test_code_cells_survive_backticks_and_pipes():
    card = ModelCard("t", [Section("s", facts=[("f", Code("a`b|c"))], table=Table(["h"], [[Code("x|y")]]))])
    text = card.to_markdown()
    assert "- **f**: ``a`b|c``" in text
    assert "| `x\\|y` |" in text


def test_code_block_fence_outlasts_backticks_inside():
    text = ModelCard("t", [Section("s", code="```\nboom\n```")]).to_markdown()
    assert "````\n```\nboom\n```\n````" in text


def test_cost_lines_show_formula_inputs_and_hardware_warning(report):
    gpu = InstanceType("g5.xlarge", 1.0, "NVIDIA A10G", "gpu")
    breakdown = cost_breakdown(report, gpu, batch_size=8, optimization_seconds=3600, worker_instance=gpu)
    lines = cost_lines(breakdown, "ort_quantize_dynamic")
    assert [line.label for line in lines] == [
        "cost per 1M requests on g5.xlarge, batch 8", "break-even volume", "optimization job",
    ]  # fmt: skip
    assert lines[0].value == "$2.78"
    assert "$1.00/h ÷ (100 requests/s × 3600)" in lines[0].inputs
    assert "measured on CPU" in lines[0].warning
    assert lines[2].warning is None  # hardware does not enter the job's own cost


def test_packaged_card_is_deterministic_and_points_to_the_live_card(report):
    first = packaged_card(report, "onnx_export", job="#3 x", dataset=DATASET, live_url="/jobs/3/")
    assert first == packaged_card(report, "onnx_export", job="#3 x", dataset=DATASET, live_url="/jobs/3/")
    assert "before any review" in first and "/jobs/3/" in first
    assert "approximate list prices as of June 2024" in first
    assert "| cost per 1M requests on AWS c7i.xlarge, batch 8 | $1.00 |" in first
    assert "same hardware as the benchmark |" in first and "measured on CPU" in first


def test_evaluation_data_info_fingerprints_the_evaluated_texts(tmp_path):
    builtin = evaluation_data_info({"evaluation": {"max_samples": 4}})
    assert builtin.name == "zoo:pydoc-retrieval/eval"
    assert builtin.pairs == 4 and builtin.texts == 8 and len(builtin.eval_fingerprint) == 64
    assert builtin == evaluation_data_info({"evaluation": {"max_samples": 4}})
    data = tmp_path / "set.jsonl"
    data.write_text(json.dumps({"text": "hello"}) + "\n")
    upload = evaluation_data_info({"dataset": str(data)}, display_name="my set")
    assert upload.name == "my set" and upload.texts == 1 and len(upload.file_sha256) == 64
    missing = evaluation_data_info({"dataset": str(tmp_path / "gone.jsonl")}, display_name="gone")
    assert missing.eval_fingerprint is None and "could not read" in missing.note
    other_task = evaluation_data_info({"dataset": str(data)}, display_name="lm text", task="causal-lm")
    assert other_task.eval_fingerprint is None and other_task.file_sha256 == upload.file_sha256


def test_card_file_name_and_data_manifest(tmp_path, report):
    assert card_file_name(tmp_path) == "MODEL_CARD.md"
    (tmp_path / "MODEL_CARD.md").write_text("the model's own card")
    assert card_file_name(tmp_path) == "INFEROPT_MODEL_CARD.md"
    data = data_manifest(report, DATASET)
    assert data["baseline_sha256"] == report.baseline.sha256
    assert data["eval_fingerprint_sha256"] == "f" * 64 and data["dataset"] == "zoo:pydoc-retrieval/eval"
