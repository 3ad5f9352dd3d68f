"""Partner API for service requests (SPEC §5.1): recipients register client devices, request
service and follow the plan; providers see the requests broadcast to them and answer with
availability messages and, in a negotiation, lower quotes. Views parse input, call one service
and render the result; a refusal is a problem with the service's stable code.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from marketplace.api.authentication import ApiKeyPrincipal
from marketplace.api.idempotency import IdempotentCreateMixin, idempotent_create
from marketplace.api.organization import api_organization
from marketplace.api.permissions import ScopedAccess
from marketplace.api.problems import Problem
from marketplace.api.schema import IDEMPOTENCY_PARAMETERS, ApiAutoSchema, problem_responses
from marketplace.api.strict import StrictJsonTypes
from marketplace.models import ClientDevice
from marketplace.money import CURRENCY_CHOICES
from marketplace.selectors import client_devices_of
from marketplace.services import client_device_register, client_device_remove
from providers.selectors import provider_of
from segmentation.api.serializers import ID_MAX, JobDetailSerializer, absolute_url
from segmentation.api.views import ActsForOrganization, too_large_problem
from segmentation.models import (
    AvailabilityMessage,
    Plan,
    ServiceRequest,
    ServiceRequestStatus,
)
from segmentation.processing import SERVICES as PROCESSING_SERVICES
from segmentation.selectors import (
    availability_of,
    negotiation_standing,
    profiles_of,
    service_request_visible,
    service_requests_of,
    service_requests_received,
)
from segmentation.service_requests import (
    PathOffer,
    RequestRefused,
    RequestSpec,
    availability_submit,
    negotiation_open,
    plan_accept,
    plan_current,
    quote_submit,
    service_request_cancel,
    service_request_create,
)
from segmentation.uploads import upload_announced_too_large, uploaded_chunks

# The largest amounts and volumes the database stores (a signed 64-bit integer), and rates
# (Mbit/s) in a PositiveIntegerField.
INTEGER_MAX = 2**63 - 1
RATE_MAX = 2**31 - 1

# HTTP status of each stable code of a refusal; the others are 422.
REFUSAL_STATUS = {
    "not_a_recipient": status.HTTP_403_FORBIDDEN,
    "not_a_provider": status.HTTP_403_FORBIDDEN,
    "provider_not_verified": status.HTTP_403_FORBIDDEN,
    "not_invited": status.HTTP_403_FORBIDDEN,
    "profile_not_found": status.HTTP_404_NOT_FOUND,
    "device_not_found": status.HTTP_404_NOT_FOUND,
    "not_asked": status.HTTP_404_NOT_FOUND,
    "request_closed": status.HTTP_409_CONFLICT,
    "request_expired": status.HTTP_409_CONFLICT,
    "request_accepted": status.HTTP_409_CONFLICT,
    "duplicate_message": status.HTTP_409_CONFLICT,
    "negotiation_open": status.HTTP_409_CONFLICT,
    "no_answers": status.HTTP_409_CONFLICT,
    "no_negotiation": status.HTTP_409_CONFLICT,
    "no_plan": status.HTTP_409_CONFLICT,
    "plan_outdated": status.HTTP_409_CONFLICT,
    "plan_infeasible": status.HTTP_409_CONFLICT,
    "provider_unavailable": status.HTTP_409_CONFLICT,
    "negotiation_pending": status.HTTP_409_CONFLICT,
    "upload_too_large": status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
}


def refusal_problem(refusal: RequestRefused) -> Problem:
    return Problem(
        refusal.message,
        code=refusal.code,
        status_code=REFUSAL_STATUS.get(refusal.code, status.HTTP_422_UNPROCESSABLE_ENTITY),
    )


def _provider_brief(provider) -> dict:
    return {"id": provider.pk, "name": provider.legal_name}


# --- client devices ------------------------------------------------------------------------------


class ClientDeviceSerializer(StrictJsonTypes, serializers.ModelSerializer):
    """A client device of the acting recipient."""

    url = serializers.SerializerMethodField()
    phone_number = serializers.CharField(
        max_length=20,
        required=False,
        allow_blank=True,
        default="",
        # what client_device_register takes: E.164 once the spaces are dropped
        validators=[
            RegexValidator(
                r"^\s*\+ *[1-9](?: *[0-9]){1,14}\s*$",
                message="Enter the number in E.164 form: a plus, the country code, then the "
                "number, digits only (at most 15), for example +14155550123.",
            )
        ],
        help_text="E.164: a plus, the country code, then the number (at most 15 digits), e.g. "
        "`+14155550123`; spaces are dropped; empty for none.",
    )

    class Meta:
        model = ClientDevice
        fields = ["id", "url", "name", "identifier", "phone_number", "created_at"]
        read_only_fields = ["created_at"]
        # uniqueness is the service's to check (a clear message, per field)
        validators = []

    def get_url(self, device) -> str:
        return absolute_url(self.context.get("request"), "client-device-detail", device.pk)


@extend_schema_view(
    list=extend_schema(summary="Your client devices"),
    retrieve=extend_schema(summary="One of your client devices"),
    create=extend_schema(
        summary="Register a client device",
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: ClientDeviceSerializer}
        | problem_responses(400, 401, 403, s400="`validation_failed` (see `errors`)."),
    ),
    destroy=extend_schema(summary="Forget a client device"),
)
class ClientDeviceViewSet(
    IdempotentCreateMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The acting organization's client devices; another's is a 404."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess, ActsForOrganization]
    serializer_class = ClientDeviceSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ClientDevice.objects.none()
        return client_devices_of(organization=api_organization(self.request))

    def get_object(self) -> ClientDevice:
        try:
            device = self.get_queryset().filter(pk=int(self.kwargs["pk"])).first()
        except ValueError:
            device = None
        if device is None:
            raise Problem(
                "Your organization has no client device with this id.",
                code="device_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return device

    def perform_create(self, serializer):
        values = serializer.validated_data
        try:
            with transaction.atomic():
                serializer.instance = client_device_register(
                    organization=api_organization(self.request),
                    name=values["name"],
                    identifier=values["identifier"],
                    phone_number=values.get("phone_number", ""),
                )
        except DjangoValidationError as error:
            if hasattr(error, "error_dict"):
                raise serializers.ValidationError(error.message_dict) from None
            raise Problem(
                " ".join(error.messages), code="not_a_recipient", status_code=403
            ) from None
        except IntegrityError:
            raise serializers.ValidationError(
                {"identifier": ["Your organization already has a device with this identifier."]}
            ) from None

    def perform_destroy(self, instance):
        try:
            client_device_remove(device=instance)
        except DjangoValidationError as error:
            raise Problem(
                " ".join(error.messages), code="device_in_use", status_code=status.HTTP_409_CONFLICT
            ) from None


# --- service requests ----------------------------------------------------------------------------


class ServiceRequestCreateSerializer(StrictJsonTypes, serializers.Serializer):
    profile = serializers.IntegerField(
        min_value=1, max_value=ID_MAX, help_text="One of your segmentation profiles."
    )
    data_bytes = serializers.IntegerField(
        min_value=1, max_value=INTEGER_MAX, help_text="The data volume, in bytes."
    )
    deadline = serializers.DateTimeField(help_text="When all the data must be carried (UTC).")
    services = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(PROCESSING_SERVICES)),
        required=False,
        allow_null=True,
        default=None,
        help_text="Processing services the providers must offer; default: those of the "
        "profile's pipeline.",
    )
    device = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        allow_null=True,
        default=None,
        help_text="The client device the request comes from.",
    )
    price_limit_minor = serializers.IntegerField(
        min_value=0, max_value=INTEGER_MAX, required=False, allow_null=True, default=None
    )
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES, default="USD")
    sla_min_rate_mbps = serializers.IntegerField(
        min_value=1,
        max_value=RATE_MAX,
        required=False,
        allow_null=True,
        default=None,
        help_text="An SLA: the plan must carry the data at least this fast on average.",
    )
    negotiate = serializers.BooleanField(required=False, default=False)


class ServiceRequestSerializer(serializers.ModelSerializer):
    """A service request as its maker sees it, or as a provider it was sent to sees it (then
    without the maker's profile and with its own answer and the negotiation's best price)."""

    url = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()
    negotiation = serializers.SerializerMethodField()
    yours = serializers.SerializerMethodField()

    class Meta:
        model = ServiceRequest
        fields = [
            "id",
            "url",
            "status",
            "data_bytes",
            "deadline",
            "services",
            "price_limit_minor",
            "currency",
            "sla_min_rate_mbps",
            "negotiate",
            "profile",
            "device",
            "created_at",
            "accepted_at",
            "negotiation",
            "yours",
            "links",
        ]

    def _is_maker(self, service_request) -> bool:
        organization = self.context.get("organization")
        return organization is not None and service_request.organization_id == organization.pk

    def to_representation(self, service_request):
        data = super().to_representation(service_request)
        if not self._is_maker(service_request):
            data.pop("profile")
            data.pop("device")
        return data

    def get_url(self, service_request) -> str:
        return absolute_url(
            self.context.get("request"), "service-request-detail", service_request.pk
        )

    def get_links(self, service_request) -> dict:
        request = self.context.get("request")
        links = {
            "availability": absolute_url(
                request, "service-request-availability", service_request.pk
            )
        }
        if self._is_maker(service_request):
            links["plan"] = absolute_url(request, "service-request-plan", service_request.pk)
            job = service_request.plans.filter(jobs__isnull=False).values("jobs").first()
            if job:
                links["job"] = absolute_url(request, "job-detail", job["jobs"])
        return links

    def get_negotiation(self, service_request) -> dict | None:
        negotiation = service_request.negotiations.order_by("-opened_at", "-pk").first()
        if negotiation is None:
            return None
        standing = negotiation_standing(negotiation)
        return {
            "id": negotiation.pk,
            "status": negotiation.status,
            "closes_at": negotiation.closes_at,
            "quotes": standing["providers"],
            # the reverse auction's standing: the lowest price quoted so far (no names)
            "lowest_quote_minor": standing["lowest"],
        }

    def get_yours(self, service_request) -> dict | None:
        """A provider's own answer: its latest message and whether it still holds."""
        organization = self.context.get("organization")
        if organization is None or self._is_maker(service_request):
            return None
        message = (
            AvailabilityMessage.objects.filter(
                service_request=service_request, provider__organization=organization
            )
            .order_by("-created_at", "-pk")
            .first()
        )
        if message is None:
            return {"message": None}
        return {
            "message": message.pk,
            "valid_until": message.valid_until,
            "valid": message.valid_until > timezone.now(),
        }


