"""Partner API for providers: the public directory and a provider's own networks, routing
paths and offers. Views parse input, call one service and render the result."""

from django.db import transaction
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, viewsets
from rest_framework.permissions import SAFE_METHODS, BasePermission

from marketplace.api.idempotency import IdempotentCreateMixin
from marketplace.api.organization import api_organization
from marketplace.api.permissions import ScopedAccess
from marketplace.api.problems import Problem
from marketplace.api.schema import (
    IDEMPOTENCY_PARAMETERS,
    ApiAutoSchema,
    PublicReadAutoSchema,
    problem_responses,
)
from marketplace.selectors import membership_get
from providers.api.serializers import (
    NetworkSerializer,
    OfferSerializer,
    ProviderSerializer,
    RoutingPathSerializer,
)
from providers.models import Network, Offer, ProviderProfile, RoutingPath
from providers.selectors import (
    networks_of,
    offers_of,
    provider_of,
    providers_public,
    routing_paths_of,
)
from providers.services import (
    NetworkInput,
    NetworkInUse,
    OfferInput,
    RoutingPathInput,
    RoutingPathInUse,
    network_create,
    network_delete,
    network_update,
    offer_create,
    offer_delete,
    offer_update,
    routing_path_create,
    routing_path_delete,
    routing_path_update,
)


class NotAProvider(exceptions.PermissionDenied):
    default_code = "not_a_provider"
    default_detail = (
        "The organization you act for is not registered as a provider; apply at /providers/apply/."
    )


class ManagerRoleRequired(exceptions.PermissionDenied):
    default_code = "manager_role_required"
    default_detail = "Only an owner or admin of the organization may change its catalogue."


class ActsForProvider(BasePermission):
    """The caller acts for a provider organization. Signed-in people change its catalogue only
    as owner or admin, as in the provider console; an API key's scope already says whether it
    may write."""

    def has_permission(self, request, view):
        provider = view.acting_provider
        if provider is None:
            raise NotAProvider()
        if request.method not in SAFE_METHODS and request.auth is None:
            membership = membership_get(user=request.user, organization=provider.organization)
            if membership is None or not membership.can_manage:
                raise ManagerRoleRequired()
        return True


def provider_resource_schema(*, serializer, noun: str, destroy_problems=(404,), **destroy_text):
    """Schema of a provider's own collection: every operation with its problem responses."""
    private = (401, 403)
    return extend_schema_view(
        list=extend_schema(
            summary=f"Your {noun}s",
            responses={200: serializer(many=True)} | problem_responses(*private),
        ),
        retrieve=extend_schema(
            summary=f"One of your {noun}s",
            responses={200: serializer} | problem_responses(*private, 404),
        ),
        create=extend_schema(
            summary=f"Add a {noun}",
            parameters=IDEMPOTENCY_PARAMETERS,
            responses={201: serializer}
            | problem_responses(
                400,
                *private,
                409,
                422,
                s409="`idempotency_in_progress`: the first request with this key is still running.",
            ),
        ),
        update=extend_schema(
            summary=f"Replace a {noun}",
            responses={200: serializer} | problem_responses(400, *private, 404),
        ),
        partial_update=extend_schema(
            summary=f"Change some fields of a {noun}",
            responses={200: serializer} | problem_responses(400, *private, 404),
        ),
        destroy=extend_schema(
            summary=f"Delete a {noun}",
            responses={204: OpenApiResponse(description="Deleted.")}
            | problem_responses(*private, *destroy_problems, **destroy_text),
        ),
    )


class ProviderOwnedViewSet(IdempotentCreateMixin, viewsets.ModelViewSet):
    """Base of a provider's own collections: only the acting provider's objects exist here,
    so another provider's id is a 404 that does not confirm the object exists."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess, ActsForProvider]

    @property
    def acting_provider(self) -> ProviderProfile | None:
        if not hasattr(self, "_acting_provider"):
            self._acting_provider = provider_of(organization=api_organization(self.request))
        return self._acting_provider

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["provider"] = self.acting_provider
        return context

    def merged_input(self, serializer, *fields: str) -> dict:
        """Validated input completed with the instance's current values (for PATCH)."""
        values = {field: getattr(serializer.instance, field) for field in fields}
        values.update(
            {f: serializer.validated_data[f] for f in fields if f in serializer.validated_data}
        )
        return values


