from django.contrib import admin

from webapp.jobs.models import Artifact, Job


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "team", "status", "stage", "progress", "gate_outcome", "created_at"]
    list_filter = ["status", "gate_outcome", "queue"]
    search_fields = ["name"]
    inlines = [ArtifactInline]
