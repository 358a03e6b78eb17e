"""Webhooks REST API (staff only): endpoints (the secret is in the answer to create and
rotate-secret only) and their deliveries (log, redeliver)."""

from __future__ import annotations

from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from base.events import event_choices
from base.permissions import IsStaff
from base.schema import error_responses

from . import delivery as deliveries
from .models import Delivery, Endpoint


def _no_store(response: Response) -> Response:
    add_never_cache_headers(response)  # the secret is in it: no cached copy anywhere
    return response


class EndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=event_choices()),
        min_length=1,
        help_text="event names to receive",
    )
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = Endpoint
        fields = ["id", "name", "url", "events", "active", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].child.choices = event_choices()  # event types added later too

    def validate_events(self, value):
        return sorted(set(value))


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="signs every delivery; shown only in this answer (store it now)"
    )

    class Meta(EndpointSerializer.Meta):
        fields = EndpointSerializer.Meta.fields + ["secret"]
        read_only_fields = EndpointSerializer.Meta.read_only_fields + ["secret"]


class DeliverySerializer(serializers.ModelSerializer):
    endpoint_name = serializers.CharField(source="endpoint.name", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "uid",
            "endpoint",
            "endpoint_name",
            "event",
            "event_id",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "last_response",
            "next_attempt_at",
            "redelivery_of",
            "requested_by",
            "payload",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields


class EndpointViewSet(viewsets.ModelViewSet):
    """Staff register the URLs events are sent to. Deliveries go only where staff point them,
    to public addresses or the networks in GENREWEB_WEBHOOK_ALLOWED_NETWORKS."""

    permission_classes = [IsStaff]
    queryset = Endpoint.objects.select_related("created_by")
    serializer_class = EndpointSerializer

    @extend_schema(responses={201: EndpointWithSecretSerializer})
    def create(self, request, *args, **kwargs):
        data = EndpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = data.save(created_by=request.user)
        return _no_store(Response(EndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED))

    @extend_schema(request=None, responses={200: EndpointWithSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new secret (the old one stops signing at once); shown only in this answer."""
        endpoint = self.get_object()
        endpoint.rotate_secret()
        return _no_store(Response(EndpointWithSecretSerializer(endpoint).data))

    @extend_schema(request=None, responses={201: DeliverySerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def ping(self, request, pk=None):
        """Send a ``ping`` delivery now, to check the receiver (and its signature check)."""
        endpoint = self.get_object()
        if not endpoint.active:
            return Response({"detail": "The endpoint is not active."}, status=status.HTTP_409_CONFLICT)
        return Response(
            DeliverySerializer(deliveries.ping(endpoint, request.user)).data, status=status.HTTP_201_CREATED
        )


def event_names() -> list[str]:
    return [name for name, _ in event_choices()] + [deliveries.PING]


@extend_schema(
    parameters=[
        OpenApiParameter("endpoint", int, description="only this endpoint's deliveries"),
        OpenApiParameter("status", str, enum=list(Delivery.Status.values)),
        OpenApiParameter("event", str, enum=event_names()),
    ]
)
class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The delivery log: what was sent where, with the last answer; staff may redeliver."""

    permission_classes = [IsStaff]
    serializer_class = DeliverySerializer

    def get_queryset(self):
        found = Delivery.objects.select_related("endpoint", "requested_by")
        params = self.request.query_params
        choices = {"status": list(Delivery.Status.values), "event": event_names()}
        for name, values in choices.items():
            value = params.get(name)
            if value:
                if value not in values:
                    raise serializers.ValidationError({name: f"Must be one of {', '.join(values)}."})
                found = found.filter(**{name: value})
        if params.get("endpoint"):
            value = params["endpoint"]
            if not value.isdigit() or not 0 < int(value) < 2**63:
                raise serializers.ValidationError({"endpoint": "Must be an endpoint id."})
            found = found.filter(endpoint_id=int(value))
        return found

    @extend_schema(request=None, responses={201: DeliverySerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Send the same event again to the same endpoint, as a new delivery."""
        original = self.get_object()
        if not original.endpoint.active:
            return Response({"detail": "The endpoint is not active."}, status=status.HTTP_409_CONFLICT)
        new = deliveries.redeliver(original, request.user)
        return Response(DeliverySerializer(new).data, status=status.HTTP_201_CREATED)
