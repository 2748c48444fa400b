"""The Serving tab's causal-LM options (speculative decoding, KV-cache quantization, continuous batching): shown,
stored in the job's spec, sent as ``{"enabled": false}`` when unticked, and refused with the reason (400, no job)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from optimizers.serving.continuous import ContinuousBatchingOptions
from optimizers.serving.kv_quant import KVQuantOptions
from optimizers.serving.speculative import SpeculativeOptions
from tests.webapp.helpers import client_for
from webapp.catalog.services import ensure_demo_models
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_lm(db):
    return next(entry for entry in ensure_demo_models() if entry.reference == "zoo:tiny-lm")


def form_data(team, model, **changes) -> dict:
    """A Serving-tab POST for ``model`` with every causal-LM section ticked and its defaults; ``changes`` override."""
    data = {"serving-team": team.pk, "serving-model": model.pk, "serving-name": "", "serving-p95_budget_ms": 50,
            "serving-max_batch_sizes": "1,4", "serving-max_queue_delays_ms": "0",
            "serving-speculative_enabled": "on", "serving-speculative_draft_model": "on",
            "serving-speculative_draft": "zoo:tiny-lm-draft", "serving-speculative_prompt_lookup": "on",
            "serving-speculative_max_new_tokens": 48, "serving-kv_quant_enabled": "on",
            "serving-kv_quant_nbits": "4,8", "serving-kv_quant_context_lens": "128,512",
            "serving-continuous_enabled": "on", "serving-continuous_max_batch": 16,
            "serving-continuous_requests": 200}  # fmt: skip
    data.update({f"serving-{key}": value for key, value in changes.items()})
    return {key: value for key, value in data.items() if value is not None}  # None: the field is not posted


def test_the_serving_tab_shows_the_causal_lm_options_with_the_spec_defaults(owner, team, tiny_lm):
    page = client_for(owner).get(reverse("jobs:new_serving")).content.decode()
    assert 'id="serving-llm-options"' in page and "Causal LMs only" in page and "Ignored for other models" in page
    for name in ("speculative_enabled", "speculative_draft_model", "speculative_prompt_lookup", "kv_quant_enabled",
                 "continuous_enabled"):  # fmt: skip
        assert f'name="serving-{name}" id="id_serving-{name}" checked' in page, name
    speculative, kv_quant, continuous = SpeculativeOptions(), KVQuantOptions(), ContinuousBatchingOptions()
    assert f'name="serving-speculative_draft" value="{speculative.draft}"' in page
    assert f'name="serving-speculative_max_new_tokens" value="{speculative.max_new_tokens}"' in page
    assert f'name="serving-kv_quant_nbits" value="{",".join(map(str, kv_quant.nbits))}"' in page
    assert f'name="serving-kv_quant_context_lens" value="{",".join(map(str, kv_quant.context_lens))}"' in page
    assert f'name="serving-continuous_max_batch" value="{continuous.max_batch}"' in page
    assert f'name="serving-continuous_requests" value="{continuous.requests}"' in page


def test_the_causal_lm_options_are_stored_in_the_jobs_spec(owner, team, tiny_lm, fake_celery):
    data = form_data(team, tiny_lm, speculative_enabled=None, kv_quant_nbits="8", kv_quant_context_lens="64, 256",
                     continuous_max_batch=8, continuous_requests=50)  # fmt: skip
    response = client_for(owner).post(reverse("jobs:new_serving"), data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    recipe = Job.objects.get().recipe
    assert recipe["speculative"]["enabled"] is False
    assert recipe["kv_quant"]["enabled"] is True
    assert recipe["kv_quant"]["nbits"] == [8] and recipe["kv_quant"]["context_lens"] == [64, 256]
    assert recipe["continuous_batching"]["enabled"] is True
    assert recipe["continuous_batching"]["max_batch"] == 8 and recipe["continuous_batching"]["requests"] == 50


def test_the_speculative_options_are_stored_and_unticked_sections_are_disabled(owner, team, tiny_lm, fake_celery):
    data = form_data(team, tiny_lm, speculative_draft_model=None, speculative_max_new_tokens=16,
                     kv_quant_enabled=None, continuous_enabled=None)  # fmt: skip
    response = client_for(owner).post(reverse("jobs:new_serving"), data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    recipe = Job.objects.get().recipe
    speculative = recipe["speculative"]
    assert speculative["enabled"] is True and speculative["draft_model"] is False
    assert speculative["prompt_lookup"] is True and speculative["max_new_tokens"] == 16
    assert recipe["kv_quant"]["enabled"] is False and recipe["continuous_batching"]["enabled"] is False


def test_the_form_sends_only_enabled_false_for_an_unticked_section(owner, team, tiny_lm):
    from webapp.jobs.forms import ServingJobForm

    form = ServingJobForm(form_data(team, tiny_lm, kv_quant_enabled=None, kv_quant_nbits="5"), user=owner)
    assert form.is_valid(), form.errors
    mapping = form.serving_mapping()
    assert mapping["kv_quant"] == {"enabled": False}
    assert mapping["continuous_batching"] == {"enabled": True, "max_batch": 16, "requests": 200}


def test_blank_numbers_and_lists_fall_back_to_the_spec_defaults(owner, team, tiny_lm, fake_celery):
    data = form_data(team, tiny_lm, speculative_draft="", speculative_max_new_tokens="", kv_quant_nbits="",
                     kv_quant_context_lens=" ", continuous_max_batch="", continuous_requests="")  # fmt: skip
    response = client_for(owner).post(reverse("jobs:new_serving"), data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    recipe = Job.objects.get().recipe
    assert recipe["speculative"]["draft"] == SpeculativeOptions().draft
    assert recipe["kv_quant"]["nbits"] == KVQuantOptions().nbits
    assert recipe["continuous_batching"]["max_batch"] == ContinuousBatchingOptions().max_batch


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"speculative_draft": "/etc/models/draft"}, "speculative.draft must be a demo model"),
        ({"kv_quant_nbits": "5"}, "nbits [5] not supported by the hqq backend"),
        ({"kv_quant_nbits": "four"}, "KV-cache bits must be integers separated by commas"),
        ({"kv_quant_context_lens": "16"}, "context_lens [16] must exceed decode_tokens"),
        ({"continuous_max_batch": 0}, "continuous_batching.max_batch: Input should be greater than or equal to 1"),
        ({"speculative_max_new_tokens": 99999}, "speculative.max_new_tokens: Input should be less than"),
    ],
)
def test_bad_causal_lm_options_are_a_400_with_the_reason_and_no_job(owner, team, tiny_lm, fake_celery, changes,
                                                                    message):  # fmt: skip
    response = client_for(owner).post(reverse("jobs:new_serving"), form_data(team, tiny_lm, **changes))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Job.objects.exists()
