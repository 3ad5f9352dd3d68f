"""Partner API for buying groups (SPEC §4.4): groups, their members and pledges, invitations,
providers' direct offers to groups, and the seats of leases. Views parse input, call one
service (auctions.groups, auctions.seats) and render the result; a refusal is a problem with
the service's stable code.

Who acts: everything here is done by a person, as in the browser. A signed-in browser acts as
its user; an API key acts as the member who created it, as for bids (once that person has left
the key's organization the key gets `api_key_creator_left`). A caller sees the groups that
person is an active member of (or belongs to the group's organization) — through an API key,
only those the key's organization takes part in (paying a pledge, or with one of its devices
as a member) — and the group whose organization's API key it uses; every other group,
member, invitation, offer, lease and seat is a 404, as if it did not exist. Objects named in
a request body (a paying organization, a client device, a group, a block) are looked up among
those the caller may name, so a refusal never tells anything about another organization's
objects.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator, validate_email
from django.db.models import Count, Model, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from auctions.api.serializers import AuctionBlockSerializer
from auctions.api.views import NOT_A_PROVIDER, ActingProviderMixin
from auctions.groups import (
    GroupRefused,
    OfferStanding,
    bid_limit_of,
    group_create,
    group_of,
    group_offer_accept,
    group_offer_create,
    group_offer_withdraw,
    groups_of,
    invitation_accept,
    invitation_decline,
    invitations_for,
    is_group_admin,
    member_add_phone,
    member_admin_set,
    member_invite_device,
    member_invite_user,
    member_remove,
    members_of,
    offer_standing,
    offers_of_group,
    pledge_update,
)
from auctions.models import (
    BuyingGroup,
    GroupMember,
    GroupOffer,
    GroupOfferStatus,
    Lease,
    LeaseSeat,
    MemberKind,
    MemberRole,
    MemberStatus,
    ServiceBlock,
)
from auctions.seats import (
    seat_assign,
    seat_holder_exists,
    seat_release,
    seat_usage,
    seats_active,
    seats_manageable,
)
from marketplace.api.authentication import ApiKeyPrincipal
from marketplace.api.idempotency import idempotent
from marketplace.api.organization import api_organization
from marketplace.api.permissions import ScopedAccess
from marketplace.api.problems import Problem
from marketplace.api.schema import (
    IDEMPOTENCY_PARAMETERS,
    ApiAutoSchema,
    problem_example,
    problem_responses,
)
from marketplace.api.strict import StrictJsonTypes
from marketplace.models import MANAGING_ROLES, ClientDevice, Membership, Organization, User
from marketplace.money import CURRENCY_CHOICES
from marketplace.selectors import membership_get
from providers.api.serializers import MINOR_UNITS_MAX, StrictIntegerField
from providers.api.views import ActsForProvider
from segmentation.api.serializers import ID_MAX

# HTTP status of each stable code of auctions.groups and auctions.seats; the others are 422
# (a rule refuses the values given: invalid_pledge, shares_over_100, invalid_phone_number, ...).
REFUSAL_STATUS = {
    "unknown_device": status.HTTP_400_BAD_REQUEST,
    "invalid_kind": status.HTTP_400_BAD_REQUEST,
    "group_admin_only": status.HTTP_403_FORBIDDEN,
    "not_yours": status.HTTP_403_FORBIDDEN,
    "not_allowed": status.HTTP_403_FORBIDDEN,
    "payer_only": status.HTTP_403_FORBIDDEN,
    "not_your_block": status.HTTP_403_FORBIDDEN,
    "provider_not_verified": status.HTTP_403_FORBIDDEN,
    "already_member": status.HTTP_409_CONFLICT,
    "not_invited": status.HTTP_409_CONFLICT,
    "not_a_member": status.HTTP_409_CONFLICT,
    "last_admin": status.HTTP_409_CONFLICT,
    "offer_closed": status.HTTP_409_CONFLICT,
    "block_offered": status.HTTP_409_CONFLICT,
    "block_leased": status.HTTP_409_CONFLICT,
    "block_in_auction": status.HTTP_409_CONFLICT,
    "block_started": status.HTTP_409_CONFLICT,
    "seats_full": status.HTTP_409_CONFLICT,
    "already_seated": status.HTTP_409_CONFLICT,
    "already_released": status.HTTP_409_CONFLICT,
    "lease_ended": status.HTTP_409_CONFLICT,
    "pledge_committed": status.HTTP_409_CONFLICT,
    "payer_card_required": status.HTTP_403_FORBIDDEN,
}


def refusal_problem(refusal: GroupRefused) -> Problem:
    return Problem(
        refusal.message,
        code=refusal.code,
        status_code=REFUSAL_STATUS.get(refusal.code, status.HTTP_422_UNPROCESSABLE_ENTITY),
    )


@contextmanager
def refusals_as_problems() -> Iterator[None]:
    """Around a call of a service: its refusal becomes the problem with the refusal's code."""
    try:
        yield
    except GroupRefused as refusal:
        raise refusal_problem(refusal) from None


def not_found(code: str, detail: str) -> Problem:
    return Problem(detail, code=code, status_code=status.HTTP_404_NOT_FOUND)


def id_of(value) -> int | None:
    """A path or body id as an int; None when it is not one (so it matches nothing)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= ID_MAX else None


def one_of[M: Model](objects: QuerySet[M], value, code: str, detail: str) -> M:
    """The object of `objects` with the id `value`; else the problem 404 `code`."""
    found = objects.filter(pk=id_of(value)).first()
    if found is None:
        raise not_found(code, detail)
    return found


GROUP_MISSING = ("group_not_found", "You are not in a group with this id.")


def validated(serializer_class: type[serializers.Serializer], request, **kwargs) -> dict:
    """The request's body as `serializer_class` validates it (else its validation error)."""
    form = serializer_class(data=request.data, **kwargs)
    form.is_valid(raise_exception=True)
    return dict(form.validated_data)


# --- who acts ------------------------------------------------------------------------------------


def acting_person(request) -> User | None:
    """The person the request acts as: the signed-in user, or the member who created the API
    key while that person still belongs to the key's organization; else None."""
    principal = request.user
    if not isinstance(principal, ApiKeyPrincipal):
        return principal if principal.is_authenticated else None
    user = principal.api_key.created_by
    if (
        user is None
        or not user.is_active
        or membership_get(user=user, organization=principal.organization) is None
    ):
        return None
    return user


class ActsAsPerson:
    """For viewsets: the acting organization and person (see the module doc)."""

    @cached_property
    def acting_organization(self) -> Organization | None:
        return api_organization(self.request)

    @cached_property
    def acting_user(self) -> User | None:
        return acting_person(self.request)

    def person_required(self) -> User:
        """The acting person, for a change; a 403 when an API key's creator has left."""
        if self.acting_user is None:
            raise Problem(
                "This API key acts as the member who created it, who no longer belongs to "
                "its organization; ask an owner or admin to issue a new key.",
                code="api_key_creator_left",
                status_code=status.HTTP_403_FORBIDDEN,
            )
        return self.acting_user

    def visible_groups(self) -> QuerySet[BuyingGroup]:
        """Groups the acting person is in, and the group whose account the caller acts for.
        Through an API key, of the person's groups only those its own organization takes part
        in (paying a pledge, or with one of its devices as a member): a key is its
        organization's, and the groups its creator is in for other organizations (or
        personally) are none of its business."""
        visible = Q(pk__in=[])
        if self.acting_user is not None:
            mine = groups_of(self.acting_user)
            if isinstance(self.request.user, ApiKeyPrincipal):
                organization = self.acting_organization
                taking_part = GroupMember.objects.filter(status=MemberStatus.ACTIVE).filter(
                    Q(paying_organization=organization) | Q(device__organization=organization)
                )
                mine = mine.filter(pk__in=taking_part.values("group"))
            visible |= Q(pk__in=mine.values("pk"))
        own = group_of(self.acting_organization)
        if own is not None:
            visible |= Q(pk=own.pk)
        return (
            BuyingGroup.objects.filter(visible)
            .select_related("organization")
            .order_by("organization__name", "pk")
        )


