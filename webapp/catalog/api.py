"""REST API: models (list, upload, detail), datasets and the pass registry."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from optimizers.errors import UnsafeInputError
from optimizers.passes import all_passes
from webapp.api import ErrorSerializer, error, request_team
from webapp.catalog.models import Dataset, ModelEntry
from webapp.catalog.services import ensure_demo_models, upload_dataset, upload_model
from webapp.catalog.uploads import too_large_message, upload_too_large

TEAM_PARAMETER = OpenApiParameter("team", str, description="team name (default: your first team)")


class ModelEntrySerializer(serializers.ModelSerializer):
    ref = serializers.SerializerMethodField(help_text="what to put in a recipe's 'model'")
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ModelEntry
        fields = ["id", "ref", "name", "format", "task", "source", "team", "sha256", "size_bytes", "created_at"]

    def get_ref(self, entry: ModelEntry) -> str:
        return entry.reference if entry.source == ModelEntry.Source.ZOO else f"model:{entry.pk}"


class DatasetSerializer(serializers.ModelSerializer):
    ref = serializers.SerializerMethodField(help_text="what to put in a recipe's 'dataset'")
    team = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "ref", "name", "schema", "rows", "sha256", "team", "created_at"]

    def get_ref(self, dataset: Dataset) -> str:
        return f"dataset:{dataset.pk}"


class UploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    file = serializers.FileField()
    team = serializers.CharField(required=False)


def _upload(request, store, serializer_class):
    data = request.data  # parse first: the upload handler flags an oversized body while parsing
    if upload_too_large(request):
        return error(too_large_message(), status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    team, problem = request_team(request)
    if problem:
        return problem
    form = UploadSerializer(data=data)
    if not form.is_valid():
        return error("; ".join(f"{key}: {' '.join(map(str, value))}" for key, value in form.errors.items()))
    try:
        obj = store(request.user, team, form.validated_data["name"], form.validated_data["file"])
    except UnsafeInputError as refusal:
        return error(str(refusal))
    return Response(serializer_class(obj).data, status=status.HTTP_201_CREATED)


class ModelListView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        summary="Models you can optimize (built-in demos and your teams' uploads)",
        responses=ModelEntrySerializer(many=True),
    )
    def get(self, request):
        ensure_demo_models()
        entries = ModelEntry.objects.visible_to(request.user).select_related("team")
        return Response(ModelEntrySerializer(entries, many=True).data)

    @extend_schema(
        summary="Upload a zipped Hugging Face model folder (safetensors only)",
        parameters=[TEAM_PARAMETER],
        request={"multipart/form-data": UploadSerializer},
        responses={201: ModelEntrySerializer, 400: ErrorSerializer, 413: ErrorSerializer},
    )
    def post(self, request):
        return _upload(request, upload_model, ModelEntrySerializer)


class ModelDetailView(APIView):
    @extend_schema(summary="One model", responses=ModelEntrySerializer)
    def get(self, request, pk: int):
        entry = get_object_or_404(ModelEntry.objects.visible_to(request.user), pk=pk)
        return Response(ModelEntrySerializer(entry).data)


class DatasetListView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(summary="Your teams' datasets", responses=DatasetSerializer(many=True))
    def get(self, request):
        datasets = Dataset.objects.visible_to(request.user).select_related("team")
        return Response(DatasetSerializer(datasets, many=True).data)

    @extend_schema(
        summary='Upload a JSONL dataset ({"text"} or {"query", "passage"} per line)',
        parameters=[TEAM_PARAMETER],
        request={"multipart/form-data": UploadSerializer},
        responses={201: DatasetSerializer, 400: ErrorSerializer, 413: ErrorSerializer},
    )
    def post(self, request):
        return _upload(request, upload_dataset, DatasetSerializer)


class PassListView(APIView):
    @extend_schema(
        summary="Every optimization pass with its config JSON schema",
        responses=inline_serializer(
            "PassInfo",
            {
                "name": serializers.CharField(),
                "title": serializers.CharField(),
                "description": serializers.CharField(),
                "input_formats": serializers.ListField(child=serializers.CharField()),
                "output_format": serializers.CharField(),
                "tasks": serializers.ListField(child=serializers.CharField()),
                "requires": serializers.DictField(),
                "config_schema": serializers.DictField(),
                "available": serializers.BooleanField(
                    help_text="Whether some live worker can run it now (a job using it would be accepted)."
                ),
                "unavailable_reason": serializers.CharField(
                    help_text="Why no live worker can run it (empty when available)."
                ),
            },
            many=True,
        ),
    )
    def get(self, request):
        from webapp.fleet.routing import pass_availability

        passes = [technique.describe() for technique in all_passes()]
        unavailable = pass_availability(info["name"] for info in passes)
        return Response(
            [
                {
                    **info,
                    "available": info["name"] not in unavailable,
                    "unavailable_reason": unavailable.get(info["name"], ""),
                }
                for info in passes
            ]
        )