class AvailabilityPathSerializer(serializers.Serializer):
    path = serializers.IntegerField(min_value=1, max_value=ID_MAX, help_text="Your path's id.")
    bandwidth_mbps = serializers.IntegerField(
        min_value=1,
        max_value=RATE_MAX,
        help_text="Bandwidth available now along it (Mbit/s), at most its capacity.",
    )


class AvailabilityCreateSerializer(StrictJsonTypes, serializers.Serializer):
    paths = AvailabilityPathSerializer(many=True, allow_empty=False)
    price_per_gb_minor = serializers.IntegerField(min_value=0, max_value=INTEGER_MAX)
    currency = serializers.ChoiceField(choices=CURRENCY_CHOICES)
    valid_until = serializers.DateTimeField()


class AvailabilityMessageSerializer(serializers.ModelSerializer):
    provider = serializers.SerializerMethodField()
    paths = serializers.SerializerMethodField()
    valid = serializers.SerializerMethodField()

    class Meta:
        model = AvailabilityMessage
        fields = [
            "id",
            "provider",
            "paths",
            "price_per_gb_minor",
            "currency",
            "valid_until",
            "valid",
            "created_at",
        ]

    def get_provider(self, message) -> dict:
        return _provider_brief(message.provider)

    def get_paths(self, message) -> list[dict]:
        return [
            {
                "path": offer.path_id,
                "name": offer.path.name,
                "bandwidth_mbps": offer.bandwidth_mbps,
                "capacity_mbps": offer.path.capacity_mbps,
            }
            for offer in message.paths.all()
        ]

    def get_valid(self, message) -> bool:
        return message.valid_until > timezone.now()