class ActingUserInContext:
    """For viewsets of ActsAsPerson: serializers learn who "you" are (`my_member`, `you`)."""

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "acting_user": self.acting_user}


def paying_organization_named(value, *, user: User, request=None) -> Organization | None:
    """The paying organization of a pledge, among those the user manages (and, for an API
    key, only the key's own organization: a key never commits another organization's money):
    naming any other organization is refused without telling whether it exists."""
    if value is None:
        return None
    candidates = Organization.objects.filter(
        pk=id_of(value), memberships__user=user, memberships__role__in=MANAGING_ROLES
    )
    principal = getattr(request, "user", None)
    if isinstance(principal, ApiKeyPrincipal):
        candidates = candidates.filter(pk=principal.organization.pk)
    organization = candidates.distinct().first()
    if organization is None:
        raise Problem(
            f"Organization {value} is not one you manage: only its owners and admins pledge "
            "an organization's money.",
            code="paying_organization_invalid",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    return organization


def key_money_only(request, paying: Organization | None) -> None:
    """An API key commits only its own organization's money: a pledge paid by, or an offer
    accepted for, another organization is refused (the person may do it signed in)."""
    principal = getattr(request, "user", None)
    if (
        isinstance(principal, ApiKeyPrincipal)
        and paying is not None
        and paying.pk != principal.organization.pk
    ):
        raise Problem(
            "This API key belongs to another organization than the one paying: it commits "
            "only its own organization's money.",
            code="paying_organization_invalid",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )


def with_paying_organization(values: dict, *, user: User, request=None) -> dict:
    """A pledge's values with its paying organization looked up (see above)."""
    return {
        **values,
        "paying_organization": paying_organization_named(
            values["paying_organization"], user=user, request=request
        ),
    }


def email_checked(value: str) -> str:
    try:
        validate_email(value)
    except DjangoValidationError:
        raise Problem(
            f"{value!r} is not an e-mail address.",
            code="invalid_email",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        ) from None
    return value


def device_named(devices: QuerySet[ClientDevice], value) -> ClientDevice:
    """The client device `value` among those that may be named here; else a 404."""
    return one_of(
        devices, value, "device_not_found", f"There is no client device {value} you may name here."
    )


# --- serializers ---------------------------------------------------------------------------------

OPTIONAL = {"required": False, "allow_null": True, "default": None}


def id_field(**kwargs) -> serializers.IntegerField:
    """An id in a request body."""
    return serializers.IntegerField(min_value=1, max_value=ID_MAX, **kwargs)


def kind_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=MemberKind.choices)


def holder_label_field() -> serializers.CharField:
    return serializers.CharField(
        help_text="Who: the user's address, the device's name and identifier, or the number."
    )


def invited_at_field() -> serializers.DateTimeField:
    return serializers.DateTimeField(source="created_at")


def group_brief(group: BuyingGroup) -> dict:
    """A group as an OrganizationBriefSerializer: its id, and its organization's slug and name."""
    organization = group.organization
    return {"id": group.pk, "slug": organization.slug, "name": organization.name}


class OrganizationBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.SlugField()
    name = serializers.CharField()


class PledgeSerializer(StrictJsonTypes, serializers.Serializer):
    """A member's pledge: a payer pledges a share of a price and/or a cap, paid by one of the
    buyer organizations it manages; a sponsored member pays nothing."""

    role = serializers.ChoiceField(choices=MemberRole.choices)
    paying_organization = id_field(
        **OPTIONAL,
        help_text="A payer's: the id of a buyer organization you own or administer, whose card "
        "pays its shares.",
    )
    share_bps = StrictIntegerField(
        **OPTIONAL,
        help_text="A payer's share of a price in basis points, 1 to 10000 (100 %); the "
        "payers' shares together at most 10000.",
    )
    cap_minor = StrictIntegerField(
        **OPTIONAL,
        help_text="The most a payer pays for one lease, in minor units of the group's "
        "currency; positive.",
    )


class GroupCreateSerializer(PledgeSerializer):
    """A new group, with you as its first admin and member."""

    name = serializers.CharField(
        max_length=200,
        # one line: the name goes into e-mail subjects and headings
        validators=[
            RegexValidator(
                r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
                message="A group's name is one line of text, without control characters.",
            )
        ],
    )
    currency = serializers.ChoiceField(
        choices=CURRENCY_CHOICES,
        help_text="ISO 4217; pledges are in it, and the group bids only in it.",
    )
    description = serializers.CharField(
        max_length=300, required=False, allow_blank=True, default=""
    )
    role = serializers.ChoiceField(
        choices=MemberRole.choices, default=MemberRole.PAYER, help_text="Your own role."
    )


class GroupSerializer(serializers.ModelSerializer):
    """A buying group as its members see it."""

    name = serializers.CharField(source="organization.name")
    slug = serializers.SlugField(
        source="organization.slug",
        help_text="The group's organization: providers address offers to it, and its API "
        "keys bid for the group through `/auctions/{id}/bids/`.",
    )
    bid_limit_minor = serializers.SerializerMethodField(
        help_text="The most the group may bid: the largest price its payers' pledges cover "
        "(each pays at most its cap and at most its share of the price); null when shares "
        "without caps reach 100 % (no limit); 0 when they cover no price."
    )
    members_count = serializers.SerializerMethodField(help_text="Active members.")
    my_member = serializers.SerializerMethodField(
        help_text="The id of your own membership (as a user); null when you have none."
    )
    is_admin = serializers.SerializerMethodField(help_text="Whether you are one of its admins.")

    class Meta:
        model = BuyingGroup
        fields = [
            "id",
            "name",
            "slug",
            "currency",
            "description",
            "bid_limit_minor",
            "members_count",
            "my_member",
            "is_admin",
            "created_at",
        ]
        read_only_fields = fields

    @property
    def _user(self) -> User | None:
        return self.context.get("acting_user")

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_bid_limit_minor(self, group: BuyingGroup) -> int | None:
        return bid_limit_of(group)

    @extend_schema_field(OpenApiTypes.INT)
    def get_members_count(self, group: BuyingGroup) -> int:
        counted = getattr(group, "active_members", None)
        if counted is not None:
            return counted
        return group.members.filter(status=MemberStatus.ACTIVE).count()

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_my_member(self, group: BuyingGroup) -> int | None:
        if self._user is None:
            return None
        return (
            group.members.filter(kind=MemberKind.USER, user=self._user, status=MemberStatus.ACTIVE)
            .values_list("pk", flat=True)
            .first()
        )

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_is_admin(self, group: BuyingGroup) -> bool:
        return self._user is not None and is_group_admin(group, self._user)


