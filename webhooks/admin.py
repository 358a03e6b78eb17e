from django.contrib import admin

from .forms import EndpointForm
from .models import Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    """The secret is not shown here (it is not an editable field): staff see it once on the
    Webhooks page when they create the endpoint or rotate its secret."""

    form = EndpointForm
    list_display = ("name", "url", "active", "created_by", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "url")
    readonly_fields = ("created_by", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "event", "endpoint", "status", "attempts", "last_status_code", "created_at")
    list_filter = ("status", "event")
    search_fields = ("uid", "event_id")
    raw_id_fields = ("endpoint", "redelivery_of", "requested_by")
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request):
        return False  # deliveries come from events (or "redeliver" on the Webhooks page)
