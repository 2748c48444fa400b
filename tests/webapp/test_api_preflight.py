"""POST /api/v1/preflight and the new-job form's Estimate button: estimates before submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.webapp.helpers import api_client_for, client_for, json_body
from webapp.catalog.models import ModelEntry
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def causal_lm_entry(team, owner, tmp_path):
    """An uploaded causal LM (a small random Llama; estimates read only its config and headers)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256,
    )  # fmt: skip
    folder = tmp_path / "llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    return ModelEntry.objects.create(
        team=team, name="tiny llama", reference=str(folder), format="hf", task="causal-lm", source="upload",
        created_by=owner,
    )  # fmt: skip


def post(client, body):
    return client.post("/api/v1/preflight", data=json.dumps(body), content_type="application/json")


def test_preflight_returns_cpu_and_gpu_estimates_per_step(owner, causal_lm_entry, settings):
    settings.INFEROPT_GPU_QUEUE_ENABLED = False
    body = {
        "model": f"model:{causal_lm_entry.pk}",
        "steps": [{"pass": "gptq", "num_calibration_samples": 32, "max_seq_length": 128}],
    }
    response = post(api_client_for(owner), body)
    assert response.status_code == 200, response.content
    result = json_body(response)
    assert result["queue"] == "cpu"
    [step] = result["steps"]
    assert step["pass"] == "gptq" and step["prefers_gpu"] is True and step["needs_gpu"] is False
    assert 0 < step["gpu"]["estimated_seconds"] < step["cpu"]["estimated_seconds"]
    assert step["cpu"]["estimated_memory_mb"] > 0
    assert "4096 calibration tokens" in step["cpu"]["notes"][0]
    assert step["fits_cpu_budget"] is True
    assert Job.objects.count() == 0, "an estimate submits nothing"


def test_preflight_says_the_gpu_queue_when_one_is_enabled(owner, causal_lm_entry, settings):
    settings.INFEROPT_GPU_QUEUE_ENABLED = True
    response = post(api_client_for(owner), {"model": f"model:{causal_lm_entry.pk}", "steps": [{"pass": "awq"}]})
    assert json_body(response)["queue"] == "gpu"


def test_preflight_flags_an_estimate_over_the_cpu_budget(owner, causal_lm_entry, monkeypatch):
    monkeypatch.setenv("INFEROPT_CPU_PASS_TIME_BUDGET_S", "1")
    response = post(api_client_for(owner), {"model": f"model:{causal_lm_entry.pk}", "steps": [{"pass": "w8a8"}]})
    result = json_body(response)
    assert result["cpu_time_budget_s"] == 1.0
    assert result["steps"][0]["fits_cpu_budget"] is False


def test_preflight_rejects_an_unknown_scheme_with_a_reason(owner, causal_lm_entry):
    body = {"model": f"model:{causal_lm_entry.pk}", "steps": [{"pass": "gptq", "scheme": "W3A5"}]}
    response = post(api_client_for(owner), body)
    assert response.status_code == 400
    assert "scheme" in json_body(response)["error"]


def test_preflight_hides_other_teams_models(outsider, causal_lm_entry):
    response = post(api_client_for(outsider), {"model": f"model:{causal_lm_entry.pk}", "steps": [{"pass": "gptq"}]})
    assert response.status_code == 400


def test_preflight_needs_authentication(causal_lm_entry):
    from django.test import Client

    response = post(Client(), {"model": f"model:{causal_lm_entry.pk}", "steps": []})
    assert response.status_code in (401, 403)


def test_the_web_process_loads_no_torch_for_an_estimate(causal_lm_entry):
    code = (
        "import json, sys, django\n"
        "django.setup()\n"
        "from types import SimpleNamespace\n"
        "from webapp.jobs.estimates import estimate_recipe\n"
        f"entry = SimpleNamespace(reference={causal_lm_entry.reference!r}, format='hf', task='causal-lm')\n"
        "result = estimate_recipe(entry, {'steps': [{'pass': 'gptq'}, {'pass': 'int4_weight_only'}]})\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'steps': len(result.steps)}))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"torch": False, "steps": 2}


def test_the_new_job_form_shows_estimates_without_submitting(owner, team, causal_lm_entry):
    client = client_for(owner)
    form = {
        "team": team.pk,
        "model": causal_lm_entry.pk,
        "batch_sizes": "1",
        "seq_len": 64,
        "evaluation_samples": 64,
        "p__gptq__enabled": "on",
        "p__gptq__order": 1,
        "p__gptq__cfg__num_calibration_samples": 16,
        "p__gptq__cfg__max_seq_length": 64,
        "action": "estimate",
    }
    response = client.post("/jobs/new/", data=form)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="estimates"' in page and "gptq" in page and "calibration tokens" in page
    assert Job.objects.count() == 0