class GroupMemberSerializer(serializers.ModelSerializer):
    """A user, client device or telephone number in a group, with its pledge."""

    group = serializers.IntegerField(source="group_id")
    kind = kind_field()
    label = holder_label_field()
    status = serializers.ChoiceField(choices=MemberStatus.choices)
    role = serializers.ChoiceField(
        choices=MemberRole.choices, help_text="An invitee chooses it when accepting."
    )
    paying_organization = OrganizationBriefSerializer(allow_null=True)
    invited_at = invited_at_field()
    you = serializers.SerializerMethodField(help_text="Whether this member is you (as a user).")

    class Meta:
        model = GroupMember
        fields = [
            "id",
            "group",
            "kind",
            "label",
            "status",
            "role",
            "is_admin",
            "paying_organization",
            "share_bps",
            "cap_minor",
            "invited_at",
            "joined_at",
            "you",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_you(self, member: GroupMember) -> bool:
        user = self.context.get("acting_user")
        return user is not None and member.kind == MemberKind.USER and member.user_id == user.pk


class HolderSerializer(StrictJsonTypes, serializers.Serializer):
    """Who: a user by e-mail address, a client device by id, or a telephone number."""

    kind = kind_field()
    email = serializers.CharField(
        max_length=254, required=False, help_text="For `user`: the person's e-mail address."
    )
    device = id_field(required=False, help_text="For `device`: its id.")
    phone_number = serializers.CharField(
        max_length=32,
        required=False,
        help_text="For `phone`: E.164, e.g. `+14155550123` (spaces, dots, dashes and "
        "parentheses are dropped).",
    )

    FIELD_OF_KIND = {
        MemberKind.USER: "email",
        MemberKind.DEVICE: "device",
        MemberKind.PHONE: "phone_number",
    }

    def validate(self, attrs):
        wanted = self.FIELD_OF_KIND[attrs["kind"]]
        errors = {}
        if attrs.get(wanted) in (None, ""):
            errors[wanted] = [f"Required for kind `{attrs['kind']}`."]
        for field in self.FIELD_OF_KIND.values():
            if field != wanted and field in attrs:
                errors[field] = [f"Only for kind `{self._kind_of(field)}`."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _kind_of(self, field: str) -> str:
        return next(kind for kind, name in self.FIELD_OF_KIND.items() if name == field)


def _holder_of_kind(kind: str, field: str, schema: dict) -> dict:
    return {
        "type": "object",
        "title": f"Holder: {kind}",
        "properties": {"kind": {"type": "string", "enum": [kind]}, field: schema},
        "required": ["kind", field],
        "additionalProperties": False,
    }


# HolderSerializer as a request body: one field per kind, and only that field (its validate()).
HOLDER_REQUEST_SCHEMA = {
    "oneOf": [
        _holder_of_kind(
            MemberKind.USER,
            "email",
            {"type": "string", "format": "email", "maxLength": 254, "description": "An address."},
        ),
        _holder_of_kind(
            MemberKind.DEVICE,
            "device",
            {"type": "integer", "minimum": 1, "maximum": ID_MAX, "format": "int64"},
        ),
        _holder_of_kind(
            MemberKind.PHONE,
            "phone_number",
            {
                "type": "string",
                "maxLength": 32,
                # E.164 once spaces, dots, dashes and parentheses are dropped
                "pattern": r"^[\s().-]*\+[\s().-]*[1-9](?:[\s().-]*[0-9]){1,14}[\s().-]*$",
                "description": "E.164, e.g. `+14155550123`.",
            },
        ),
    ],
    "description": "Who: a user by e-mail address, a client device by id, or a telephone "
    "number; `kind` says which, and only that kind's field is given.",
}


class MemberAdminSerializer(StrictJsonTypes, serializers.Serializer):
    is_admin = serializers.BooleanField(help_text="Admins place the group's bids.")


class InvitationSerializer(serializers.ModelSerializer):
    """An invitation you may answer: to you, or to a client device of an organization you own
    or administer."""

    group = serializers.SerializerMethodField()
    kind = kind_field()
    label = serializers.CharField(help_text="Who is invited: your address, or the device.")
    invited_at = invited_at_field()

    class Meta:
        model = GroupMember
        fields = ["id", "group", "kind", "label", "invited_at"]
        read_only_fields = fields

    @extend_schema_field(OrganizationBriefSerializer)
    def get_group(self, member: GroupMember) -> dict:
        return group_brief(member.group)


class StandingSerializer(serializers.Serializer):
    """How far an offer is from tipping."""

    pledged_minor = serializers.IntegerField(
        allow_null=True,
        help_text="The largest price the accepting payers' pledges cover; null when their "
        "shares without caps reach 100 % (no limit).",
    )
    price_minor = serializers.IntegerField()
    accepted = serializers.IntegerField(help_text="Payers who accepted.")
    tipped = serializers.BooleanField(
        help_text="The pledges cover the price: at the deadline the block is leased to the group."
    )


class ProviderBriefSerializer(serializers.Serializer):
    slug = serializers.SlugField(source="organization.slug")
    name = serializers.CharField(source="legal_name")


# the fields both sides' serializers of an offer list: its terms, and how it ended
OFFER_TERMS = ["block", "price_minor", "currency", "deadline", "message", "status"]
OFFER_OUTCOME = ["lease", "created_at", "decided_at"]


class OfferSerializerBase(serializers.ModelSerializer):
    """What both sides see of an offer: its status and, once sold, its lease."""

    status = serializers.ChoiceField(choices=GroupOfferStatus.choices)

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_lease(self, offer: GroupOffer) -> int | None:
        return lease_of(offer)


class OfferToGroupSerializer(OfferSerializerBase):
    """A provider's offer of a block to your group, with its standing."""

    provider = ProviderBriefSerializer()
    block = AuctionBlockSerializer()
    standing = serializers.SerializerMethodField()
    accepted_by = serializers.SerializerMethodField(help_text="Ids of the members who accepted.")
    lease = serializers.SerializerMethodField(
        help_text="Once sold: the group's lease (its seats are at `/leases/{id}/seats/`)."
    )

    class Meta:
        model = GroupOffer
        fields = ["id", "provider", *OFFER_TERMS, "standing", "accepted_by", *OFFER_OUTCOME]
        read_only_fields = fields

    @extend_schema_field(StandingSerializer)
    def get_standing(self, offer: GroupOffer) -> dict:
        return StandingSerializer(standing_of(offer)).data

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_accepted_by(self, offer: GroupOffer) -> list[int]:
        return list(offer.acceptances.order_by("pk").values_list("member_id", flat=True))


def lease_of(offer: GroupOffer) -> int | None:
    if offer.status != GroupOfferStatus.SOLD:
        return None
    return Lease.objects.filter(group_offer=offer).values_list("pk", flat=True).first()


def standing_of(offer: GroupOffer) -> dict:
    standing = offer_standing(offer)
    return {
        "pledged_minor": standing.pledged_minor,
        "price_minor": standing.price_minor,
        "accepted": standing.accepted,
        "tipped": standing.tipped,
    }


class OfferAcceptSerializer(StrictJsonTypes, serializers.Serializer):
    member = id_field(
        **OPTIONAL,
        help_text="The payer member who accepts (yours: you as a user, or a client device of "
        "an organization you manage); default: your own membership.",
    )


class ProviderOfferSerializer(OfferSerializerBase):
    """One of your offers to a group, as the provider sees it: whether it tipped, not the
    group's pledges."""

    group = serializers.SerializerMethodField()
    block = serializers.IntegerField(source="block_id")
    accepted = serializers.SerializerMethodField(help_text="Payers of the group who accepted.")
    tipped = serializers.SerializerMethodField(
        help_text="Their pledges cover the price: at the deadline the block is leased to the group."
    )
    lease = serializers.SerializerMethodField(help_text="Once sold: the lease's id.")

    class Meta:
        model = GroupOffer
        fields = ["id", "group", *OFFER_TERMS, "accepted", "tipped", *OFFER_OUTCOME]
        read_only_fields = fields

    @extend_schema_field(OrganizationBriefSerializer)
    def get_group(self, offer: GroupOffer) -> dict:
        return group_brief(offer.group)

    @staticmethod
    def _standing(offer: GroupOffer) -> OfferStanding:
        if not hasattr(offer, "_standing"):
            offer._standing = offer_standing(offer)
        return offer._standing

    @extend_schema_field(OpenApiTypes.INT)
    def get_accepted(self, offer: GroupOffer) -> int:
        return self._standing(offer).accepted

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_tipped(self, offer: GroupOffer) -> bool:
        return self._standing(offer).tipped


class GroupOfferCreateSerializer(StrictJsonTypes, serializers.Serializer):
    """A provider's offer of one of its blocks to a buying group."""

    group = serializers.CharField(
        max_length=80, help_text="The group's slug (its organization's) or id."
    )
    block = id_field(help_text="One of your blocks (see /blocks/).")
    price_minor = StrictIntegerField(
        max_value=MINOR_UNITS_MAX,
        help_text="The price in minor units of the group's currency; positive.",
    )
    deadline = serializers.DateTimeField(
        help_text="Payers accept until then; in the future, no later than the block's start."
    )
    message = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class SeatSerializer(serializers.ModelSerializer):
    """A seat held on a lease, with the jobs run under it and the bytes metered."""

    lease = serializers.IntegerField(source="lease_id")
    kind = kind_field()
    label = holder_label_field()
    jobs = serializers.SerializerMethodField(help_text="Jobs run under this seat.")
    bytes = serializers.SerializerMethodField(help_text="Bytes metered for them.")

    class Meta:
        model = LeaseSeat
        fields = ["id", "lease", "kind", "label", "assigned_at", "jobs", "bytes"]
        read_only_fields = fields

    def _usage(self, seat: LeaseSeat) -> dict:
        return self.context.get("usage", {}).get(seat.pk, {"jobs": 0, "bytes": 0})

    @extend_schema_field(OpenApiTypes.INT)
    def get_jobs(self, seat: LeaseSeat) -> int:
        return self._usage(seat)["jobs"]

    @extend_schema_field(OpenApiTypes.INT)
    def get_bytes(self, seat: LeaseSeat) -> int:
        return self._usage(seat)["bytes"]


class SeatPagination(PageNumberPagination):
    """Pages of seats, with the lease's seat count and how many are free."""

    def paginate_queryset(self, queryset, request, view=None):
        self.lease = view.lease
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        total = self.lease.block.seats
        response.data["seats_total"] = total
        response.data["seats_free"] = max(total - seats_active(self.lease).count(), 0)
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["seats_total"] = {
            "type": "integer",
            "example": 4,
            "description": "How many seats the lease's block has.",
        }
        schema["properties"]["seats_free"] = {
            "type": "integer",
            "example": 3,
            "description": "How many of them are not assigned now.",
        }
        schema["required"] = [*schema.get("required", []), "seats_total", "seats_free"]
        return schema


# --- schema helpers ------------------------------------------------------------------------------

GROUP_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The group's id.")
GROUP_ID_NESTED = OpenApiParameter(
    "group_id", int, OpenApiParameter.PATH, description="The group's id."
)
MEMBER_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The member's id.")
OFFER_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The offer's id.")
INVITATION_ID = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="The invitation's id (a member's id)."
)
LEASE_ID = OpenApiParameter("lease_id", int, OpenApiParameter.PATH, description="The lease's id.")
SEAT_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The seat's id.")

PRIVATE = (401, 403)
# the problems of an action on one object, and of one that also takes a body
CHANGE = (*PRIVATE, 404, 409)
CHANGE_WITH_BODY = (400, *CHANGE, 422)
PERSON_403 = "`insufficient_scope` for a read-only key, or `api_key_creator_left`"
GROUP_404 = "`group_not_found`: you are not in a group with this id."
MEMBER_404 = f"{GROUP_404[:-1]}; or `member_not_found` (no member of the group has this id)."
IN_PROGRESS = "`idempotency_in_progress`: the first request with this key is still running."
HOLDER_400 = (
    "`validation_failed`: the field of the `kind` is missing, or another kind's is given (see "
    "`errors`)."
)
PLEDGE_422 = (
    "`invalid_pledge` (a share is 1 to 10000 basis points, a cap positive, a payer pledges "
    "one of them), `shares_over_100` (the payers' shares would add up to more than 100 %), "
    "`paying_organization_required`, `paying_organization_invalid` (not a buyer organization "
    "you own or administer), `phone_sponsored`; or `idempotency_key_reused`."
)

GROUP_EXAMPLE = OpenApiExample(
    "A group",
    response_only=True,
    value={
        "id": 4,
        "name": "Harbour Cooperative",
        "slug": "harbour-cooperative",
        "currency": "USD",
        "description": "Port authorities sharing capture capacity",
        "bid_limit_minor": 125000,
        "members_count": 5,
        "my_member": 11,
        "is_admin": True,
        "created_at": "2026-11-02T09:14:00Z",
    },
)
GROUP_CREATE_EXAMPLE = OpenApiExample(
    "A payer with a cap",
    request_only=True,
    value={
        "name": "Harbour Cooperative",
        "currency": "USD",
        "description": "Port authorities sharing capture capacity",
        "role": "payer",
        "paying_organization": 7,
        "share_bps": 4000,
        "cap_minor": 50000,
    },
)
MEMBER_EXAMPLE = OpenApiExample(
    "A payer",
    response_only=True,
    value={
        "id": 12,
        "group": 4,
        "kind": "user",
        "label": "ana@port.example",
        "status": "active",
        "role": "payer",
        "is_admin": False,
        "paying_organization": {"id": 9, "slug": "port-of-vigo", "name": "Port of Vigo"},
        "share_bps": 3000,
        "cap_minor": 40000,
        "invited_at": "2026-11-02T09:20:00Z",
        "joined_at": "2026-11-02T10:02:00Z",
        "you": False,
    },
)
INVITE_EXAMPLES = [
    OpenApiExample(
        "A user", request_only=True, value={"kind": "user", "email": "ana@port.example"}
    ),
    OpenApiExample("A client device", request_only=True, value={"kind": "device", "device": 31}),
    OpenApiExample(
        "A telephone number",
        request_only=True,
        value={"kind": "phone", "phone_number": "+14155550123"},
    ),
]
PHONE_PROBLEM_EXAMPLE = problem_example(
    422,
    "invalid_phone_number",
    "'12345' is not a telephone number in E.164 form (+ country code and number, "
    "at most 15 digits, e.g. +14155550123).",
    name="Not a telephone number",
    instance="/api/v1/groups/4/members/",
)
SHARES_PROBLEM_EXAMPLE = problem_example(
    422,
    "shares_over_100",
    "The payers' shares would add up to 120 %: at most 100 %.",
    name="Shares over 100 %",
    instance="/api/v1/group-invitations/12/accept",
)
OFFER_EXAMPLE = OpenApiExample(
    "An open offer",
    response_only=True,
    value={
        "id": 3,
        "provider": {"slug": "alpha", "name": "Alpha Networks Ltd"},
        "block": {
            "id": 18,
            "starts_at": "2026-11-20T06:00:00Z",
            "ends_at": "2026-11-20T09:00:00Z",
            "max_rate_mbps": 1000,
            "min_rate_mbps": 100,
            "seats": 4,
            "data_cap_gb": None,
            "description": "Night window",
        },
        "price_minor": 90000,
        "currency": "USD",
        "deadline": "2026-11-18T12:00:00Z",
        "message": "For the cooperative's winter survey",
        "status": "open",
        "standing": {"pledged_minor": 60000, "price_minor": 90000, "accepted": 2, "tipped": False},
        "accepted_by": [11, 12],
        "lease": None,
        "created_at": "2026-11-10T08:00:00Z",
        "decided_at": None,
    },
)
SEATS_FULL_EXAMPLE = problem_example(
    409,
    "seats_full",
    "All 2 seats of this lease are taken: release one first.",
    name="All seats taken",
    instance="/api/v1/leases/15/seats/",
)
SEAT_EXAMPLE = OpenApiExample(
    "A device's seat",
    response_only=True,
    value={
        "id": 8,
        "lease": 15,
        "kind": "device",
        "label": "Probe 3 (SN-000003)",
        "assigned_at": "2026-11-20T06:01:00Z",
        "jobs": 2,
        "bytes": 73400320,
    },
)


# --- viewsets ------------------------------------------------------------------------------------


class ScopedViewSet(ActsAsPerson, viewsets.GenericViewSet):
    """What the caller may see, `scoped_queryset()`: `list` pages through it, and `get_object`
    finds the URL's id in it; any other id is the problem 404 `missing` (its code and detail),
    as if the object did not exist. While the schema is generated, the queryset is empty."""

    schema = ApiAutoSchema()

    permission_classes = [ScopedAccess]
    missing: tuple[str, str]

    def scoped_queryset(self) -> QuerySet:
        raise NotImplementedError

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.get_serializer_class().Meta.model.objects.none()
        return self.scoped_queryset()

    def get_object(self):
        return one_of(self.get_queryset(), self.kwargs["pk"], *self.missing)

    # no docstrings on the actions: the schema describes an action by its docstring

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class RetrieveMixin:
    """For a ScopedViewSet: one object, by its id."""

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)


