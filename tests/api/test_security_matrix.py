"""Object-level security of the partner API: a matrix over every operation of the OpenAPI
schema, with two organizations of each kind (providers, recipients, buying groups).

Organization A calls every operation whose path names an object, for the objects of
organization B, with an API key and signed in, with every method the operation has. The
answer must be a 404 (or a 403 the schema documents) that says no more than the answer for an
id nothing has: the same status, code and detail (numbers aside), so it does not even confirm
that B's object exists. Nothing that existed before the call may change, and nothing new may
point at B's objects. A's lists show none of B's ids; a creation naming B's objects in its
body is refused like one naming objects that do not exist; a creation naming nothing of
anyone's is stamped with A's organization, whatever owner the body claims.

Every operation of the schema has an entry here or is listed as public with its reason; a
test compares the two sets, so a new endpoint without an entry fails it. Each test gathers
every leak of its operation before failing, and names for each the operation, the method,
who called, and what answered or changed.
"""

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from auctions.groups import member_invite_user
from auctions.models import BuyingGroup, GroupMember, GroupOffer, Lease, ServiceBlock
from auctions.seats import seat_assign
from billing.models import Card, LineItem, Rating, Settlement, Statement
from billing.ratings import provider_rating_summary, recipient_rating_summary
from billing.statements import (
    billing_period_of,
    settlements_build,
    statement_mark_paid,
    statements_build,
)
from marketplace.models import ApiKeyScope, ClientDevice, OrganizationKind
from marketplace.services import api_key_create
from providers.models import Network, Offer, RoutingPath, Service
from segmentation.jobfiles import job_dir
from segmentation.models import Job, SegmentationProfile, ServiceRequest, WorkItem
from segmentation.service_requests import PathOffer, availability_submit
from tests.captures import CAPTURES_DIR
from tests.factories import (
    AuctionFactory,
    ClientDeviceFactory,
    JobFactory,
    LeaseFactory,
    NetworkFactory,
    OfferFactory,
    OrganizationFactory,
    PlannedJobFactory,
    ProviderRatingFactory,
    RecipientRatingFactory,
    RoutingPathFactory,
    RoutingPathHopFactory,
    SegmentationProfileFactory,
    ServiceBlockFactory,
    ServiceRequestFactory,
    VerifiedProviderFactory,
    WebhookDeliveryFactory,
    WebhookEndpointFactory,
    WorkItemFactory,
    buying_group,
    card_on_file,
    group_joined,
    member_of,
)

pytestmark = pytest.mark.django_db

API = "/api/v1"
MISSING_ID = 987_654_321  # no row of any table has it
MISSING_NUMBER = "ST-209901-98765-USD-ALL"  # no statement has it
CANARY_B = "CANARYB"  # in the names of B's private objects: never in an answer to A
CAPTURE = CAPTURES_DIR / "tls.pcap"
KINDS = ("provider", "recipient", "group")
AUTHS = ("key", "session")


# --- the two worlds -------------------------------------------------------------------------------


@dataclass
class Side:
    """One organization of each kind, and their objects (all of one side, never the other's)."""

    tag: str
    orgs: dict[str, Any] = field(default_factory=dict)  # kind -> Organization
    users: dict[str, Any] = field(default_factory=dict)  # kind -> the user who acts for it
    provider: Any = None
    group: Any = None
    o: dict[str, Any] = field(default_factory=dict)  # name -> object
    claim_token: str = ""
    rows: set = field(default_factory=set)  # B only: (model label, pk) of every row it has
    org_ids: set = field(default_factory=set)  # its organizations, payers' included


@dataclass
class World:
    a: Side
    b: Side


def _ago(**kwargs):
    return timezone.now() - timedelta(**kwargs)


def _ahead(**kwargs):
    return timezone.now() + timedelta(**kwargs)


def side_build(tag: str) -> Side:
    """A provider, a recipient and a buying group of one side, each with the objects the API
    shows: every private name carries the side's canary."""
    canary = f"CANARY{tag}"
    side = Side(tag=tag)

    # the provider: verified, processing at its site (its partner agent claims work)
    provider = VerifiedProviderFactory(
        organization__name=f"Provider {tag}",
        organization__slug=f"provider-{tag.lower()}",
        work_location="partner",
    )
    side.provider = provider
    side.orgs["provider"] = provider.organization
    side.users["provider"] = member_of(provider.organization)
    network = NetworkFactory(provider=provider, name=f"{canary} backbone")
    path = RoutingPathFactory(provider=provider, name=f"{canary} path", capacity_mbps=1000)
    RoutingPathHopFactory(path=path, network=network, position=0)
    offer = OfferFactory(provider=provider, service=Service.SEGMENTATION)
    block = ServiceBlockFactory(provider=provider, description=f"{canary} block")
    auction = AuctionFactory(block__provider=provider)
    endpoint = WebhookEndpointFactory(provider=provider, description=f"{canary} hook")
    delivery = WebhookDeliveryFactory(endpoint=endpoint)
    side.o.update(
        network=network,
        path=path,
        offer=offer,
        block=block,
        auction=auction,
        endpoint=endpoint,
        delivery=delivery,
    )

    # the recipient: a card, a device, a profile, a lease shared by a seat, a job on it, a
    # request sent to its side's provider and answered, an ended lease rated both ways, a
    # planned job
    recipient = OrganizationFactory(
        kind=OrganizationKind.RECIPIENT, name=f"Recipient {tag}", slug=f"recipient-{tag.lower()}"
    )
    side.orgs["recipient"] = recipient
    owner = side.users["recipient"] = member_of(recipient)
    card = card_on_file(recipient)
    device = ClientDeviceFactory(organization=recipient, name=f"{canary} probe")
    profile = SegmentationProfileFactory(organization=recipient, name=f"{canary} profile")
    lease = LeaseFactory(winner=recipient, block__provider=provider, block__seats=3)
    seat = seat_assign(lease=lease, by=owner, kind="device", device=device)
    job = JobFactory(
        organization=recipient,
        lease=lease,
        input_name=f"{canary}.pcap",
        manifest={"segments": [], "note": canary},
        finished_at=timezone.now(),
    )
    job_dir(job.pk).mkdir(parents=True, exist_ok=True)
    (job_dir(job.pk) / "output.pcap").write_bytes(CAPTURE.read_bytes())
    service_request = ServiceRequestFactory(organization=recipient, profile=profile)
    service_request.broadcast_to.add(provider)
    message = availability_submit(
        provider=provider,
        service_request=service_request,
        paths=[PathOffer(path_id=path.pk, bandwidth_mbps=500)],
        price_per_gb_minor=123,
        currency="USD",
        valid_until=_ahead(minutes=30),
    )
    ended = LeaseFactory(
        winner=recipient,
        block__provider=provider,
        block__starts_at=_ago(days=2),
        block__ends_at=_ago(days=1),
    )
    rating_of_provider = ProviderRatingFactory(lease=ended, comment=f"{canary} rating")
    rating_of_recipient = RecipientRatingFactory(lease=ended, comment=f"{canary} rating")
    planned_job = PlannedJobFactory(organization=recipient, input_name=f"{canary}-planned.pcap")
    WorkItemFactory(job=planned_job, provider=provider)
    side.o.update(
        card=card,
        device=device,
        profile=profile,
        lease=lease,
        seat=seat,
        job=job,
        service_request=service_request,
        message=message,
        ended_lease=ended,
        rating_of_provider=rating_of_provider,
        rating_of_recipient=rating_of_recipient,
        planned_job=planned_job,
    )

    # work at the provider's site: one item claimed (with a token), one waiting
    side.claim_token = f"claim-token-{tag}"
    processing = JobFactory(
        organization=recipient, lease=lease, status="processing", input_name=f"{canary}-w.pcap"
    )
    claimed = WorkItemFactory(
        job=processing,
        provider=provider,
        location="partner",
        status="claimed",
        number=0,
        segment_path="split/capture-0000.pcap",
        claim_token_hash=hashlib.sha256(side.claim_token.encode()).hexdigest(),
        claim_deadline=_ahead(hours=1),
    )
    waiting = WorkItemFactory(
        job=processing,
        provider=provider,
        location="partner",
        status="pending",
        number=1,
        segment_path="split/capture-0001.pcap",
    )
    for item in (claimed, waiting):
        segment = job_dir(processing.pk) / item.segment_path
        segment.parent.mkdir(parents=True, exist_ok=True)
        segment.write_bytes(CAPTURE.read_bytes())
    side.o.update(work_job=processing, claimed_item=claimed, waiting_item=waiting)

    # the buying group: an admin payer, a second payer, an open invitation, a lease with a
    # seat, an open offer of its side's provider
    group, admin, admin_member = buying_group(name=f"Group {tag}")
    side.group = group
    side.orgs["group"] = group.organization
    side.users["group"] = admin
    payer = group_joined(group, share_bps=3000, cap_minor=20_000)
    # the invitation is for the recipient's owner: it answers it (and lists it) with its key
    invitation = member_invite_user(group=group, by=admin, email=side.users["recipient"].email)
    group_lease = LeaseFactory(winner=group.organization, block__provider=provider, block__seats=3)
    group_seat = seat_assign(lease=group_lease, by=admin, kind="user", email=payer.user.email)
    offered = ServiceBlockFactory(provider=provider)
    group_offer = GroupOffer.objects.create(
        provider=provider,
        group=group,
        block=offered,
        price_minor=30_000,
        currency=group.currency,
        deadline=offered.starts_at - timedelta(hours=1),
        message=f"{canary} offer",
    )
    side.o.update(
        admin_member=admin_member,
        payer_member=payer,
        invitation=invitation,
        group_lease=group_lease,
        group_seat=group_seat,
        group_offer=group_offer,
    )
    return side