@provider_resource_schema(
    serializer=NetworkSerializer,
    noun="network",
    destroy_problems=(404, 409),
    s409="`network_in_use`: a routing path still has the network as a hop.",
)
class NetworkViewSet(ProviderOwnedViewSet):
    serializer_class = NetworkSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Network.objects.none()
        return networks_of(provider=self.acting_provider)

    def perform_create(self, serializer):
        serializer.instance = network_create(
            provider=self.acting_provider, data=NetworkInput(**serializer.validated_data)
        )

    def perform_update(self, serializer):
        values = self.merged_input(serializer, "name", "technology", "region")
        serializer.instance = network_update(
            network=serializer.instance, data=NetworkInput(**values)
        )

    def perform_destroy(self, instance):
        try:
            network_delete(network=instance)
        except NetworkInUse as error:
            raise Problem(
                str(error),
                code="network_in_use",
                status_code=409,
                extra={"routing_paths": error.path_names},
            ) from None


@provider_resource_schema(serializer=RoutingPathSerializer, noun="routing path")
class RoutingPathViewSet(ProviderOwnedViewSet):
    serializer_class = RoutingPathSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return RoutingPath.objects.none()
        return routing_paths_of(provider=self.acting_provider)

    @staticmethod
    def path_input(values: dict) -> RoutingPathInput:
        # The API names hops by network id; the services take names, unique per provider.
        return RoutingPathInput(
            name=values["name"],
            capacity_mbps=values["capacity_mbps"],
            hops=[network.name for network in values["hops"]],
        )

    def refreshed(self, path: RoutingPath) -> RoutingPath:
        return self.get_queryset().get(pk=path.pk)

    def perform_create(self, serializer):
        path = routing_path_create(
            provider=self.acting_provider, data=self.path_input(serializer.validated_data)
        )
        serializer.instance = self.refreshed(path)

    def perform_update(self, serializer):
        values = self.merged_input(serializer, "name", "capacity_mbps")
        values["hops"] = serializer.validated_data.get(
            "hops", [hop.network for hop in serializer.instance.hops.all()]
        )
        path = routing_path_update(path=serializer.instance, data=self.path_input(values))
        serializer.instance = self.refreshed(path)

    def perform_destroy(self, instance):
        try:
            routing_path_delete(path=instance)
        except RoutingPathInUse as error:
            raise Problem(str(error), code="routing_path_in_use", status_code=409) from None


@provider_resource_schema(serializer=OfferSerializer, noun="offer")
class OfferViewSet(ProviderOwnedViewSet):
    serializer_class = OfferSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Offer.objects.none()
        return offers_of(provider=self.acting_provider)

    offer_fields = ("service", "price_per_gb_minor", "price_per_minute_minor", "currency")

    def perform_create(self, serializer):
        values = dict(serializer.validated_data)
        is_active = values.pop("is_active")
        data = OfferInput(**values)
        with transaction.atomic():
            offer = offer_create(provider=self.acting_provider, data=data)
            if not is_active:
                offer = offer_update(offer=offer, data=data, is_active=False)
        serializer.instance = offer

    def perform_update(self, serializer):
        values = self.merged_input(serializer, *self.offer_fields, "is_active")
        is_active = values.pop("is_active")
        serializer.instance = offer_update(
            offer=serializer.instance, data=OfferInput(**values), is_active=is_active
        )

    def perform_destroy(self, instance):
        offer_delete(offer=instance)


@extend_schema_view(
    list=extend_schema(
        summary="Verified providers",
        responses={200: ProviderSerializer(many=True)} | problem_responses(401),
    ),
    retrieve=extend_schema(
        summary="One verified provider",
        parameters=[
            OpenApiParameter(
                "slug", str, OpenApiParameter.PATH, description="The provider's organization slug."
            )
        ],
        responses={200: ProviderSerializer} | problem_responses(401, 404),
    ),
)
class ProviderViewSet(viewsets.ReadOnlyModelViewSet):
    """The public directory: verified providers, looked up by their organization's slug."""

    public_read = True
    schema = PublicReadAutoSchema()
    serializer_class = ProviderSerializer
    lookup_field = "organization__slug"
    lookup_url_kwarg = "slug"

    def get_queryset(self):
        return providers_public()