class QuoteCreateSerializer(StrictJsonTypes, serializers.Serializer):
    price_per_gb_minor = serializers.IntegerField(
        min_value=0, max_value=INTEGER_MAX, help_text="Below your current price for this request."
    )


class NegotiationCreateSerializer(StrictJsonTypes, serializers.Serializer):
    closes_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="When quotes stop (before the request's deadline); default: in "
        "NEGOTIATION_SECONDS.",
    )


class PlanSerializer(serializers.ModelSerializer):
    """A plan: the share of each provider and path (one segment each), predicted time and
    cost, the assemblage point, and the reasons for every choice; or why it is infeasible."""

    lines = serializers.SerializerMethodField()
    assemblage_provider = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = [
            "id",
            "feasible",
            "volume_bytes",
            "makespan_seconds",
            "total_cost_minor",
            "currency",
            "cost_weight",
            "assemblage_provider",
            "binding",
            "failures",
            "reasons",
            "exclusions",
            "fastest_seconds",
            "cheapest_cost_minor",
            "messages_used",
            "valid_until",
            "computed_ms",
            "negotiation",
            "created_at",
            "lines",
        ]

    def get_assemblage_provider(self, plan) -> dict | None:
        if plan.assemblage_provider_id is None:
            return None
        return _provider_brief(plan.assemblage_provider)

    def get_lines(self, plan) -> list[dict]:
        return [
            {
                "segment": line.position,
                "provider": _provider_brief(line.provider),
                "path": {"id": line.path_id, "name": line.path.name},
                "message": line.message_id,
                "bandwidth_mbps": line.bandwidth_mbps,
                "price_per_gb_minor": line.price_per_gb_minor,
                "fraction": line.fraction,
                "bytes": line.bytes,
                "seconds": line.seconds,
                "cost_minor": line.cost_minor,
                "full_bandwidth": line.full_bandwidth,
                "reason": line.reason,
            }
            for line in plan.lines.select_related("provider", "path")
        ]