def tables() -> list:
    """The models with a table of their own: no proxies, no unmanaged models (django-rq's
    dashboard, installed with Redis, has no table)."""
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if not model._meta.proxy and model._meta.managed
    ]


def row_keys() -> set[tuple[str, Any]]:
    """Every row of the database as (model label, primary key)."""
    return {
        (model._meta.label, pk)
        for model in tables()
        for pk in model._base_manager.values_list("pk", flat=True)
    }


def world_build() -> World:
    a = side_build("A")
    existing = row_keys()
    b = side_build("B")
    b.rows = row_keys() - existing
    # the period's statements (every lease above is billed), paid, and the providers settled
    start, end = billing_period_of(timezone.now())
    for statement in statements_build(period_start=start, period_end=end):
        statement_mark_paid(statement=statement)
    settlements_build(period_start=start, period_end=end)
    for side in (a, b):
        recipient = side.orgs["recipient"]
        side.o["statement"] = recipient.statements.filter(provider=None).first()
        side.o["settlement"] = side.provider.settlements.first()
        assert side.o["statement"] is not None and side.o["settlement"] is not None
    b.org_ids = {pk for label, pk in b.rows if label == "marketplace.Organization"}
    b.rows |= {
        (model._meta.label, pk)
        for model, pks in (
            (Statement, Statement.objects.filter(organization__in=b.org_ids)),
            (Settlement, Settlement.objects.filter(provider=b.provider)),
            (LineItem, LineItem.objects.filter(organization__in=b.org_ids)),
        )
        for pk in pks.values_list("pk", flat=True)
    }
    return World(a=a, b=b)


@pytest.fixture
def world(settings, tmp_path) -> World:
    settings.JOB_STORAGE_DIR = tmp_path / "jobs"
    return world_build()


# --- who calls ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    kind: str
    auth: str
    tag: str
    client: APIClient
    organization: Any

    @property
    def label(self) -> str:
        how = "API key" if self.auth == "key" else "signed in"
        return f"{self.kind} {self.tag} ({how})"


def principal_make(side: Side, kind: str, auth: str) -> Principal:
    organization, user = side.orgs[kind], side.users[kind]
    client = APIClient()
    if auth == "key":
        _, key = api_key_create(
            organization=organization, name="matrix", scope=ApiKeyScope.WRITE, created_by=user
        )
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    else:
        client.force_login(user)
        session = client.session
        session["organization_id"] = organization.pk
        session.save()
    return Principal(kind=kind, auth=auth, tag=side.tag, client=client, organization=organization)


@pytest.fixture
def attackers(world) -> list[Principal]:
    """Organization A of every kind, with an API key and signed in."""
    return [principal_make(world.a, kind, auth) for kind in KINDS for auth in AUTHS]


@pytest.fixture
def owners(world) -> dict[str, Principal]:
    """B's own API keys, to check that the objects the matrix names are really there."""
    return {kind: principal_make(world.b, kind, "key") for kind in KINDS}


# --- what the database holds ---------------------------------------------------------------------

IGNORED_MODELS = {Session}
IGNORED_FIELDS = {"last_used_at", "last_login"}  # API keys and users are touched on use


def snapshot() -> dict[str, dict[Any, dict]]:
    rows = {}
    for model in tables():
        if model in IGNORED_MODELS:
            continue
        pk = model._meta.pk.attname
        rows[model._meta.label] = {
            row[pk]: {k: v for k, v in row.items() if k not in IGNORED_FIELDS}
            for row in model._base_manager.values()
        }
    return rows


def db_changes(before: dict, after: dict, *, allowed_new: Callable[[str, dict], bool]) -> list:
    """What changed in rows that existed before, and new rows `allowed_new` does not excuse."""
    changes = []
    for label, rows in before.items():
        now = after.get(label, {})
        for pk, row in rows.items():
            if pk not in now:
                changes.append(f"deleted {label}#{pk}")
            elif now[pk] != row:
                fields = {k: (row[k], now[pk].get(k)) for k in row if now[pk].get(k) != row[k]}
                changes.append(f"changed {label}#{pk}: {fields}")
        for pk, row in now.items():
            if pk not in rows and not allowed_new(label, row):
                changes.append(f"created {label}#{pk}: {row}")
    return changes


def only_own_records(principal: Principal) -> Callable[[str, dict], bool]:
    """A refused call may leave a record of the caller's own: its idempotency record, or the
    failed job a refused upload is kept as (SPEC: refusals of jobs are recorded)."""

    def allowed(label: str, row: dict) -> bool:
        if label == "marketplace.IdempotencyRecord":
            return row["organization_id"] == principal.organization.pk
        if label == "segmentation.Job":
            return row["organization_id"] == principal.organization.pk and row["status"] == "failed"
        return False

    return allowed


