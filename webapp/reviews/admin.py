"""Read-only admin views of reviews and the audit log (both append-only)."""

from django.contrib import admin

from webapp.reviews.models import AuditEntry, Review


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "decision", "reviewer_name", "gate_outcome", "expires_at", "created_at"]
    list_filter = ["decision", "gate_outcome"]
    search_fields = ["reason", "reviewer_name"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "team_id", "job_id", "actor_name", "action", "reason"]
    list_filter = ["action"]
    search_fields = ["actor_name", "reason"]