class AcceptSerializer(StrictJsonTypes, serializers.Serializer):
    file = serializers.FileField(help_text="The capture to carry (pcap or pcapng).")
    plan = serializers.IntegerField(
        min_value=1,
        max_value=ID_MAX,
        required=False,
        allow_null=True,
        default=None,
        help_text="The plan you accept (the `id` of the plan you looked at): refused "
        "(409 `plan_outdated`) when another plan has replaced it.",
    )


REQUEST_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The request's id.")
REQUEST_404 = "`service_request_not_found`: no request of yours, nor sent to you, has this id."


@extend_schema_view(
    list=extend_schema(
        summary="Service requests",
        description="A recipient's own requests, and the requests broadcast to a provider "
        "(`?role=mine` or `?role=received` for one side; `?status=open`).",
        parameters=[
            OpenApiParameter("role", str, enum=["mine", "received"]),
            OpenApiParameter("status", str, enum=ServiceRequestStatus.values),
        ],
    ),
    retrieve=extend_schema(summary="One service request", parameters=[REQUEST_ID]),
    create=extend_schema(
        summary="Request service",
        description="Record a request and broadcast it to every eligible provider (verified, "
        "offering segmentation and the services, not blocked by the profile): signed "
        "webhooks to their endpoints, their console and this API. Refused (422 "
        "`no_eligible_provider`) when nobody qualifies.",
        request=ServiceRequestCreateSerializer,
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: ServiceRequestSerializer}
        | problem_responses(
            400,
            401,
            403,
            404,
            422,
            s403="`not_a_recipient`.",
            s404="`profile_not_found` or `device_not_found`.",
            s422="`deadline_past`, `invalid_services`, `no_eligible_provider`, ...",
        ),
    ),
)
class ServiceRequestViewSet(
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    """Requests the acting organization made or received; any other is a 404."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess, ActsForOrganization]
    serializer_class = ServiceRequestSerializer

    @property
    def organization(self):
        return api_organization(self.request)

    def get_serializer_context(self):
        return super().get_serializer_context() | {"organization": self.organization}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ServiceRequest.objects.none()
        role = self.request.query_params.get("role")
        organization = self.organization
        if role == "mine":
            queryset = service_requests_of(organization)
        elif role == "received":
            queryset = service_requests_received(organization)
        elif role in (None, ""):
            queryset = service_requests_of(organization) | service_requests_received(organization)
        else:
            raise Problem(
                "role is `mine` or `received`.", code="validation_failed", status_code=400
            )
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in ServiceRequestStatus.values:
                raise Problem(
                    f"status is one of {', '.join(ServiceRequestStatus.values)}.",
                    code="validation_failed",
                    status_code=400,
                )
            queryset = queryset.filter(status=wanted)
        return queryset.distinct().order_by("-created_at", "-pk")

    def get_object(self) -> ServiceRequest:
        service_request = service_request_visible(self.organization, self.kwargs["pk"])
        if service_request is None:
            raise Problem(
                "No service request of yours, nor sent to you, has this id.",
                code="service_request_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return service_request

    def _own(self) -> ServiceRequest:
        service_request = self.get_object()
        if service_request.organization_id != self.organization.pk:
            raise Problem(
                "Only the request's maker may do this.",
                code="not_the_maker",
                status_code=status.HTTP_403_FORBIDDEN,
            )
        return service_request

    def _provider(self):
        provider = provider_of(organization=self.organization)
        if provider is None:
            raise Problem(
                "The organization you act for is no provider.",
                code="not_a_provider",
                status_code=status.HTTP_403_FORBIDDEN,
            )
        return provider

    def _detail(self, service_request, **kwargs) -> Response:
        return Response(
            ServiceRequestSerializer(service_request, context=self.get_serializer_context()).data,
            **kwargs,
        )

    def retrieve(self, request, *args, **kwargs):
        return self._detail(self.get_object())

    def create(self, request, *args, **kwargs):
        return idempotent_create(request, create=lambda: self._create(request))

    def _create(self, request) -> Response:
        form = ServiceRequestCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        organization = self.organization
        profile = profiles_of(organization).filter(pk=values["profile"]).first()
        if profile is None:
            raise Problem(
                f"Your organization has no segmentation profile {values['profile']}.",
                code="profile_not_found",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        device = None
        if values["device"] is not None:
            device = client_devices_of(organization=organization).filter(pk=values["device"])
            device = device.first()
            if device is None:
                raise Problem(
                    f"Your organization has no client device {values['device']}.",
                    code="device_not_found",
                    status_code=status.HTTP_404_NOT_FOUND,
                )
        spec = RequestSpec(
            profile=profile,
            data_bytes=values["data_bytes"],
            deadline=values["deadline"],
            services=values["services"],
            device=device,
            price_limit_minor=values["price_limit_minor"],
            currency=values["currency"],
            sla_min_rate_mbps=values["sla_min_rate_mbps"],
            negotiate=values["negotiate"],
        )
        try:
            with transaction.atomic():
                service_request = service_request_create(
                    organization=organization, user=self.acting_user(), spec=spec
                )
        except RequestRefused as refusal:
            raise refusal_problem(refusal) from None
        return self._detail(service_request, status=status.HTTP_201_CREATED)

    def acting_user(self):
        """Who acts: the signed-in person, or the member who created the API key."""
        principal = self.request.user
        if isinstance(principal, ApiKeyPrincipal):
            return principal.api_key.created_by
        return principal

    @extend_schema(
        summary="Availability messages",
        description="GET: the request's messages (its maker sees all, a provider its own). "
        "POST (a provider the request was sent to): the routing paths immediately available, "
        "the bandwidth available along each (at most the path's capacity), a price per GB in "
        "the request's currency, and until when it holds. One valid message per provider: a "
        "lower price goes through the negotiation.",
        parameters=[REQUEST_ID, *IDEMPOTENCY_PARAMETERS],
        request=AvailabilityCreateSerializer,
        responses={
            200: AvailabilityMessageSerializer(many=True),
            201: AvailabilityMessageSerializer,
        }
        | problem_responses(
            400,
            401,
            403,
            404,
            409,
            422,
            s403="`not_a_provider`, `provider_not_verified`.",
            s404=REQUEST_404,
            s409="`duplicate_message` (your message still holds), `request_closed`, "
            "`request_expired`.",
            s422="`path_not_yours`, `bandwidth_above_capacity`, `duplicate_path`, "
            "`message_expired`, `currency_mismatch`, `no_paths`.",
        ),
    )
    @action(detail=True, methods=["get", "post"], url_path="availability")
    def availability(self, request, pk=None):
        service_request = self.get_object()
        if request.method == "GET":
            messages = availability_of(service_request, self.organization)
            return Response(AvailabilityMessageSerializer(messages, many=True).data)
        return idempotent_create(request, create=lambda: self._answer(request, service_request))

    def _answer(self, request, service_request) -> Response:
        provider = self._provider()
        form = AvailabilityCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = form.validated_data
        try:
            with transaction.atomic():
                message = availability_submit(
                    provider=provider,
                    service_request=service_request,
                    paths=[
                        PathOffer(path_id=p["path"], bandwidth_mbps=p["bandwidth_mbps"])
                        for p in values["paths"]
                    ],
                    price_per_gb_minor=values["price_per_gb_minor"],
                    currency=values["currency"],
                    valid_until=values["valid_until"],
                )
        except RequestRefused as refusal:
            raise refusal_problem(refusal) from None
        message = availability_of(service_request, self.organization).get(pk=message.pk)
        return Response(AvailabilityMessageSerializer(message).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="The plan",
        description="The request's current plan, computed by the planner's linear program "
        "(HiGHS) over the availability messages valid now: each provider and path's share, "
        "as segments, with predicted time and cost, where the results are assembled, and the "
        "reason for every choice; or, when no plan meets the limits, which constraint fails. "
        "Planned again whenever a message arrives or expires, or a quote comes in. 404 "
        "`no_plan` while no provider has answered.",
        parameters=[REQUEST_ID],
        responses={200: PlanSerializer}
        | problem_responses(401, 403, 404, s403="`not_the_maker`.", s404=REQUEST_404),
    )
    @action(detail=True, methods=["get"], url_path="plan")
    def plan(self, request, pk=None):
        service_request = self._own()
        try:
            plan = plan_current(service_request=service_request)
        except RequestRefused as refusal:
            raise refusal_problem(refusal) from None
        if plan is None:
            raise Problem(
                "No plan yet: no provider has answered.",
                code="no_plan",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        return Response(PlanSerializer(plan).data)

    @extend_schema(
        summary="Negotiate",
        description="Ask the providers whose messages are valid for better quotes until "
        "`closes_at`: a reverse auction among them (equal prices: the earlier quote ranks "
        "first). When it closes, the request is planned again with the quotes.",
        parameters=[REQUEST_ID, *IDEMPOTENCY_PARAMETERS],
        request=NegotiationCreateSerializer,
        responses={201: ServiceRequestSerializer}
        | problem_responses(400, 401, 403, 404, 409, 422, s404=REQUEST_404),
    )
    @action(detail=True, methods=["post"], url_path="negotiation")
    def negotiation(self, request, pk=None):
        service_request = self._own()

        def create():
            form = NegotiationCreateSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            try:
                with transaction.atomic():
                    negotiation_open(
                        service_request=service_request,
                        closes_at=form.validated_data["closes_at"],
                    )
            except RequestRefused as refusal:
                raise refusal_problem(refusal) from None
            return self._detail(service_request, status=status.HTTP_201_CREATED)

        return idempotent_create(request, create=create)

    @extend_schema(
        summary="Quote a lower price",
        description="In the request's open negotiation, a provider that had answered quotes "
        "a price per GB below its current one.",
        parameters=[REQUEST_ID, *IDEMPOTENCY_PARAMETERS],
        request=QuoteCreateSerializer,
        responses={201: ServiceRequestSerializer}
        | problem_responses(400, 401, 403, 404, 409, 422, s404=REQUEST_404),
    )
    @action(detail=True, methods=["post"], url_path="quotes")
    def quotes(self, request, pk=None):
        service_request = self.get_object()

        def create():
            provider = self._provider()
            form = QuoteCreateSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            try:
                with transaction.atomic():
                    quote_submit(
                        provider=provider,
                        service_request=service_request,
                        price_per_gb_minor=form.validated_data["price_per_gb_minor"],
                    )
            except RequestRefused as refusal:
                raise refusal_problem(refusal) from None
            return self._detail(service_request, status=status.HTTP_201_CREATED)

        return idempotent_create(request, create=create)

    @extend_schema(
        summary="Accept the plan",
        description="Upload the capture to carry: the request is closed and a job starts, "
        "its segments dispersed over the plan's providers in the plan's proportions. Refused "
        "when the plan is out of date (accept the new one) or infeasible.",
        parameters=[REQUEST_ID, *IDEMPOTENCY_PARAMETERS],
        request={"multipart/form-data": AcceptSerializer},
        responses={201: JobDetailSerializer}
        | problem_responses(400, 401, 403, 404, 409, 413, 422, s404=REQUEST_404),
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="accept",
        parser_classes=[MultiPartParser, FormParser],
    )
    def accept(self, request, pk=None):
        length = upload_announced_too_large(request)
        if length is not None:
            raise too_large_problem(length)
        service_request = self._own()
        request.data  # noqa: B018 - parsed before the Idempotency-Key's fingerprint

        def create():
            form = AcceptSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            upload = form.validated_data["file"]
            try:
                job = plan_accept(
                    service_request=service_request,
                    user=self.acting_user(),
                    chunks=uploaded_chunks(upload),
                    size=upload.size,
                    input_name=upload.name,
                    plan_id=form.validated_data["plan"],
                )
            except RequestRefused as refusal:
                raise refusal_problem(refusal) from None
            return Response(
                JobDetailSerializer(job, context=self.get_serializer_context()).data,
                status=status.HTTP_201_CREATED,
                headers={"Location": reverse("job-detail", args=[job.pk])},
            )

        return idempotent_create(request, create=create)

    @extend_schema(
        summary="Cancel the request",
        parameters=[REQUEST_ID],
        request=None,
        responses={200: ServiceRequestSerializer}
        | problem_responses(401, 403, 404, 409, s404=REQUEST_404),
    )
    @action(detail=True, methods=["post"], url_path="cancel", parser_classes=[JSONParser])
    def cancel(self, request, pk=None):
        service_request = self._own()
        try:
            service_request = service_request_cancel(service_request=service_request)
        except RequestRefused as refusal:
            raise refusal_problem(refusal) from None
        return self._detail(service_request)