# --- answers --------------------------------------------------------------------------------------


def answer_of(response) -> tuple:
    """What an answer tells: status, code, detail with its numbers blanked, extra members."""
    content_type = response.get("Content-Type", "")
    if "json" in content_type:
        body = response.json()
        if isinstance(body, dict):
            extra = sorted(set(body) - {"type", "title", "status", "detail", "instance", "code"})
            detail = re.sub(r"\d+", "#", str(body.get("detail", "")))
            return response.status_code, body.get("code"), detail, tuple(extra)
    text = re.sub(r"\d+", "#", response.content.decode(errors="replace")[:2000])
    return response.status_code, None, text, ()


def content_of(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    body: Any = None
    multipart: bool = False
    headers: dict = field(default_factory=dict)


def send(client: APIClient, call: Call):
    kwargs = {"headers": call.headers} if call.headers else {}
    if call.method == "GET":
        return client.get(call.url, **kwargs)
    if call.method == "DELETE":
        return client.delete(call.url, **kwargs)
    return client.generic(
        call.method,
        call.url,
        **_encoded(call.body, call.multipart),
        **kwargs,
    )


def _encoded(body, multipart: bool) -> dict:
    from rest_framework.test import APIRequestFactory

    factory = APIRequestFactory()
    data, content_type = factory._encode_data(
        body or {}, format="multipart" if multipart else "json"
    )
    return {"data": data, "content_type": content_type}


# --- the schema -----------------------------------------------------------------------------------

METHODS = ("get", "post", "put", "patch", "delete")
_schema_cache: dict = {}


def schema_operations() -> dict[tuple[str, str], dict]:
    """(path, METHOD) -> the operation, for every operation of the OpenAPI schema."""
    if not _schema_cache:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        for path, item in schema["paths"].items():
            for method, operation in item.items():
                if method in METHODS:
                    _schema_cache[(path, method.upper())] = operation
    return _schema_cache


def documents_403(path: str, method: str) -> bool:
    return "403" in schema_operations()[(path, method)]["responses"]


# --- the matrix -----------------------------------------------------------------------------------


def _b(w: World, name: str):
    return w.b.o[name]


def _a(w: World, name: str):
    return w.a.o[name]


@dataclass(frozen=True)
class Variant:
    """Path parameters naming B's objects, the same naming nothing, and which of B's kinds
    owns the object (its key must be able to read it: the matrix names real objects)."""

    label: str
    of_b: dict
    missing: dict
    owner: str | None = None


def one(name: str, owner: str | None, *, param: str = "id", attr: str = "pk"):
    def targets(w: World) -> list[Variant]:
        value = getattr(_b(w, name), attr)
        missing = MISSING_NUMBER if param == "number" else MISSING_ID
        return [Variant(f"B's {name}", {param: value}, {param: missing}, owner)]

    return targets


@dataclass(frozen=True)
class ObjectEntry:
    """An operation whose path names an object: called by A for B's objects."""

    targets: Callable[[World], list[Variant]]
    body: Callable[[World], Any] | None = None
    multipart: bool = False
    headers: Callable[[World], dict] | None = None


@dataclass(frozen=True)
class ListEntry:
    """A list of the caller's objects: A's shows none of B's."""

    forbidden: Callable[[World], set]
    owner: str
    key: str = "id"


@dataclass(frozen=True)
class NamingEntry:
    """A creation (or change) whose body names other objects: naming B's is refused exactly as
    naming objects that do not exist. `cases(w)` gives (label, path params, body naming B's,
    body naming nothing); it is called afresh for each request (uploads are read once)."""

    cases: Callable[[World], list[tuple[str, dict, dict, dict]]]
    multipart: bool = False


@dataclass(frozen=True)
class StampEntry:
    """A creation that names nothing of anyone's: what it creates is the caller's, whatever
    owner the body claims. `owner_of(pk)` is the organization that owns the created row."""

    body: Callable[[World, int], dict]
    owner_of: Callable[[int], int]


@dataclass(frozen=True)
class CustomEntry:
    """An operation without an object in its path that answers about the caller only."""

    check: Callable[[World, "Principal"], list[str]]


def _upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("capture.pcap", CAPTURE.read_bytes())


def _later(**kwargs) -> str:
    return _ahead(**kwargs).isoformat()


def members(w: World) -> list[Variant]:
    gb, ga = w.b.group.pk, w.a.group.pk
    admin_b, payer_b = _b(w, "admin_member").pk, _b(w, "payer_member").pk
    return [
        Variant(
            "B's group, its admin",
            {"group_id": gb, "id": admin_b},
            {"group_id": MISSING_ID, "id": MISSING_ID},
            "group",
        ),
        Variant(
            "B's group, its payer",
            {"group_id": gb, "id": payer_b},
            {"group_id": MISSING_ID, "id": MISSING_ID},
            "group",
        ),
        Variant(
            "A's group, B's payer",
            {"group_id": ga, "id": payer_b},
            {"group_id": ga, "id": MISSING_ID},
        ),
    ]


def group_offers(w: World) -> list[Variant]:
    gb, ga, offer = w.b.group.pk, w.a.group.pk, _b(w, "group_offer").pk
    return [
        Variant(
            "B's group, its offer",
            {"group_id": gb, "id": offer},
            {"group_id": MISSING_ID, "id": MISSING_ID},
            "group",
        ),
        Variant(
            "A's group, B's offer",
            {"group_id": ga, "id": offer},
            {"group_id": ga, "id": MISSING_ID},
        ),
    ]


def the_group(param: str):
    def targets(w: World) -> list[Variant]:
        return [Variant("B's group", {param: w.b.group.pk}, {param: MISSING_ID}, "group")]

    return targets


def leases(w: World) -> list[Variant]:
    return [
        Variant(
            "B's lease", {"lease_id": _b(w, "lease").pk}, {"lease_id": MISSING_ID}, "recipient"
        ),
        Variant(
            "B's group's lease",
            {"lease_id": _b(w, "group_lease").pk},
            {"lease_id": MISSING_ID},
            "group",
        ),
    ]


def leases_by_id(w: World) -> list[Variant]:
    """B's leases as objects of their own (`leases/{id}/`): its recipient's, its group's, and,
    seen from its provider, a lease of its block."""
    return [
        Variant("B's lease", {"id": _b(w, "lease").pk}, {"id": MISSING_ID}, "recipient"),
        Variant("B's group's lease", {"id": _b(w, "group_lease").pk}, {"id": MISSING_ID}, "group"),
        Variant("B's ended lease", {"id": _b(w, "ended_lease").pk}, {"id": MISSING_ID}, "provider"),
    ]


def seats(w: World) -> list[Variant]:
    lease_b, group_lease_b = _b(w, "lease").pk, _b(w, "group_lease").pk
    seat_b, group_seat_b = _b(w, "seat").pk, _b(w, "group_seat").pk
    lease_a, group_lease_a = _a(w, "lease").pk, _a(w, "group_lease").pk
    nothing = {"lease_id": MISSING_ID, "id": MISSING_ID}
    return [
        Variant("B's lease, its seat", {"lease_id": lease_b, "id": seat_b}, nothing),
        Variant(
            "B's group's lease, its seat", {"lease_id": group_lease_b, "id": group_seat_b}, nothing
        ),
        Variant(
            "A's lease, B's seat",
            {"lease_id": lease_a, "id": seat_b},
            {"lease_id": lease_a, "id": MISSING_ID},
        ),
        Variant(
            "A's group's lease, B's group's seat",
            {"lease_id": group_lease_a, "id": group_seat_b},
            {"lease_id": group_lease_a, "id": MISSING_ID},
        ),
    ]


def ratings(w: World) -> list[Variant]:
    return [
        Variant(
            "B's rating of its provider",
            {"id": _b(w, "rating_of_provider").pk},
            {"id": MISSING_ID},
            "recipient",
        ),
        Variant(
            "B's rating of its recipient",
            {"id": _b(w, "rating_of_recipient").pk},
            {"id": MISSING_ID},
            "provider",
        ),
    ]


def work_items(w: World) -> list[Variant]:
    return [
        Variant(
            "B's claimed item", {"id": _b(w, "claimed_item").pk}, {"id": MISSING_ID}, "provider"
        ),
        Variant("B's waiting item", {"id": _b(w, "waiting_item").pk}, {"id": MISSING_ID}),
    ]


def b_token(w: World) -> dict:
    """A's calls carry B's real claim token: knowing it must not be enough."""
    return {"X-Claim-Token": w.b.claim_token}


NETWORK_CHANGE = {"name": "Taken over", "technology": "dsl", "region": "x"}
PATH_CHANGE = {"name": "Taken over", "capacity_mbps": 1, "hops": []}
OFFER_CHANGE = {
    "service": "dedupe",
    "price_per_gb_minor": 0,
    "price_per_minute_minor": 0,
    "currency": "USD",
}
SCORES = {"satisfied": True, "quality": 1, "communication": 1, "delivery": 1}


def _const(value) -> Callable[[World], Any]:
    return lambda w: value


OBJECTS: dict[tuple[str, str], ObjectEntry] = {}


def objects(path: str, targets, **bodies) -> None:
    """Register the operations of `path`: `GET=None` (no body), `PATCH=body or callable`,
    `POST_multipart=callable` for an upload."""
    for key, body in bodies.items():
        method, _, how = key.partition("_")
        if body is not None and not callable(body):
            body = _const(body)
        OBJECTS[(f"{API}{path}", method)] = ObjectEntry(
            targets=targets,
            body=body,
            multipart=how == "multipart",
            headers=b_token if path.startswith("/work/") else None,
        )


objects("/blocks/{id}/", one("block", "provider"), GET=None)
objects("/cards/{id}/", one("card", None), DELETE=None)
objects("/devices/{id}/", one("device", "recipient"), GET=None, DELETE=None)
objects(
    "/group-invitations/{id}/accept",
    one("invitation", None),
    POST=lambda w: {
        "role": "payer",
        "paying_organization": w.a.orgs["recipient"].pk,
        "cap_minor": 1000,
    },
)
objects("/group-invitations/{id}/decline", one("invitation", None), POST={})
objects("/group-offers/{id}/", one("group_offer", "provider"), GET=None)
objects("/group-offers/{id}/withdraw", one("group_offer", None), POST={})
objects("/groups/{id}/", the_group("id"), GET=None)
objects(
    "/groups/{group_id}/members/",
    the_group("group_id"),
    GET=None,
    POST={"kind": "user", "email": "intruder@x.test"},
)
objects(
    "/groups/{group_id}/members/{id}/",
    members,
    GET=None,
    PATCH={"role": "sponsored"},
    DELETE=None,
)
objects("/groups/{group_id}/members/{id}/admin", members, POST={"is_admin": True})
objects("/groups/{group_id}/offers/", the_group("group_id"), GET=None)
objects("/groups/{group_id}/offers/{id}/", group_offers, GET=None)
objects("/groups/{group_id}/offers/{id}/accept", group_offers, POST={})
objects("/jobs/{id}/", one("job", "recipient"), GET=None)
objects("/jobs/{id}/manifest", one("job", "recipient"), GET=None)
objects("/jobs/{id}/output", one("job", "recipient"), GET=None)
objects("/leases/{id}/", leases_by_id, GET=None)
objects("/leases/{lease_id}/seats/", leases, GET=None, POST={"kind": "user", "email": "x@x.test"})
objects("/leases/{lease_id}/seats/{id}/", seats, DELETE=None)
for _resource, _name, _change, _patch in (
    ("networks", "network", NETWORK_CHANGE, {"name": "Taken over"}),
    ("routing-paths", "path", PATH_CHANGE, {"name": "Taken over"}),
    ("offers", "offer", OFFER_CHANGE, {"is_active": False}),
):
    objects(
        f"/{_resource}/{{id}}/",
        one(_name, "provider"),
        GET=None,
        PUT=_change,
        PATCH=_patch,
        DELETE=None,
    )
objects("/ratings/{id}/", ratings, GET=None)
objects("/ratings/{id}/reply/", ratings, POST={"text": "Taken over"})
objects("/segmentation-profiles/{id}/", one("profile", "recipient"), GET=None)
_request = one("service_request", "recipient")
objects("/service-requests/{id}/", _request, GET=None)
objects("/service-requests/{id}/accept/", _request, POST_multipart=lambda w: {"file": _upload()})
objects(
    "/service-requests/{id}/availability/",
    _request,
    GET=None,
    POST=lambda w: {
        "paths": [{"path": _a(w, "path").pk, "bandwidth_mbps": 1}],
        "price_per_gb_minor": 1,
        "currency": "USD",
        "valid_until": _later(minutes=20),
    },
)
objects("/service-requests/{id}/cancel/", _request, POST={})
objects("/service-requests/{id}/negotiation/", _request, POST={})
objects("/service-requests/{id}/plan/", _request, GET=None)
objects("/service-requests/{id}/quotes/", _request, POST={"price_per_gb_minor": 1})
objects("/settlements/{id}/", one("settlement", "provider"), GET=None)
objects("/settlements/{id}/csv", one("settlement", "provider"), GET=None)
objects(
    "/statements/{number}/", one("statement", "recipient", param="number", attr="number"), GET=None
)
objects(
    "/statements/{number}/pdf",
    one("statement", "recipient", param="number", attr="number"),
    GET=None,
)
objects("/work/{id}/input", work_items, GET=None)
objects(
    "/work/{id}/result",
    work_items,
    POST_multipart=lambda w: {"file": _upload(), "claim_token": w.b.claim_token},
)
objects("/work/{id}/fail", work_items, POST=lambda w: {"claim_token": w.b.claim_token})


def _of_b(model, **lookups) -> Callable[[World], set]:
    """The ids of `model`'s rows of B (`lookups` may use {b_orgs} and {b_provider})."""

    def forbidden(w: World) -> set:
        values = {
            key: (w.b.org_ids if value == "b_orgs" else w.b.provider)
            for key, value in lookups.items()
        }
        return set(model.objects.filter(**values).values_list("pk", flat=True))

    return forbidden


LISTS: dict[tuple[str, str], ListEntry] = {
    (f"{API}/blocks/", "GET"): ListEntry(_of_b(ServiceBlock, provider="b_provider"), "provider"),
    (f"{API}/cards/", "GET"): ListEntry(
        _of_b(Card, account__organization__in="b_orgs"), "recipient"
    ),
    (f"{API}/devices/", "GET"): ListEntry(
        _of_b(ClientDevice, organization__in="b_orgs"), "recipient"
    ),
    (f"{API}/group-invitations/", "GET"): ListEntry(
        lambda w: (
            {_b(w, "invitation").pk} | _of_b(GroupMember, group__organization__in="b_orgs")(w)
        ),
        "recipient",
    ),
    (f"{API}/group-offers/", "GET"): ListEntry(
        _of_b(GroupOffer, provider="b_provider"), "provider"
    ),
    (f"{API}/groups/", "GET"): ListEntry(_of_b(BuyingGroup, organization__in="b_orgs"), "group"),
    (f"{API}/jobs/", "GET"): ListEntry(_of_b(Job, organization__in="b_orgs"), "recipient"),
    (f"{API}/leases/", "GET"): ListEntry(
        lambda w: (
            _of_b(Lease, winner__in="b_orgs")(w) | _of_b(Lease, block__provider="b_provider")(w)
        ),
        "recipient",
    ),
    (f"{API}/networks/", "GET"): ListEntry(_of_b(Network, provider="b_provider"), "provider"),
    (f"{API}/offers/", "GET"): ListEntry(_of_b(Offer, provider="b_provider"), "provider"),
    (f"{API}/routing-paths/", "GET"): ListEntry(
        _of_b(RoutingPath, provider="b_provider"), "provider"
    ),
    (f"{API}/ratings/", "GET"): ListEntry(
        lambda w: (
            _of_b(Rating, provider="b_provider")(w) | _of_b(Rating, recipient__in="b_orgs")(w)
        ),
        "recipient",
    ),
    (f"{API}/segmentation-profiles/", "GET"): ListEntry(
        _of_b(SegmentationProfile, organization__in="b_orgs"), "recipient"
    ),
    (f"{API}/service-requests/", "GET"): ListEntry(
        _of_b(ServiceRequest, organization__in="b_orgs"), "recipient"
    ),
    (f"{API}/settlements/", "GET"): ListEntry(_of_b(Settlement, provider="b_provider"), "provider"),
    (f"{API}/statements/", "GET"): ListEntry(
        lambda w: set(
            Statement.objects.filter(organization__in=w.b.org_ids).values_list("number", flat=True)
        ),
        "recipient",
        key="number",
    ),
}


def _rating_bodies(w: World) -> list[tuple[str, dict, dict, dict]]:
    slug_b = w.b.provider.organization.slug
    ended, job, planned = _b(w, "ended_lease").pk, _b(w, "job").pk, _b(w, "planned_job").pk
    provider = {"kind": "provider", **SCORES}
    recipient = {"kind": "recipient", "paid_satisfactorily": False}
    return [
        (
            "rate B's lease's provider",
            {},
            {**provider, "lease": ended},
            {**provider, "lease": MISSING_ID},
        ),
        (
            "rate B's leased job",
            {},
            {**provider, "job": job, "provider": slug_b},
            {**provider, "job": MISSING_ID, "provider": slug_b},
        ),
        (
            "rate B's planned job",
            {},
            {**provider, "job": planned, "provider": slug_b},
            {**provider, "job": MISSING_ID, "provider": slug_b},
        ),
        (
            "rate B's lease's recipient",
            {},
            {**recipient, "lease": ended},
            {**recipient, "lease": MISSING_ID},
        ),
        (
            "rate B's leased job's recipient",
            {},
            {**recipient, "job": job},
            {**recipient, "job": MISSING_ID},
        ),
        (
            "rate B's planned job's recipient",
            {},
            {**recipient, "job": planned},
            {**recipient, "job": MISSING_ID},
        ),
    ]


def _job_bodies(w: World) -> list[tuple[str, dict, dict, dict]]:
    base = {"method": "packet-count", "param": "20"}
    lease_a = _a(w, "lease").pk
    return [
        (
            "a job on B's lease",
            {},
            {**base, "file": _upload(), "lease": _b(w, "lease").pk},
            {**base, "file": _upload(), "lease": MISSING_ID},
        ),
        (
            "a job with B's profile",
            {},
            {"file": _upload(), "lease": lease_a, "profile": _b(w, "profile").pk},
            {"file": _upload(), "lease": lease_a, "profile": MISSING_ID},
        ),
        (
            "a job under B's seat",
            {},
            {**base, "file": _upload(), "lease": lease_a, "seat": _b(w, "seat").pk},
            {**base, "file": _upload(), "lease": lease_a, "seat": MISSING_ID},
        ),
        (
            "a job on B's lease under its seat",
            {},
            {**base, "file": _upload(), "lease": _b(w, "lease").pk, "seat": _b(w, "seat").pk},
            {**base, "file": _upload(), "lease": MISSING_ID, "seat": MISSING_ID},
        ),
    ]


def _request_bodies(w: World) -> list[tuple[str, dict, dict, dict]]:
    base = {"data_bytes": 10**9, "deadline": _later(hours=2)}
    profile_a = _a(w, "profile").pk
    return [
        (
            "a request with B's profile",
            {},
            {**base, "profile": _b(w, "profile").pk},
            {**base, "profile": MISSING_ID},
        ),
        (
            "a request for B's device",
            {},
            {**base, "profile": profile_a, "device": _b(w, "device").pk},
            {**base, "profile": profile_a, "device": MISSING_ID},
        ),
    ]


NAMING: dict[tuple[str, str], NamingEntry] = {
    (f"{API}/auctions/", "POST"): NamingEntry(
        lambda w: [
            (
                "an auction of B's block",
                {},
                {
                    "block": _b(w, "block").pk,
                    "closes_at": _later(hours=2),
                    "currency": "USD",
                    "start_price_minor": 1000,
                },
                {
                    "block": MISSING_ID,
                    "closes_at": _later(hours=2),
                    "currency": "USD",
                    "start_price_minor": 1000,
                },
            )
        ]
    ),
    (f"{API}/group-offers/", "POST"): NamingEntry(
        lambda w: [
            (
                "an offer of B's block",
                {},
                {
                    "group": w.a.group.organization.slug,
                    "block": _b(w, "block").pk,
                    "price_minor": 1000,
                    "deadline": _later(days=1),
                },
                {
                    "group": w.a.group.organization.slug,
                    "block": MISSING_ID,
                    "price_minor": 1000,
                    "deadline": _later(days=1),
                },
            )
        ]
    ),
    (f"{API}/groups/", "POST"): NamingEntry(
        lambda w: [
            (
                "a group paid by B",
                {},
                {
                    "name": "Intruders",
                    "currency": "USD",
                    "role": "payer",
                    "paying_organization": w.b.orgs["recipient"].pk,
                    "cap_minor": 1000,
                },
                {
                    "name": "Intruders",
                    "currency": "USD",
                    "role": "payer",
                    "paying_organization": MISSING_ID,
                    "cap_minor": 1000,
                },
            )
        ]
    ),
    (f"{API}/groups/{{group_id}}/members/", "POST"): NamingEntry(
        lambda w: [
            (
                "A's group invites B's device",
                {"group_id": w.a.group.pk},
                {"kind": "device", "device": _b(w, "device").pk},
                {"kind": "device", "device": MISSING_ID},
            )
        ]
    ),
    (f"{API}/groups/{{group_id}}/members/{{id}}/", "PATCH"): NamingEntry(
        lambda w: [
            (
                "A's admin pledges B's money",
                {"group_id": w.a.group.pk, "id": _a(w, "admin_member").pk},
                {"paying_organization": w.b.orgs["recipient"].pk},
                {"paying_organization": MISSING_ID},
            )
        ]
    ),
    (f"{API}/groups/{{group_id}}/offers/{{id}}/accept", "POST"): NamingEntry(
        lambda w: [
            (
                "A's offer accepted as B's payer",
                {"group_id": w.a.group.pk, "id": _a(w, "group_offer").pk},
                {"member": _b(w, "payer_member").pk},
                {"member": MISSING_ID},
            )
        ]
    ),
    (f"{API}/jobs/", "POST"): NamingEntry(_job_bodies, multipart=True),
    (f"{API}/leases/{{lease_id}}/seats/", "POST"): NamingEntry(
        lambda w: [
            (
                "A's lease seats B's device",
                {"lease_id": _a(w, "lease").pk},
                {"kind": "device", "device": _b(w, "device").pk},
                {"kind": "device", "device": MISSING_ID},
            ),
            (
                "A's group's lease seats B's device",
                {"lease_id": _a(w, "group_lease").pk},
                {"kind": "device", "device": _b(w, "device").pk},
                {"kind": "device", "device": MISSING_ID},
            ),
        ]
    ),
    (f"{API}/ratings/", "POST"): NamingEntry(_rating_bodies),
    (f"{API}/routing-paths/", "POST"): NamingEntry(
        lambda w: [
            (
                "a path over B's network",
                {},
                {"name": "Sneaky", "capacity_mbps": 10, "hops": [_b(w, "network").pk]},
                {"name": "Sneaky", "capacity_mbps": 10, "hops": [MISSING_ID]},
            )
        ]
    ),
    (f"{API}/routing-paths/{{id}}/", "PATCH"): NamingEntry(
        lambda w: [
            (
                "A's path over B's network",
                {"id": _a(w, "path").pk},
                {"hops": [_b(w, "network").pk]},
                {"hops": [MISSING_ID]},
            )
        ]
    ),
    (f"{API}/routing-paths/{{id}}/", "PUT"): NamingEntry(
        lambda w: [
            (
                "A's path replaced over B's network",
                {"id": _a(w, "path").pk},
                {"name": "Sneaky", "capacity_mbps": 10, "hops": [_b(w, "network").pk]},
                {"name": "Sneaky", "capacity_mbps": 10, "hops": [MISSING_ID]},
            )
        ]
    ),
    (f"{API}/group-invitations/{{id}}/accept", "POST"): NamingEntry(
        lambda w: [
            (
                # A's group invited A's recipient's owner, who answers with its key or signed in
                "A's invitee pledges B's money",
                {"id": _a(w, "invitation").pk},
                {"role": "payer", "paying_organization": w.b.orgs["recipient"].pk, "cap_minor": 1},
                {"role": "payer", "paying_organization": MISSING_ID, "cap_minor": 1},
            )
        ]
    ),
    (f"{API}/service-requests/", "POST"): NamingEntry(_request_bodies),
    (f"{API}/service-requests/{{id}}/availability/", "POST"): NamingEntry(
        lambda w: [
            (
                "A's answer offers B's path",
                {"id": _a(w, "service_request").pk},
                {
                    "paths": [{"path": _b(w, "path").pk, "bandwidth_mbps": 1}],
                    "price_per_gb_minor": 1,
                    "currency": "USD",
                    "valid_until": _later(minutes=20),
                },
                {
                    "paths": [{"path": MISSING_ID, "bandwidth_mbps": 1}],
                    "price_per_gb_minor": 1,
                    "currency": "USD",
                    "valid_until": _later(minutes=20),
                },
            )
        ]
    ),
}


STAMPS: dict[tuple[str, str], StampEntry] = {
    (f"{API}/blocks/", "POST"): StampEntry(
        lambda w, n: {
            "starts_at": _later(days=5 + n),
            "ends_at": _later(days=5 + n, hours=2),
            "max_rate_mbps": 100,
            "min_rate_mbps": 10,
            "seats": 1,
            "provider": w.b.provider.pk,
        },
        lambda pk: ServiceBlock.objects.get(pk=pk).provider.organization_id,
    ),
    (f"{API}/devices/", "POST"): StampEntry(
        lambda w, n: {
            "name": f"Stamped {n}",
            "identifier": f"SN-STAMP-{n}",
            "phone_number": f"+1415555{n:04d}",
            "organization": w.b.orgs["recipient"].pk,
        },
        lambda pk: ClientDevice.objects.get(pk=pk).organization_id,
    ),
    (f"{API}/networks/", "POST"): StampEntry(
        lambda w, n: {
            "name": f"Stamped {n}",
            "technology": "fiber",
            "region": "x",
            "provider": w.b.provider.pk,
        },
        lambda pk: Network.objects.get(pk=pk).provider.organization_id,
    ),
    (f"{API}/offers/", "POST"): StampEntry(
        lambda w, n: {
            "service": ["dedupe", "compress", "anonymize-ip", "strip-payload", "bpf-filter"][n % 5],
            "price_per_gb_minor": 1,
            "price_per_minute_minor": 1,
            "currency": "USD",
            "provider": w.b.provider.pk,
        },
        lambda pk: Offer.objects.get(pk=pk).provider.organization_id,
    ),
    (f"{API}/segmentation-profiles/", "POST"): StampEntry(
        lambda w, n: {
            "name": f"Stamped {n}",
            "method": "connection",
            "organization": w.b.orgs["recipient"].pk,
        },
        lambda pk: SegmentationProfile.objects.get(pk=pk).organization_id,
    ),
}


def _claim_takes_only_own_work(w: World, principal: Principal) -> list[str]:
    b_items = {_b(w, "claimed_item").pk, _b(w, "waiting_item").pk}
    before = {item.pk: item.status for item in WorkItem.objects.filter(pk__in=b_items)}
    response = principal.client.post(f"{API}/work/claim")
    leaks = []
    if response.status_code == 200:
        claimed = response.json()["id"]
        if claimed in b_items:
            leaks.append(f"claimed B's work item {claimed}: {response.content[:300]!r}")
    elif response.status_code not in (204, 403):
        leaks.append(f"answered {response.status_code}: {response.content[:300]!r}")
    after = {item.pk: item.status for item in WorkItem.objects.filter(pk__in=b_items)}
    if after != before:
        leaks.append(f"B's work items changed: {before} -> {after}")
    return leaks


def _summary_is_own(w: World, principal: Principal) -> list[str]:
    response = principal.client.get(f"{API}/ratings/summary/")
    if response.status_code != 200:
        return [] if response.status_code == 403 else [f"answered {response.status_code}"]
    body = response.json()
    organization = principal.organization
    provider = getattr(organization, "provider_profile", None)
    expected_recipient = recipient_rating_summary(organization=organization).as_dict()
    expected_provider = provider_rating_summary(provider=provider).as_dict() if provider else None
    leaks = []
    if body["as_recipient"]["count"] != expected_recipient["count"]:
        leaks.append(f"as_recipient {body['as_recipient']} is not its own {expected_recipient}")
    if (body["as_provider"] or {}).get("count") != (expected_provider or {}).get("count"):
        leaks.append(f"as_provider {body['as_provider']} is not its own {expected_provider}")
    return leaks


CUSTOM: dict[tuple[str, str], CustomEntry] = {
    (f"{API}/work/claim", "POST"): CustomEntry(_claim_takes_only_own_work),
    (f"{API}/ratings/summary/", "GET"): CustomEntry(_summary_is_own),
}


BIDDING = (
    "bidding on another organization's auction is the market itself: the auction is public "
    "and the bid is always the caller's own (who may bid: tests/api/test_bids.py)"
)
PUBLIC: dict[tuple[str, str], str] = {
    (f"{API}/auctions/", "GET"): "auctions of verified providers are public (SPEC §7)",
    (f"{API}/auctions/{{id}}/", "GET"): "a public auction; its secrets are tested in "
    "tests/api/test_auctions.py",
    (f"{API}/auctions/{{id}}/bids/", "GET"): "the public bid history, bidders by handle",
    (f"{API}/auctions/{{id}}/bids/", "POST"): BIDDING,
    (f"{API}/auctions/{{id}}/buy-now/", "POST"): BIDDING,
    (f"{API}/providers/", "GET"): "the public directory of verified providers",
    (f"{API}/providers/{{slug}}/", "GET"): "a verified provider's public page",
}


def covered() -> dict[tuple[str, str], list[str]]:
    """(path, METHOD) -> which parts of the matrix cover it."""
    parts: dict[tuple[str, str], list[str]] = {}
    for name, table in (
        ("object", OBJECTS),
        ("list", LISTS),
        ("naming", NAMING),
        ("stamp", STAMPS),
        ("custom", CUSTOM),
        ("public", PUBLIC),
    ):
        for key in table:
            parts.setdefault(key, []).append(name)
    return parts


# --- running a case -------------------------------------------------------------------------------


def fk_targets() -> dict[str, dict[str, str]]:
    """model label -> {foreign key column: label of the model it points at}."""
    return {
        model._meta.label: {
            f.attname: f.related_model._meta.label
            for f in model._meta.concrete_fields
            if f.is_relation and f.related_model is not None
        }
        for model in apps.get_models(include_auto_created=True)
    }


def points_at_b(world: World, label: str, row: dict, fks: dict) -> bool:
    return any(
        (target, row.get(column)) in world.b.rows for column, target in fks.get(label, {}).items()
    )


def check_call(
    world, principal, case: str, path, method, call_b: Call, call_missing: Call, *, naming=False
):
    """The leaks of one call by A naming B's objects, next to the call naming nothing."""
    fks = fk_targets()
    # a GET is checked to change nothing by the test, around all of them
    before = snapshot() if method != "GET" else None
    response = send(principal.client, call_b)
    text = content_of(response)
    after = snapshot() if method != "GET" else None
    control = send(principal.client, call_missing)
    content_of(control)
    leaks = []
    where = f"{method} {path} [{case}] as {principal.label}"
    status = response.status_code
    # an object in the path is a 404 (or a documented 403); an object named in the body may
    # also be refused as invalid (400, 409, 422), as long as a missing one is refused alike
    refused = (400 <= status < 500 and status != 401) if naming else status in (403, 404)
    if not refused:
        leaks.append(f"{where}: answered {status}: {text[:300]}")
    elif status == 403 and not documents_403(path, method):
        leaks.append(f"{where}: an undocumented 403: {text[:200]}")
    if answer_of(response) != answer_of(control):
        leaks.append(
            f"{where}: tells B's object from a missing one: {answer_of(response)} "
            f"vs {answer_of(control)}"
        )
    if CANARY_B in text:
        leaks.append(f"{where}: B's private names in the answer: {text[:300]}")
    if before is not None:
        allowed = only_own_records(principal)
        changes = db_changes(
            before,
            after,
            allowed_new=lambda label, row: (
                allowed(label, row) and not points_at_b(world, label, row, fks)
            ),
        )
        leaks += [f"{where}: {change}" for change in changes]
    return leaks


def url_of(path: str, params: dict) -> str:
    return path.format(**params)


OBJECT_PATHS = sorted({path for path, _ in OBJECTS})


@pytest.mark.parametrize("path", OBJECT_PATHS)
def test_another_organizations_object_is_a_404_that_changes_nothing(path, world, attackers, owners):
    cases = []  # (method, variant, call of the operation for some path parameters)
    for (entry_path, method), entry in sorted(OBJECTS.items()):
        if entry_path != path:
            continue
        for variant in entry.targets(world):
            headers = entry.headers(world) if entry.headers else {}

            def call(params, entry=entry, method=method, headers=headers):
                body = entry.body(world) if entry.body else None
                return Call(method, url_of(path, params), body, entry.multipart, headers)

            cases.append((method, variant, call))
    # the matrix names real objects: their owner reads them (first: a read may compute, e.g.
    # a request's plan)
    errors = []
    for method, variant, call in cases:
        if method == "GET" and variant.owner:
            response = send(owners[variant.owner].client, call(variant.of_b))
            content_of(response)
            if response.status_code != 200:
                errors.append(
                    f"matrix error: {method} {path} [{variant.label}] is "
                    f"{response.status_code} to its owner: {response.content[:300]!r}"
                )
    assert not errors, "\n".join(errors)
    leaks, before = [], snapshot()
    for method, variant, call in cases:
        for principal in attackers:
            leaks += check_call(
                world,
                principal,
                variant.label,
                path,
                method,
                call(variant.of_b),
                call(variant.missing),
            )
    # nothing that existed changed, whatever the method (new rows were checked call by call)
    fks = fk_targets()
    changes = db_changes(
        before,
        snapshot(),
        allowed_new=lambda label, row: not points_at_b(world, label, row, fks),
    )
    leaks += [f"{path}, after every call: {change}" for change in changes]
    assert not leaks, f"{len(leaks)} cross-organization leaks:\n" + "\n".join(leaks)


@pytest.mark.parametrize("path", sorted(path for path, _ in LISTS))
def test_a_list_shows_none_of_another_organizations_objects(path, world, attackers, owners):
    entry = LISTS[(path, "GET")]
    forbidden = entry.forbidden(world)
    assert forbidden, f"matrix error: B has nothing in {path}"
    listed_by_owner = {
        item[entry.key] for item in owners[entry.owner].client.get(path).json()["results"]
    }
    assert listed_by_owner & forbidden, f"matrix error: B's own {path} shows none of {forbidden}"
    leaks = []
    for principal in attackers:
        response = principal.client.get(path)
        text = content_of(response)
        if response.status_code == 403:
            continue
        if response.status_code != 200:
            leaks.append(f"GET {path} as {principal.label}: answered {response.status_code}")
            continue
        listed = {item[entry.key] for item in response.json()["results"]}
        if listed & forbidden:
            leaks.append(f"GET {path} as {principal.label}: lists B's {sorted(listed & forbidden)}")
        if CANARY_B in text:
            leaks.append(f"GET {path} as {principal.label}: B's private names: {text[:300]}")
    assert not leaks, "\n".join(leaks)


NAMING_KEYS = sorted(NAMING)


@pytest.mark.parametrize("key", NAMING_KEYS, ids=[f"{m} {p}" for p, m in NAMING_KEYS])
def test_naming_another_organizations_object_is_refused_as_if_it_did_not_exist(
    key, world, attackers
):
    path, method = key
    entry = NAMING[key]
    leaks = []
    for index, (label, params, _, _) in enumerate(entry.cases(world)):
        for principal in attackers:

            def call(which, index=index, params=params):
                body = entry.cases(world)[index][which]
                return Call(method, url_of(path, params), body, entry.multipart)

            leaks += check_call(
                world, principal, label, path, method, call(2), call(3), naming=True
            )
    assert not leaks, f"{len(leaks)} cross-organization leaks:\n" + "\n".join(leaks)


@pytest.mark.parametrize("key", sorted(STAMPS), ids=[f"{m} {p}" for p, m in sorted(STAMPS)])
def test_a_creation_is_the_callers_whatever_owner_the_body_claims(key, world, attackers):
    path, _ = key
    entry = STAMPS[key]
    leaks, created = [], 0
    for n, principal in enumerate(attackers):
        response = principal.client.post(path, entry.body(world, n), format="json")
        if response.status_code == 201:
            created += 1
            owner = entry.owner_of(response.json()["id"])
            if owner != principal.organization.pk:
                leaks.append(f"POST {path} as {principal.label}: created for organization {owner}")
        elif response.status_code != 403:
            leaks.append(
                f"POST {path} as {principal.label}: answered {response.status_code}: "
                f"{response.content[:300]!r}"
            )
    assert created, f"matrix error: nobody could create through {path}"
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("key", sorted(CUSTOM), ids=[f"{m} {p}" for p, m in sorted(CUSTOM)])
def test_an_operation_about_the_caller_answers_only_about_the_caller(key, world, attackers):
    leaks = []
    for principal in attackers:
        leaks += [
            f"{key[1]} {key[0]} as {principal.label}: {leak}"
            for leak in CUSTOM[key].check(world, principal)
        ]
    assert not leaks, "\n".join(leaks)


def test_every_operation_of_the_schema_is_in_the_matrix_or_public():
    operations = set(schema_operations())
    parts = covered()

    assert sorted(operations - set(parts)) == [], "operations without a matrix entry"
    assert sorted(set(parts) - operations) == [], "matrix entries of no operation"
    assert [key for key, names in parts.items() if "public" in names and len(names) > 1] == []
    # an operation with an object in its path is attacked, not only listed or created
    unattacked = [
        key
        for key, names in parts.items()
        if "{" in key[0] and not {"object", "public"} & set(names)
    ]
    assert unattacked == []


# --- objects two organizations share --------------------------------------------------------------


def test_a_provider_sees_only_its_own_answer_to_a_request_sent_to_both(world, attackers):
    """A request of B's recipient sent to both providers, answered by B's at a telling price:
    A's provider reads the request and answers it, but sees neither B's answer nor its price
    nor the maker's profile, and changes nothing of the maker's."""
    shared = ServiceRequestFactory(
        organization=world.b.orgs["recipient"], profile=_b(world, "profile")
    )
    shared.broadcast_to.add(world.a.provider, world.b.provider)
    answer_b = availability_submit(
        provider=world.b.provider,
        service_request=shared,
        paths=[PathOffer(path_id=_b(world, "path").pk, bandwidth_mbps=500)],
        price_per_gb_minor=86_419,
        currency="USD",
        valid_until=_ahead(minutes=30),
    )
    url = f"{API}/service-requests/{shared.pk}/"
    leaks = []
    for principal in attackers:
        if principal.kind != "provider":
            continue
        where = f"as {principal.label}"
        for read in (url, f"{url}availability/", f"{API}/service-requests/?role=received"):
            response = principal.client.get(read)
            text = content_of(response)
            if response.status_code != 200:
                leaks.append(f"GET {read} {where}: {response.status_code} to a provider asked")
            for secret in ("86419", CANARY_B, f'"id":{answer_b.pk},'):
                if secret in text:
                    leaks.append(f"GET {read} {where}: shows {secret!r}: {text[:300]}")
        body = principal.client.get(url).json()
        if "profile" in body or body.get("yours") != {"message": None}:
            leaks.append(f"GET {url} {where}: the maker's profile or B's answer: {body}")
        for action, data in (("plan/", None), ("cancel/", {}), ("negotiation/", {})):
            before = snapshot()
            call = Call("GET" if data is None else "POST", f"{url}{action}", data)
            response = send(principal.client, call)
            if response.status_code != 403 or response.json()["code"] != "not_the_maker":
                leaks.append(f"{call.method} {call.url} {where}: {response.status_code}")
            leaks += [
                f"{call.method} {call.url} {where}: {change}"
                for change in db_changes(
                    before, snapshot(), allowed_new=only_own_records(principal)
                )
            ]
    assert not leaks, "\n".join(leaks)


def test_a_number_seated_on_another_organizations_lease_gives_a_device_of_that_number_nothing(
    world, attackers
):
    """B seats a telephone number on its lease; A registers a device with the same number.
    A number is nobody's identity: A gets no sight of the lease and runs no job on it."""
    phone = "+14155550777"
    lease_b = _b(world, "lease")
    seat_assign(lease=lease_b, by=world.b.users["recipient"], kind="phone", phone_number=phone)
    for kind in ("recipient", "group"):
        ClientDeviceFactory(organization=world.a.orgs[kind], phone_number=phone)
    seats_path = f"{API}/leases/{{lease_id}}/seats/"
    jobs_path = f"{API}/jobs/"
    leaks = []
    for principal in attackers:
        leaks += check_call(
            world,
            principal,
            "A's device has the number B seated",
            seats_path,
            "GET",
            Call("GET", seats_path.format(lease_id=lease_b.pk)),
            Call("GET", seats_path.format(lease_id=MISSING_ID)),
        )
        base = {"method": "packet-count", "param": "20"}
        leaks += check_call(
            world,
            principal,
            "a job on B's lease by the number's device",
            jobs_path,
            "POST",
            Call("POST", jobs_path, {**base, "file": _upload(), "lease": lease_b.pk}, True),
            Call("POST", jobs_path, {**base, "file": _upload(), "lease": MISSING_ID}, True),
            naming=True,
        )
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("kind", KINDS)
def test_a_session_naming_another_organization_acts_for_the_users_own(kind, world):
    """A signed-in user of A whose session names B's organization (a forged or stale choice)
    still acts for A: B's objects stay 404s and B's lists stay B's."""
    client = APIClient()
    client.force_login(world.a.users[kind])
    session = client.session
    session["organization_id"] = world.b.orgs[kind].pk
    session.save()
    b_id = {
        "provider": _b(world, "network").pk,
        "recipient": _b(world, "job").pk,
        "group": world.b.group.pk,
    }[kind]
    resource = {"provider": "networks", "recipient": "jobs", "group": "groups"}[kind]

    detail = client.get(f"{API}/{resource}/{b_id}/")
    listing = client.get(f"{API}/{resource}/")

    assert detail.status_code == 404, detail.content
    assert listing.status_code == 200
    assert CANARY_B not in listing.content.decode()
    assert b_id not in {item["id"] for item in listing.json()["results"]}
