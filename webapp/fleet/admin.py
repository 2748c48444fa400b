from django.contrib import admin

from webapp.fleet.models import WorkerNode


@admin.register(WorkerNode)
class WorkerNodeAdmin(admin.ModelAdmin):
    list_display = ["hostname", "queues", "last_seen", "stopped_at", "started_at"]
    readonly_fields = ["hostname", "queues", "capabilities", "started_at", "last_seen", "stopped_at"]
