"""A causal-LM serving job's page with speculative decoding and KV-cache quantization results: both tables,
the flags with the guidance, the refusal reason, the Medusa/EAGLE note, a variant that could not run."""

from __future__ import annotations

import json

import pytest

from optimizers.serving.analysis import ServingReport
from optimizers.serving.speculative import GUIDANCE, TRAINED_HEADS_NOTE, speculative_flags
from tests.webapp.helpers import api_client_for, client_for, json_body
from tests.webapp.test_serving_jobs import page_of, sample_llm_serving_report, serving_job
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def method(name: str, label: str, acceptance: float, speedup: float, identical: int) -> dict:
    return {
        "method": name, "label": label, "proposed_tokens": 200, "accepted_tokens": int(200 * acceptance),
        "acceptance_rate": acceptance, "target_forward_passes": 90, "new_tokens": 192, "seconds": 1.0,
        "tokens_per_s": 192.0, "speedup": speedup, "prompts": 4, "prompts_identical": identical,
        "identical_outputs": identical == 4, "flags": speculative_flags(acceptance, speedup),
    }  # fmt: skip


def point(context: int, cache: int, ratio: float, agreement: float) -> dict:
    return {
        "context_len": context, "cache_bytes": cache, "peak_memory_bytes": 3_000_000, "decode_tokens_per_s": 250.0,
        "perplexity": 40.5, "top1_agreement": agreement, "memory_ratio": ratio,
    }  # fmt: skip


def llm_report_with_measurements() -> dict:
    report = sample_llm_serving_report()
    report["speculative"] = {
        "target": "tiny-lm", "draft": "zoo:tiny-lm-draft", "prompts": 4,
        "prompt_source": "4 held-out prompts of 48 tokens", "max_new_tokens": 48, "device": "cpu", "threads": 2,
        "baseline_new_tokens": 192, "baseline_seconds": 1.2, "baseline_tokens_per_s": 160.0,
        "methods": [
            method("draft_model", "draft model (zoo:tiny-lm-draft)", 0.78, 1.35, 4),
            method("prompt_lookup", "prompt lookup (no draft)", 0.31, 0.93, 3),
        ],
        "refused": {}, "notes": [TRAINED_HEADS_NOTE],
    }  # fmt: skip
    report["kv_quant"] = {
        "backend": "hqq", "q_group_size": 64, "residual_length": 128, "decode_tokens": 32, "windows": 3,
        "context_lens": [128, 512], "dtype": "float32", "peak_method": "VmHWM",
        "variants": [
            {"label": "default cache (float32)",
             "points": [point(128, 1048576, 1.0, 1.0), point(512, 4194304, 1.0, 1.0)]},
            {"label": "hqq int4", "backend": "hqq", "nbits": 4,
             "points": [point(128, 458752, 0.4375, 0.97), point(512, 851968, 0.2031, 0.95)]},
            {"label": "hqq int8", "backend": "hqq", "nbits": 8, "error": "the hqq backend needs the hqq package"},
        ],
        "notes": ["Each decode step dequantizes the whole cached history."],
    }  # fmt: skip
    return report


def test_the_sample_is_a_valid_serving_report():
    ServingReport.model_validate(llm_report_with_measurements())


def test_page_shows_speculative_decoding_with_flags_and_the_trained_heads_note(owner, team, make_job):
    page = page_of(client_for(owner), serving_job(make_job, team, owner, llm_report_with_measurements()))
    table = page.split('id="speculative-table"')[1].split("</table>")[0]
    rows = table.split("<tbody>")[1].split("</tr>")[:-1]
    assert "draft model (zoo:tiny-lm-draft)" in rows[0] and "78%" in rows[0] and "1.35×" in rows[0]
    assert "yes (4/4)" in rows[0] and " bad" not in rows[0].split(">")[0]
    assert "prompt lookup (no draft)" in rows[1] and "31%" in rows[1] and "0.93×" in rows[1]
    assert "no: 3/4 prompts" in rows[1] and "bad" in rows[1].split(">")[0]
    flags = page.split('class="error speculative-flag"')[1:]
    assert len(flags) == 2  # prompt lookup: low acceptance and low speedup; the draft passes both thresholds
    assert all("prompt lookup (no draft)" in flag and GUIDANCE in flag for flag in flags)
    assert "Medusa and EAGLE" in page and "not offered yet" in page
    assert "160 tokens/s" in page.split('id="speculative-inputs"')[1].split("</p>")[0]


def test_page_shows_kv_cache_quantization_and_a_variant_that_did_not_run(owner, team, make_job):
    page = page_of(client_for(owner), serving_job(make_job, team, owner, llm_report_with_measurements()))
    table = page.split('id="kv-quant-table"')[1].split("</table>")[0]
    rows = table.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == 5  # 2 contexts × 2 measured variants + the failed one
    assert "default cache (float32)" in rows[0] and "1.0\xa0MB" in rows[0] and "100%" in rows[0]
    assert "hqq int4" in rows[3] and "832.0\xa0KB" in rows[3] and "0.203×" in rows[3] and "95%" in rows[3]
    assert "not measured: the hqq backend needs the hqq package" in rows[4]
    inputs = page.split('id="kv-quant-inputs"')[1].split("</p>")[0]
    assert "hqq backend" in inputs and "groups of 64" in inputs and "VmHWM" in inputs
    assert "dequantizes the whole cached history" in page


def test_a_refused_draft_is_explained(owner, team, make_job):
    report = llm_report_with_measurements()
    report["speculative"]["methods"] = report["speculative"]["methods"][1:]
    report["speculative"]["refused"] = {"draft_model": "the draft model's tokenizer differs from the target's"}
    page = page_of(client_for(owner), serving_job(make_job, team, owner, report))
    refused = page.split('id="speculative-refused-draft_model"')[1].split("</p>")[0]
    assert "tokenizer differs from the target&#x27;s" in refused


def test_reports_without_the_new_sections_still_render(owner, team, make_job):
    page = page_of(client_for(owner), serving_job(make_job, team, owner, sample_llm_serving_report()))
    assert 'id="kv-cache-table"' in page
    assert 'id="speculative-table"' not in page and 'id="kv-quant-table"' not in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"speculative": {"draft": "/etc"}}, "speculative.draft must be a demo model"),
        ({"speculative": {"medusa_heads": 4}}, "medusa_heads"),
        ({"kv_quant": {"backend": "quanto", "nbits": [8]}}, "quanto backend"),
        ({"kv_quant": {"context_lens": [8], "decode_tokens": 32}}, "must exceed decode_tokens"),
    ],
)
def test_bad_llm_serving_options_are_400_with_a_reason(owner, fake_celery, change, message):
    from webapp.catalog.services import ensure_demo_models

    next(entry for entry in ensure_demo_models() if entry.reference == "zoo:tiny-lm")
    body = {"mode": "serving", "model": "zoo:tiny-lm", **change}
    response = api_client_for(owner).post("/api/v1/jobs", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    assert message in json.dumps(json_body(response))
    assert not Job.objects.exists() and fake_celery.sent == []


def test_a_zoo_draft_is_accepted(owner, team, fake_celery):
    from webapp.catalog.services import ensure_demo_models

    next(entry for entry in ensure_demo_models() if entry.reference == "zoo:tiny-lm")
    body = {"mode": "serving", "model": "zoo:tiny-lm", "speculative": {"draft": "zoo:tiny-lm-draft", "prompts": 2}}
    response = api_client_for(owner).post("/api/v1/jobs", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    recipe = Job.objects.get().recipe
    assert recipe["speculative"]["prompts"] == 2 and recipe["kv_quant"]["nbits"] == [4, 8]
