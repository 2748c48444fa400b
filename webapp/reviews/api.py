"""REST API for reviews: review a job, list its reviews and its audit entries."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.api import ErrorSerializer, error
from webapp.jobs.models import Job
from webapp.parsers import LimitedJSONParser
from webapp.reviews.models import AuditEntry, Review
from webapp.reviews.services import DEPLOYABLE_STATES, ReviewError, approval_state, job_audit, review_job


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer_name", read_only=True)

    class Meta:
        model = Review
        fields = ["id", "decision", "reason", "reviewer", "gate_outcome", "expires_at", "created_at"]


class ReviewRequestSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=Review.Decision.choices,
        help_text="approve (needs_approval), override = accept despite failure (fail), or reject",
    )
    reason = serializers.CharField(help_text="required: why")
    expires_at = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="optional, approve/override only: ISO date (valid through that day, UTC) or datetime",
    )


class ReviewCreatedSerializer(ReviewSerializer):
    approval_state = serializers.CharField()
    deployable = serializers.BooleanField()

    class Meta(ReviewSerializer.Meta):
        fields = [*ReviewSerializer.Meta.fields, "approval_state", "deployable"]


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField(help_text="username, or null for the system (the worker)")
    job = serializers.IntegerField(source="job_id", allow_null=True)

    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "action", "actor", "job", "reason", "details"]

    def get_actor(self, entry: AuditEntry) -> str | None:
        return entry.actor_name or None


def _job(request, pk: int) -> Job:
    return get_object_or_404(Job.objects.visible_to(request.user).select_related("team"), pk=pk)


class JobReviewsView(APIView):
    parser_classes = [LimitedJSONParser]

    @extend_schema(summary="A job's reviews, newest first", responses=ReviewSerializer(many=True))
    def get(self, request, pk: int):
        job = _job(request, pk)
        return Response(ReviewSerializer(job.reviews.order_by("-created_at", "-id"), many=True).data)

    @extend_schema(
        summary="Approve, reject or override (accept despite failure) a gated job",
        description=(
            "For a succeeded job whose gate outcome is `needs_approval` (approve or reject) or `fail` (override "
            "or reject). 403 for the job's submitter (four-eyes rule) and for users who are not reviewers or admins "
            "of the job's team; 400 without a reason or for a decision the outcome does not admit."
        ),
        request=ReviewRequestSerializer,
        examples=[
            OpenApiExample(
                "approve until a date",
                value={
                    "decision": "approve",
                    "reason": "cosine loss 0.006 is fine for search",
                    "expires_at": "2027-06-30",
                },
                request_only=True,
            )
        ],
        responses={201: ReviewCreatedSerializer, 400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
    )
    def post(self, request, pk: int):
        job = _job(request, pk)
        data = request.data if isinstance(request.data, dict) else {}
        try:
            review = review_job(
                request.user, job, data.get("decision", ""), data.get("reason", ""), data.get("expires_at")
            )
        except ReviewError as problem:
            return error(problem.message, problem.status_code)
        state = approval_state(job, review)
        body = {**ReviewSerializer(review).data, "approval_state": state, "deployable": state in DEPLOYABLE_STATES}
        return Response(body, status=status.HTTP_201_CREATED)


class JobAuditView(APIView):
    @extend_schema(summary="A job's audit entries, oldest first", responses=AuditEntrySerializer(many=True))
    def get(self, request, pk: int):
        job = _job(request, pk)
        return Response(AuditEntrySerializer(job_audit(job), many=True).data)
