"""benchmarks/gpu_check.py runs and skips cleanly on a machine without a GPU (CI), and its table reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check import Row, format_table  # noqa: E402


def test_table_has_one_line_per_row_and_aligned_columns():
    table = format_table(
        [
            Row("encoder b8×s128", "fp32 eager", p50_ms=4.0, ratio=1.0),
            Row("encoder b8×s128", "fp16 sdpa", p50_ms=1.25, ratio=3.2, note="cosine 0.99998"),
            Row("TensorRT engine", "fp16 build + run", "skipped", note="tensorrt not installed"),
        ],
        header="InferOpt GPU check — GPU: test",
    )
    lines = table.splitlines()
    assert lines[0] == "InferOpt GPU check — GPU: test"
    assert lines[1].split(" | ") == ["check          ", "variant         ", "status ", "p50 ms", "speedup", "note"]
    assert "| 1.250  | 3.20x   | cosine 0.99998" in lines[4]
    assert lines[5].startswith("TensorRT engine | fp16 build + run | skipped |")
    assert lines[5].endswith("tensorrt not installed")


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")
def test_smoke_run_without_a_gpu_measures_fp32_and_skips_the_rest(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,  # several child interpreters (the job-variant rows) on a shared 2-core machine
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "InferOpt GPU check — no CUDA GPU" in done.stdout
    rows = {(row["check"], row["variant"]): row for row in json.loads(out.read_text())["rows"]}
    assert rows[("encoder b2×s16", "fp32 eager")]["status"] == "ok"
    assert rows[("encoder b2×s16", "fp32 eager")]["p50_ms"] > 0
    assert rows[("encoder b2×s16", "fp32 sdpa")]["status"] == "ok"
    skipped = {key: row["note"] for key, row in rows.items() if row["status"] == "skipped"}
    assert skipped[("2:4 sparsity Linear", "dense vs 2:4")].startswith("no CUDA GPU")
    assert skipped[("TensorRT engine", "fp16 build + run")] == "tensorrt not installed: never verified on this machine"
    assert skipped[("onnxruntime GPU providers", "CUDA / TensorRT EP")] == "no CUDA GPU"
    # The product's own path: a job benchmark's runtime variants, SDPA timed here and FP16 skipped.
    assert rows[("job variants b2×s16", "baseline (default attention)")]["p50_ms"] > 0
    assert rows[("job variants b2×s16", "sdpa")]["status"] == "ok"
    assert rows[("job variants b2×s16", "sdpa")]["note"].startswith("cpu, vs baseline, cosine to fp32 ")
    assert skipped[("job variants b2×s16", "fp16")] == "FP16 is timed on a CUDA GPU only; this worker has none"
    assert not [row for row in rows.values() if row["status"] == "failed"]