# --- groups --------------------------------------------------------------------------------------


def with_active_members(groups: QuerySet[BuyingGroup]) -> QuerySet[BuyingGroup]:
    """Groups counting their active members (`members_count`)."""
    return groups.annotate(
        active_members=Count("members", filter=Q(members__status=MemberStatus.ACTIVE))
    )


@extend_schema_view(
    list=extend_schema(
        summary="Your buying groups",
        description="Groups you are an active member of, and the group whose API key you use.",
        responses={200: GroupSerializer(many=True)} | problem_responses(401),
        examples=[GROUP_EXAMPLE],
    ),
    retrieve=extend_schema(
        summary="One of your buying groups",
        description="With its bid limit, its number of members, your membership and whether "
        "you are one of its admins.",
        parameters=[GROUP_ID],
        responses={200: GroupSerializer} | problem_responses(401, 404, s404=GROUP_404),
        examples=[GROUP_EXAMPLE],
    ),
    create=extend_schema(
        summary="Create a buying group",
        description="A group bids and buys as one bidder; its account is an organization of "
        "its own (`slug`). You become its first member and admin, a payer pledging a share "
        "and/or a cap paid by a buyer organization you own or administer, or sponsored.",
        request=GroupCreateSerializer,
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: GroupSerializer}
        | problem_responses(
            400,
            *PRIVATE,
            409,
            422,
            s400="`validation_failed` (see `errors`), e.g. an unknown currency or a share sent "
            "as a string.",
            s403=PERSON_403 + ".",
            s409=IN_PROGRESS,
            s422=f"`invalid_name`, `invalid_currency`, {PLEDGE_422}",
        ),
        examples=[GROUP_CREATE_EXAMPLE, GROUP_EXAMPLE],
    ),
)
class GroupViewSet(ActingUserInContext, RetrieveMixin, ScopedViewSet):
    """The caller's buying groups; any other group is a 404."""

    serializer_class = GroupSerializer
    missing = GROUP_MISSING

    def scoped_queryset(self):
        return with_active_members(self.visible_groups())

    @idempotent
    def create(self, request, *args, **kwargs):
        user = self.person_required()
        values = with_paying_organization(
            validated(GroupCreateSerializer, request), user=user, request=request
        )
        with refusals_as_problems():
            group = group_create(user=user, **values)
        group = with_active_members(BuyingGroup.objects.select_related("organization")).get(
            pk=group.pk
        )
        return Response(self.get_serializer(group).data, status=status.HTTP_201_CREATED)


