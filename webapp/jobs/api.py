"""REST API for jobs: submit a recipe, list, detail, cancel."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from optimizers.errors import RecipeError
from webapp.api import ErrorSerializer, error, request_team
from webapp.catalog.services import resolve_dataset, resolve_model
from webapp.jobs.estimates import estimate_recipe
from webapp.jobs.models import Artifact, Job
from webapp.jobs.services import cancel_job, submit_job, submit_search_job, submit_serving_job
from webapp.parsers import LimitedJSONParser
from webapp.reviews.services import DEPLOYABLE_STATES, approval_state


class ArtifactSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(
        help_text="download path for deployment (accepts the same bearer token; 403 while the job is not deployable)"
    )
    inspect_url = serializers.SerializerMethodField(help_text="download path for inspection only (always allowed)")

    class Meta:
        model = Artifact
        fields = ["name", "format", "sha256", "size_bytes", "is_final", "url", "inspect_url"]

    def get_url(self, artifact: Artifact) -> str:
        return reverse("jobs:artifact_download", args=[artifact.job_id, artifact.pk])

    def get_inspect_url(self, artifact: Artifact) -> str:
        return self.get_url(artifact) + "?purpose=inspect"


class JobSummarySerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "name", "team", "status", "stage", "progress", "error",
            "created_at", "started_at", "finished_at", "gate_outcome",
        ]  # fmt: skip


class JobSerializer(JobSummarySerializer):
    artifacts = ArtifactSerializer(many=True, read_only=True, help_text="final artifact last")
    report = serializers.JSONField(read_only=True, help_text="report.json once the job succeeded")
    approval_state = serializers.SerializerMethodField(
        help_text="not_required, awaiting, approved, approved_expired, rejected or overridden"
    )
    deployable = serializers.SerializerMethodField(help_text="may the artifacts be downloaded for deployment")

    class Meta(JobSummarySerializer.Meta):
        fields = [
            *JobSummarySerializer.Meta.fields, "queue", "cancel_requested", "recipe", "report", "artifacts",
            "approval_state", "deployable",
        ]  # fmt: skip

    def get_approval_state(self, job: Job) -> str:
        return approval_state(job)

    def get_deployable(self, job: Job) -> bool:
        return approval_state(job) in DEPLOYABLE_STATES


class JobCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()


RECIPE_EXAMPLE = {
    "name": "MiniLM int8",
    "model": "zoo:minilm",
    "steps": [{"pass": "onnx_export", "opset": 17}, {"pass": "ort_quantize_dynamic"}],
    "gate": [{"metric": "cosine", "kind": "absolute_drop", "threshold": 0.01}],
    "benchmark": {"batch_sizes": [1, 8], "seq_len": 128},
}


SEARCH_EXAMPLE = {
    "mode": "search",
    "model": "zoo:minilm",
    "axes": [
        ["none", {"pass": "onnx_export"}],
        ["none", {"pass": "ort_quantize_dynamic", "per_channel": True}],
    ],
    "budget_s": 900,
}


SERVING_EXAMPLE = {
    "mode": "serving",
    "name": "digits: serving analysis",
    "model": "zoo:digits-cnn",
    "steps": [{"pass": "onnx_export"}],
    "p95_budget_ms": 20,
    "batching": {"max_batch_sizes": [1, 4, 8, 16], "max_queue_delays_ms": [0, 2, 10], "requests_per_cell": 200},
    "triton": {"model_name": "digits", "instance_count": 1},
}


class JobListView(APIView):
    parser_classes = [LimitedJSONParser]

    @extend_schema(summary="Your teams' jobs, newest first", responses=JobSummarySerializer(many=True))
    def get(self, request):
        jobs = Job.objects.visible_to(request.user).select_related("team")[:500]
        return Response(JobSummarySerializer(jobs, many=True).data)

    @extend_schema(
        summary="Submit a recipe",
        description=(
            "The body is a recipe (the same object as the YAML recipe file). `model` is `zoo:<name>` or "
            "`model:<id>` from GET /api/v1/models; `dataset` (optional) is `dataset:<id>`. Optional top-level "
            '`name` and `team`. With `"mode": "search"` the body is a search space instead '
            "(`axes`: lists of options, each `none` or steps; `budget_s`; optional `gate`, `benchmark`, "
            "`evaluation`): the job tries every combination within the budget and reports all candidates. "
            'With `"mode": "serving"` the body is a serving analysis (`p95_budget_ms`, optional `steps`, '
            "`batching` grid, `triton`, `kv_cache`): classifiers and encoders get a dynamic batching sweep, a "
            "recommended setting within the p95 budget and a Triton model repository (when the analysed artifact "
            "is ONNX); causal LMs get the KV-cache table and decode rooflines."
        ),
        parameters=[OpenApiParameter("team", str, description="team name (default: your first team)")],
        request=OpenApiTypes.OBJECT,
        examples=[
            OpenApiExample("ONNX export + dynamic INT8", value=RECIPE_EXAMPLE, request_only=True),
            OpenApiExample("Search", value=SEARCH_EXAMPLE, request_only=True),
            OpenApiExample("Serving analysis", value=SERVING_EXAMPLE, request_only=True),
        ],
        responses={201: JobCreatedSerializer, 400: ErrorSerializer},
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            return error("the body must be a JSON object (a recipe)")
        team, problem = request_team(request)
        if problem:
            return problem
        recipe = dict(request.data)
        name = recipe.pop("name", "") or ""
        recipe.pop("team", None)
        if not isinstance(name, str):
            return error("'name' must be a string")
        try:
            entry = resolve_model(request.user, recipe.get("model"))
            dataset, dataset_value = resolve_dataset(request.user, recipe.get("dataset"))
            if dataset_value is not None:
                recipe["dataset"] = dataset_value
            if recipe.get("tokenizer") is not None:
                raise RecipeError("'tokenizer' is not accepted over the API: the model folder's tokenizer is used")
            mode = recipe.get("mode", "recipe")
            if mode == "search":
                job = submit_search_job(request.user, team, entry, recipe, dataset=dataset, name=name)
            elif mode == "serving":
                job = submit_serving_job(request.user, team, entry, recipe, dataset=dataset, name=name)
            elif mode == "recipe":
                recipe.pop("mode", None)
                job = submit_job(request.user, team, entry, recipe, dataset=dataset, name=name)
            else:
                raise RecipeError(f"unknown mode {mode!r}: use 'recipe' (default), 'search' or 'serving'")
        except RecipeError as problem:
            return error(str(problem))
        return Response({"id": job.pk, "status": job.status}, status=status.HTTP_201_CREATED)


class JobDetailView(APIView):
    @extend_schema(summary="One job: status, progress, report and artifacts", responses=JobSerializer)
    def get(self, request, pk: int):
        job = get_object_or_404(Job.objects.visible_to(request.user).select_related("team"), pk=pk)
        return Response(JobSerializer(job).data)


class JobCancelView(APIView):
    @extend_schema(
        summary="Cancel a job (queued: at once; running: after its current step)",
        request=None,
        responses=JobSummarySerializer,
    )
    def post(self, request, pk: int):
        job = cancel_job(get_object_or_404(Job.objects.visible_to(request.user), pk=pk))
        return Response(JobSummarySerializer(job).data)


PREFLIGHT_EXAMPLE = {
    "model": "zoo:tiny-lm",
    "steps": [{"pass": "gptq", "num_calibration_samples": 64, "max_seq_length": 256}],
}


class PreflightView(APIView):
    parser_classes = [LimitedJSONParser]

    @extend_schema(
        summary="Estimate a recipe's memory and time per step, before submitting it",
        description=(
            "The body is a recipe, as for POST /api/v1/jobs. Each step gets a CPU and a GPU estimate "
            "(`estimated_seconds`, `estimated_memory_mb`, `notes`) from the model's config and weight headers; "
            "`queue` is where the job would be sent, `fits_cpu_budget` compares the CPU estimate with the "
            "workers' time budget. A CPU worker also refuses a step whose estimate exceeds its free memory."
        ),
        request=OpenApiTypes.OBJECT,
        examples=[OpenApiExample("GPTQ on the tiny LM", value=PREFLIGHT_EXAMPLE, request_only=True)],
        responses={200: OpenApiTypes.OBJECT, 400: ErrorSerializer},
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            return error("the body must be a JSON object (a recipe)")
        recipe = {key: value for key, value in request.data.items() if key not in ("name", "team", "tokenizer")}
        try:
            entry = resolve_model(request.user, recipe.get("model"))
            estimate = estimate_recipe(entry, recipe)
        except RecipeError as problem:
            return error(str(problem))
        return Response({"model": recipe.get("model"), **estimate.as_dict()})
