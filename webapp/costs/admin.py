from django.contrib import admin

from webapp.costs.models import InstanceType


@admin.register(InstanceType)
class InstanceTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "kind", "device", "hourly_price", "price_date"]
    list_filter = ["kind", "team"]
    search_fields = ["name", "device"]