class InGroupMixin(ActingUserInContext):
    """For a ScopedViewSet nested under `groups/{group_id}/`: the group of the URL if the
    caller may see it."""

    @cached_property
    def group(self) -> BuyingGroup:
        return one_of(self.visible_groups(), self.kwargs["group_id"], *GROUP_MISSING)


# --- members -------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Members of a group",
        description="Active and invited members, oldest first, with their pledges.",
        parameters=[GROUP_ID_NESTED],
        responses={200: GroupMemberSerializer(many=True)}
        | problem_responses(401, 404, s404=GROUP_404),
        examples=[MEMBER_EXAMPLE],
    ),
    retrieve=extend_schema(
        summary="One member of a group",
        parameters=[GROUP_ID_NESTED, MEMBER_ID],
        responses={200: GroupMemberSerializer} | problem_responses(401, 404, s404=MEMBER_404),
        examples=[MEMBER_EXAMPLE],
    ),
    create=extend_schema(
        summary="Invite a member",
        description="For the group's admins. A user is invited by e-mail address and a client "
        "device by id (a device of an organization that one of the group's members owns or "
        "administers); either answers through `/group-invitations/`, choosing payer or "
        "sponsored. A telephone number has no account: it joins at once, sponsored.",
        request={"application/json": HOLDER_REQUEST_SCHEMA},
        parameters=[GROUP_ID_NESTED, *IDEMPOTENCY_PARAMETERS],
        responses={201: GroupMemberSerializer}
        | problem_responses(
            *CHANGE_WITH_BODY,
            s400=HOLDER_400,
            s403=f"`group_admin_only`, {PERSON_403}.",
            s404=f"{GROUP_404[:-1]}; or `device_not_found`.",
            s409=f"`already_member` (in the group or invited already), or {IN_PROGRESS}",
            s422="`invalid_email`, `invalid_phone_number` (not E.164), or "
            "`idempotency_key_reused`.",
        ),
        examples=[*INVITE_EXAMPLES, MEMBER_EXAMPLE, PHONE_PROBLEM_EXAMPLE],
    ),
    partial_update=extend_schema(
        summary="Change your pledge",
        description="A member changes its own pledge (you as a user, or a client device of an "
        "organization you own or administer); fields left out keep their value, `null` clears "
        "one. Leases already won keep the pledges they were won with.",
        parameters=[GROUP_ID_NESTED, MEMBER_ID],
        request=PledgeSerializer,
        responses={200: GroupMemberSerializer}
        | problem_responses(
            *CHANGE_WITH_BODY,
            s403=f"`not_yours` (another member's pledge), {PERSON_403}.",
            s404=MEMBER_404,
            s409="`not_a_member`: the member has not joined (an invitation).",
            s422=PLEDGE_422,
        ),
        examples=[MEMBER_EXAMPLE, SHARES_PROBLEM_EXAMPLE],
    ),
    destroy=extend_schema(
        summary="Remove a member, or leave",
        description="An admin removes a member or withdraws an invitation; a member leaves "
        "(you as a user, or a device you manage). The last admin cannot go.",
        parameters=[GROUP_ID_NESTED, MEMBER_ID],
        responses={204: OpenApiResponse(description="Removed.")}
        | problem_responses(
            *CHANGE,
            s403=f"`group_admin_only`, {PERSON_403}.",
            s404=MEMBER_404,
            s409="`last_admin`: make another member admin first.",
        ),
    ),
    admin=extend_schema(
        summary="Make a member admin, or not",
        description="For the group's admins. Admins place the group's bids (with a key of the "
        "group's organization) and manage its members and seats. A group keeps at least one.",
        parameters=[GROUP_ID_NESTED, MEMBER_ID, *IDEMPOTENCY_PARAMETERS],
        request=MemberAdminSerializer,
        responses={200: GroupMemberSerializer}
        | problem_responses(
            *CHANGE_WITH_BODY,
            s403=f"`group_admin_only`, {PERSON_403}.",
            s404=MEMBER_404,
            s409=f"`last_admin`, or {IN_PROGRESS}",
            s422="`not_a_user_member`: only an active user member is an admin.",
        ),
    ),
)
class GroupMemberViewSet(InGroupMixin, RetrieveMixin, ScopedViewSet):
    """The members of one of the caller's groups; another group's member is a 404."""

    serializer_class = GroupMemberSerializer
    missing = ("member_not_found", "No member of this group has this id.")

    def scoped_queryset(self):
        return members_of(self.group)

    def member_response(self, member: GroupMember, **kwargs) -> Response:
        member = members_of(self.group, statuses=MemberStatus.values).get(pk=member.pk)
        return Response(self.get_serializer(member).data, **kwargs)

    def invitable_device(self, value) -> ClientDevice:
        """A client device of an organization the caller owns or administers (as on the
        group's page): nobody invites another organization's devices."""
        organizations = Membership.objects.filter(
            user=self.acting_user, role__in=MANAGING_ROLES
        ).values("organization_id")
        return device_named(ClientDevice.objects.filter(organization_id__in=organizations), value)

    @idempotent
    def create(self, request, *args, **kwargs):
        user = self.person_required()
        group = self.group
        values = validated(HolderSerializer, request)
        with refusals_as_problems():
            if values["kind"] == MemberKind.USER:
                member = member_invite_user(
                    group=group, by=user, email=email_checked(values["email"])
                )
            elif values["kind"] == MemberKind.DEVICE:
                if not is_group_admin(group, user):
                    # before looking the device up: only admins learn whether it may be named
                    raise GroupRefused("group_admin_only", "Only the group's admins do this.")
                member = member_invite_device(
                    group=group, by=user, device=self.invitable_device(values["device"])
                )
            else:
                member = member_add_phone(group=group, by=user, phone_number=values["phone_number"])
        return self.member_response(member, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        user = self.person_required()
        member = self.get_object()
        changed = validated(PledgeSerializer, request, partial=True)
        if "paying_organization" in changed:
            changed = with_paying_organization(changed, user=user, request=request)
        values = {
            "role": member.role,
            "paying_organization": member.paying_organization,
            "share_bps": member.share_bps,
            "cap_minor": member.cap_minor,
            **changed,
        }
        key_money_only(
            request, values["paying_organization"] if values["role"] == "payer" else None
        )
        with refusals_as_problems():
            member = pledge_update(member=member, by=user, **values)
        return self.member_response(member)

    def destroy(self, request, *args, **kwargs):
        user = self.person_required()
        with refusals_as_problems():
            member_remove(member=self.get_object(), by=user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"], url_path="admin")
    @idempotent
    def admin(self, request, *args, **kwargs):
        user = self.person_required()
        member = self.get_object()
        is_admin = validated(MemberAdminSerializer, request)["is_admin"]
        with refusals_as_problems():
            member = member_admin_set(member=member, by=user, is_admin=is_admin)
        return self.member_response(member)


# --- invitations ---------------------------------------------------------------------------------

INVITATION_404 = (
    "`invitation_not_found`: no invitation you may answer has this id (or it was answered)."
)


@extend_schema_view(
    list=extend_schema(
        summary="Invitations to answer",
        description="Invitations to groups for you (by account or address) and for the client "
        "devices of organizations you own or administer, oldest first.",
        responses={200: InvitationSerializer(many=True)} | problem_responses(401),
    ),
    accept=extend_schema(
        summary="Accept an invitation",
        description="Join as a payer (a share of each price and/or a cap, paid by a buyer "
        "organization you own or administer) or sponsored (paying nothing).",
        parameters=[INVITATION_ID, *IDEMPOTENCY_PARAMETERS],
        request=PledgeSerializer,
        responses={200: GroupMemberSerializer}
        | problem_responses(
            *CHANGE_WITH_BODY,
            s403=PERSON_403 + ".",
            s404=INVITATION_404,
            s409=f"`already_member`, or {IN_PROGRESS}",
            s422=PLEDGE_422,
        ),
        examples=[
            OpenApiExample(
                "As a payer",
                request_only=True,
                value={"role": "payer", "paying_organization": 9, "share_bps": 3000},
            ),
            OpenApiExample("Sponsored", request_only=True, value={"role": "sponsored"}),
            MEMBER_EXAMPLE,
            SHARES_PROBLEM_EXAMPLE,
        ],
    ),
    decline=extend_schema(
        summary="Decline an invitation",
        description="The invitation is closed; an admin of the group may invite again.",
        parameters=[INVITATION_ID, *IDEMPOTENCY_PARAMETERS],
        request=None,
        responses={200: GroupMemberSerializer}
        | problem_responses(
            *CHANGE,
            s403=PERSON_403 + ".",
            s404=INVITATION_404,
            s409=IN_PROGRESS,
        ),
    ),
)
class GroupInvitationViewSet(ActingUserInContext, ScopedViewSet):
    """Invitations the acting person may answer; any other is a 404."""

    serializer_class = InvitationSerializer
    missing = ("invitation_not_found", "No invitation you may answer has this id.")

    def scoped_queryset(self):
        if self.acting_user is None:
            return GroupMember.objects.none()
        return invitations_for(self.acting_user)

    def get_object(self):
        self.person_required()
        return super().get_object()

    def member_response(self, member: GroupMember) -> Response:
        member = GroupMember.objects.select_related("user", "device", "paying_organization").get(
            pk=member.pk
        )
        return Response(GroupMemberSerializer(member, context=self.get_serializer_context()).data)

    @action(detail=True, methods=["post"], url_path="accept")
    @idempotent
    def accept(self, request, *args, **kwargs):
        invitation = self.get_object()
        user = self.person_required()
        values = with_paying_organization(
            validated(PledgeSerializer, request), user=user, request=request
        )
        with refusals_as_problems():
            member = invitation_accept(member=invitation, user=user, **values)
        return self.member_response(member)

    @action(detail=True, methods=["post"], url_path="decline")
    @idempotent
    def decline(self, request, *args, **kwargs):
        invitation = self.get_object()
        with refusals_as_problems():
            member = invitation_decline(member=invitation, user=self.person_required())
        return self.member_response(member)


# --- offers to groups: the group's side ----------------------------------------------------------

OFFER_404 = f"{GROUP_404[:-1]}; or `offer_not_found` (no offer to the group has this id)."


@extend_schema_view(
    list=extend_schema(
        summary="Offers to a group",
        description="Providers' direct offers of blocks to the group, newest first, with how "
        "far each is from tipping. An offer tips when the pledges of the payers who accepted "
        "it cover the price; at its deadline a tipped offer becomes a lease of the group, "
        "charged to those payers only.",
        parameters=[GROUP_ID_NESTED],
        responses={200: OfferToGroupSerializer(many=True)}
        | problem_responses(401, 404, s404=GROUP_404),
        examples=[OFFER_EXAMPLE],
    ),
    retrieve=extend_schema(
        summary="One offer to a group",
        parameters=[GROUP_ID_NESTED, OFFER_ID],
        responses={200: OfferToGroupSerializer} | problem_responses(401, 404, s404=OFFER_404),
        examples=[OFFER_EXAMPLE],
    ),
    accept=extend_schema(
        summary="Accept an offer as a payer",
        description="The payer's pledge counts towards the tipping point; accepting again "
        "changes nothing. Answers the offer with its standing.",
        parameters=[GROUP_ID_NESTED, OFFER_ID, *IDEMPOTENCY_PARAMETERS],
        request=OfferAcceptSerializer,
        responses={200: OfferToGroupSerializer}
        | problem_responses(
            400,
            *CHANGE,
            s403=f"`payer_only` (the member is sponsored, or you have no membership), "
            f"`not_yours` (another's membership), {PERSON_403}.",
            s404=f"{OFFER_404[:-1]}; or `member_not_found`.",
            s409=f"`offer_closed` (decided, withdrawn, or past its deadline), or {IN_PROGRESS}",
        ),
        examples=[OFFER_EXAMPLE],
    ),
)
class OfferToGroupViewSet(InGroupMixin, RetrieveMixin, ScopedViewSet):
    """Offers to one of the caller's groups; another group's offer is a 404."""

    serializer_class = OfferToGroupSerializer
    missing = ("offer_not_found", "No offer to this group has this id.")

    def scoped_queryset(self):
        return offers_of_group(self.group).select_related("provider__organization")

    def accepting_member(self, value, *, user: User) -> GroupMember:
        members = members_of(self.group, statuses=(MemberStatus.ACTIVE,))
        if value is None:
            member = members.filter(kind=MemberKind.USER, user=user).first()
            if member is None:
                raise Problem(
                    "Only the group's payers accept offers, and you have no membership of "
                    "your own in it: name the payer `member` who accepts.",
                    code="payer_only",
                    status_code=status.HTTP_403_FORBIDDEN,
                )
            return member
        return one_of(
            members, value, "member_not_found", "No active member of this group has this id."
        )

    @action(detail=True, methods=["post"], url_path="accept")
    @idempotent
    def accept(self, request, *args, **kwargs):
        user = self.person_required()
        offer = self.get_object()
        named = validated(OfferAcceptSerializer, request)["member"]
        member = self.accepting_member(named, user=user)
        key_money_only(request, member.paying_organization)
        with refusals_as_problems():
            group_offer_accept(offer=offer, member=member, by=user)
        return Response(self.get_serializer(self.get_object()).data)


# --- offers to groups: the provider's side -------------------------------------------------------

PROVIDER_OFFER_404 = "`offer_not_found`: you made no offer with this id."


@extend_schema_view(
    list=extend_schema(
        summary="Your offers to groups",
        description="Your direct offers of blocks to buying groups, newest first.",
        responses={200: ProviderOfferSerializer(many=True)}
        | problem_responses(*PRIVATE, s403=NOT_A_PROVIDER),
    ),
    retrieve=extend_schema(
        summary="One of your offers to a group",
        parameters=[OFFER_ID],
        responses={200: ProviderOfferSerializer}
        | problem_responses(*PRIVATE, 404, s403=NOT_A_PROVIDER, s404=PROVIDER_OFFER_404),
    ),
    create=extend_schema(
        summary="Offer a block to a group",
        description="Offer one of your blocks, not auctioned nor leased, to a buying group at "
        "a price in the group's currency. The group's payers accept it until the deadline; if "
        "their pledges then cover the price, the block is leased to the group, else nobody is "
        "charged. One open offer per block.",
        request=GroupOfferCreateSerializer,
        parameters=IDEMPOTENCY_PARAMETERS,
        responses={201: ProviderOfferSerializer}
        | problem_responses(
            *CHANGE_WITH_BODY,
            s403=NOT_A_PROVIDER,
            s404="`group_not_found` (no group has this slug or id) or `block_not_found` (no "
            "block of yours has this id).",
            s409="`block_offered` (an open offer already), `block_in_auction`, `block_leased`, "
            f"`block_started`, or {IN_PROGRESS}",
            s422="`invalid_price`, `invalid_deadline` (in the future, no later than the "
            "block's start), or `idempotency_key_reused`.",
        ),
        examples=[
            OpenApiExample(
                "An offer",
                request_only=True,
                value={
                    "group": "harbour-cooperative",
                    "block": 18,
                    "price_minor": 90000,
                    "deadline": "2026-11-18T12:00:00Z",
                    "message": "For the cooperative's winter survey",
                },
            )
        ],
    ),
    withdraw=extend_schema(
        summary="Withdraw an offer to a group",
        parameters=[OFFER_ID, *IDEMPOTENCY_PARAMETERS],
        request=None,
        responses={200: ProviderOfferSerializer}
        | problem_responses(
            *CHANGE,
            s403=NOT_A_PROVIDER,
            s404=PROVIDER_OFFER_404,
            s409=f"`offer_closed` (decided or withdrawn already), or {IN_PROGRESS}",
        ),
    ),
)
class GroupOfferViewSet(ActingProviderMixin, RetrieveMixin, ScopedViewSet):
    """A provider's own offers to groups; another provider's offer is a 404."""

    permission_classes = [ScopedAccess, ActsForProvider]
    serializer_class = ProviderOfferSerializer
    missing = ("offer_not_found", "You made no offer with this id.")

    def scoped_queryset(self):
        return (
            GroupOffer.objects.filter(provider=self.acting_provider)
            .select_related("group__organization")
            .order_by("-created_at", "-pk")
        )

    def offer_response(self, offer: GroupOffer, **kwargs) -> Response:
        offer = self.get_queryset().get(pk=offer.pk)
        return Response(self.get_serializer(offer).data, **kwargs)

    @staticmethod
    def group_named(value: str) -> BuyingGroup:
        value = value.strip()
        named = Q(organization__slug=value)
        if value.isdigit():
            named |= Q(pk=id_of(value))
        group = BuyingGroup.objects.filter(named, organization__is_active=True).first()
        if group is None:
            raise not_found("group_not_found", f"There is no buying group {value!r}.")
        return group

    @idempotent
    def create(self, request, *args, **kwargs):
        user = self.person_required()
        values = validated(GroupOfferCreateSerializer, request)
        group = self.group_named(values.pop("group"))
        block = one_of(
            ServiceBlock.objects.filter(provider=self.acting_provider),
            values.pop("block"),
            "block_not_found",
            "No block of yours has this id.",
        )
        with refusals_as_problems():
            offer = group_offer_create(
                provider=self.acting_provider, by=user, group=group, block=block, **values
            )
        return self.offer_response(offer, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], url_path="withdraw")
    @idempotent
    def withdraw(self, request, *args, **kwargs):
        user = self.person_required()
        offer = self.get_object()
        with refusals_as_problems():
            offer = group_offer_withdraw(offer=offer, by=user)
        return self.offer_response(offer)


# --- seats ---------------------------------------------------------------------------------------

LEASE_404 = "`lease_not_found`: no lease of yours, nor one you hold a seat on, has this id."
SEAT_404 = f"{LEASE_404[:-1]}; or `seat_not_found` (no active seat of the lease you may see)."


@extend_schema_view(
    list=extend_schema(
        summary="Seats of a lease",
        description="The seats assigned now, oldest first, with the jobs run under each. The "
        "leaseholder's members see every seat; a seat holder of another organization sees its "
        "own. `seats_total` is the block's seat count, `seats_free` how many are not assigned.",
        parameters=[LEASE_ID],
        responses={200: SeatSerializer(many=True)} | problem_responses(401, 404, s404=LEASE_404),
        examples=[SEAT_EXAMPLE],
    ),
    create=extend_schema(
        summary="Assign a seat",
        description="For the leaseholder's owners and admins (a group's admins), while the "
        "lease has not ended, up to the block's seat count. On a group's lease, seats go to "
        "its active members; on a buyer's, to its members, its client devices and any "
        "telephone number. Once a lease has a seat, its jobs run under seats (`seat` of "
        "`POST /jobs/`), also those of seat holders of other organizations.",
        parameters=[LEASE_ID, *IDEMPOTENCY_PARAMETERS],
        request={"application/json": HOLDER_REQUEST_SCHEMA},
        responses={201: SeatSerializer}
        | problem_responses(
            *CHANGE_WITH_BODY,
            s400=HOLDER_400,
            s403=f"`not_allowed` (not an owner or admin of the leaseholder), {PERSON_403}.",
            s404=f"{LEASE_404[:-1]}; or `device_not_found`.",
            s409="`seats_full`, `already_seated`, `lease_ended`, or `idempotency_in_progress`.",
            s422="`not_eligible` (no member of the leaseholder or group has the address, "
            "device or number), `invalid_email`, `invalid_phone_number`, or "
            "`idempotency_key_reused`.",
        ),
        examples=[*INVITE_EXAMPLES, SEAT_EXAMPLE, SEATS_FULL_EXAMPLE],
    ),
    destroy=extend_schema(
        summary="Release a seat",
        description="By the leaseholder's owners and admins, or by a user giving up its own "
        "seat. The seat is free for another at once; its jobs stay attributed to it.",
        parameters=[LEASE_ID, SEAT_ID],
        responses={204: OpenApiResponse(description="Released.")}
        | problem_responses(
            *CHANGE,
            s403=f"`not_allowed`, {PERSON_403}.",
            s404=SEAT_404,
            s409="`already_released`.",
        ),
    ),
)
class LeaseSeatViewSet(ScopedViewSet):
    """Seats of a lease the caller holds (or holds a seat on); any other lease is a 404."""

    serializer_class = SeatSerializer
    pagination_class = SeatPagination
    missing = ("seat_not_found", "No active seat of this lease has this id.")

    @cached_property
    def lease(self) -> Lease:
        lease = (
            Lease.objects.select_related("block", "winner")
            .filter(pk=id_of(self.kwargs["lease_id"]))
            .first()
        )
        if lease is None or not (self.holder_side_of(lease) or self.seated_on(lease)):
            raise not_found(
                "lease_not_found", "No lease of yours, nor one you hold a seat on, has this id."
            )
        return lease

    def holder_side_of(self, lease: Lease) -> bool:
        """The caller acts for the leaseholder, or the acting person is one of its members."""
        organization = self.acting_organization
        if organization is not None and organization.pk == lease.winner_id:
            return True
        return (
            self.acting_user is not None
            and Membership.objects.filter(
                user=self.acting_user, organization_id=lease.winner_id
            ).exists()
        )

    def seated_on(self, lease: Lease) -> bool:
        organization = self.acting_organization
        if organization is None:
            return False
        return seat_holder_exists(lease=lease, user=self.acting_user, organization=organization)

    @cached_property
    def holder_side(self) -> bool:
        return self.holder_side_of(self.lease)

    def scoped_queryset(self):
        seats = seats_active(self.lease)
        if self.holder_side:
            return seats
        # a seat holder of another organization sees only what it holds (as auctions.seats
        # counts a holder: its user, its client devices, and their telephone numbers)
        organization = self.acting_organization
        phones = ClientDevice.objects.filter(organization=organization).exclude(phone_number="")
        held = Q(kind=MemberKind.DEVICE, device__organization=organization) | Q(
            kind=MemberKind.PHONE, phone_number__in=phones.values("phone_number")
        )
        if self.acting_user is not None:
            held |= Q(kind=MemberKind.USER, user=self.acting_user)
        return seats.filter(held)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["usage"] = seat_usage(self.lease)
        return context

    def eligible_device(self, value) -> ClientDevice:
        """A client device that may hold a seat: on a group's lease one of its device members,
        else one of the leaseholder's devices."""
        lease = self.lease
        group = group_of(lease.winner)
        if group is not None:
            devices = ClientDevice.objects.filter(
                group_memberships__group=group, group_memberships__status=MemberStatus.ACTIVE
            )
        else:
            devices = ClientDevice.objects.filter(organization_id=lease.winner_id)
        return device_named(devices, value)

    @idempotent
    def create(self, request, *args, **kwargs):
        user = self.person_required()
        lease = self.lease
        if not seats_manageable(lease, user):
            # before looking anything up: only the leaseholder's managers learn who may sit
            raise refusal_problem(
                GroupRefused(
                    "not_allowed", f"Only the owners and admins of {lease.winner} do this."
                )
            )
        values = validated(HolderSerializer, request)
        holder = {}
        if values["kind"] == MemberKind.USER:
            holder["email"] = email_checked(values["email"])
        elif values["kind"] == MemberKind.DEVICE:
            holder["device"] = self.eligible_device(values["device"])
        else:
            holder["phone_number"] = values["phone_number"]
        with refusals_as_problems():
            seat = seat_assign(lease=lease, by=user, kind=values["kind"], **holder)
        return Response(self.get_serializer(seat).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        user = self.person_required()
        with refusals_as_problems():
            seat_release(seat=self.get_object(), by=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
