from django.contrib import admin

from webapp.catalog.models import Dataset, ModelEntry


@admin.register(ModelEntry)
class ModelEntryAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "format", "task", "source", "size_bytes", "created_at"]
    list_filter = ["source", "format", "task"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "schema", "rows", "created_at"]
