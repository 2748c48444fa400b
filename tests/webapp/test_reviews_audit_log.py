"""The audit log only grows: no update, no delete (models, querysets, the database), deletions audited."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from tests.webapp.helpers import client_for
from webapp.reviews.models import AppendOnlyError, AuditEntry, Review
from webapp.reviews.services import acting_as, record, review_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(finished_job, owner) -> AuditEntry:
    return record(AuditEntry.Action.DOWNLOAD, job=finished_job, actor=owner, details={"purpose": "inspect"})


def test_record_writes_who_when_what_and_why(entry, finished_job, owner):
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.team_id, stored.job_id, stored.actor_id) == (finished_job.team_id, finished_job.pk, owner.pk)
    assert stored.actor_name == "alice" and stored.action == "download"
    assert stored.details == {"purpose": "inspect"} and stored.created_at is not None


def test_an_entry_cannot_be_saved_again(entry):
    entry.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.save(update_fields=["reason"])
    assert AuditEntry.objects.get(pk=entry.pk).reason == ""


def test_an_entry_cannot_be_deleted(entry):
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_querysets_refuse_update_and_bulk_update(entry):
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="x")
    entry.reason = "x"
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.bulk_update([entry], ["reason"])
    assert AuditEntry.objects.get(pk=entry.pk).reason == ""


def test_the_database_refuses_an_update_behind_djangos_back(entry):
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE reviews_auditentry SET reason = 'forged' WHERE id = %s", [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).reason == ""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps DELETE for Django's flush")
def test_postgresql_refuses_a_delete_behind_djangos_back(entry):
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM reviews_auditentry WHERE id = %s", [entry.pk])
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_reviews_are_append_only_too(finished_job, reviewer):
    review = review_job(reviewer, finished_job, "approve", "fine")
    review.reason = "changed"
    with pytest.raises(AppendOnlyError):
        review.save()
    with pytest.raises(AppendOnlyError):
        review.delete()
    with pytest.raises(AppendOnlyError):
        Review.objects.filter(pk=review.pk).update(reason="changed")


def test_deleting_a_job_is_audited_and_keeps_its_entries(finished_job, entry, team_admin):
    job_id, artifact_ids = finished_job.pk, set(finished_job.artifacts.values_list("pk", flat=True))
    with acting_as(team_admin):
        finished_job.delete()
    assert AuditEntry.objects.filter(pk=entry.pk, job_id=job_id).exists(), "the job's older entries stay"
    deleted = AuditEntry.objects.get(job_id=job_id, action="job_deleted")
    assert deleted.actor_name == "adam" and deleted.details["name"] == "test job"
    artifacts = AuditEntry.objects.filter(job_id=job_id, action="artifact_deleted")
    assert {row.details["artifact"] for row in artifacts} == artifact_ids


def test_deleting_an_artifact_alone_is_audited_without_an_actor_outside_requests(finished_job):
    artifact = finished_job.artifacts.first()
    artifact.delete()
    deleted = AuditEntry.objects.get(job_id=finished_job.pk, action="artifact_deleted")
    assert deleted.actor is None and deleted.actor_name == ""
    assert deleted.details["sha256"] == artifact.sha256


def test_deleting_a_job_in_the_django_admin_names_the_staff_user(finished_job, django_user_model):
    staff = django_user_model.objects.create_superuser("root", password="pw-root-123")
    response = client_for(staff).post(
        reverse("admin:jobs_job_delete", args=[finished_job.pk]), {"post": "yes"}, follow=False
    )
    assert response.status_code == 302
    deleted = AuditEntry.objects.get(job_id=finished_job.pk, action="job_deleted")
    assert deleted.actor_name == "root"


def test_the_admin_shows_the_log_read_only(entry, django_user_model):
    staff = django_user_model.objects.create_superuser("root", password="pw-root-123")
    client = client_for(staff)
    assert client.get(reverse("admin:reviews_auditentry_changelist")).status_code == 200
    assert client.get(reverse("admin:reviews_auditentry_add")).status_code == 403
    assert client.post(reverse("admin:reviews_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_deleting_a_reviewed_job_or_its_reviewer_keeps_the_record(finished_job, reviewer, team):
    review = review_job(reviewer, finished_job, "approve", "fine")
    reviewer.delete()
    review = Review.objects.get(pk=review.pk)
    assert review.reviewer is None and review.reviewer_name == "rita", "the name stays when the user goes"
    approve = AuditEntry.objects.get(job_id=finished_job.pk, action="approve")
    assert approve.actor_id is not None and approve.actor_name == "rita", "audit rows are never touched"
    team.delete()
    assert not Review.objects.exists(), "reviews go with their job"
    assert AuditEntry.objects.filter(job_id=finished_job.pk, action__in=["approve", "job_deleted"]).count() == 2
