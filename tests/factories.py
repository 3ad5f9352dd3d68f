"""factory_boy factories for every model the tests build."""

from datetime import timedelta

import factory
from django.utils import timezone

from auctions.models import Auction, AuctionStatus, Lease, ServiceBlock
from marketplace.models import Membership, Organization, OrganizationKind, Role, User
from providers.models import (
    Network,
    NetworkTechnology,
    Offer,
    ProviderProfile,
    ProviderStatus,
    RoutingPath,
    RoutingPathHop,
    Service,
)

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffUserFactory(UserFactory):
    is_staff = True
    is_superuser = True


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"organization-{n}")
    kind = OrganizationKind.RECIPIENT


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Role.OWNER


class ProviderProfileFactory(factory.django.DjangoModelFactory):
    """A provider awaiting verification; use ``VerifiedProviderFactory`` for one that sells."""

    class Meta:
        model = ProviderProfile

    organization = factory.SubFactory(OrganizationFactory, kind=OrganizationKind.PROVIDER)
    legal_name = factory.LazyAttribute(lambda o: f"{o.organization.name} Ltd")
    contact_name = factory.Faker("name")
    contact_email = factory.Sequence(lambda n: f"noc{n}@provider.example")


class VerifiedProviderFactory(ProviderProfileFactory):
    status = ProviderStatus.VERIFIED
    verified_at = factory.LazyFunction(timezone.now)


class NetworkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Network

    provider = factory.SubFactory(VerifiedProviderFactory)
    name = factory.Sequence(lambda n: f"Network {n}")
    technology = NetworkTechnology.FIBER
    region = "eu-west"


class RoutingPathFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoutingPath

    provider = factory.SubFactory(VerifiedProviderFactory)
    name = factory.Sequence(lambda n: f"Path {n}")
    capacity_mbps = 1000


class RoutingPathHopFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RoutingPathHop

    path = factory.SubFactory(RoutingPathFactory)
    position = factory.Sequence(lambda n: n)
    network = factory.SubFactory(NetworkFactory, provider=factory.SelfAttribute("..path.provider"))


class OfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offer

    provider = factory.SubFactory(VerifiedProviderFactory)
    service = Service.SEGMENTATION
    price_per_gb_minor = 250
    price_per_minute_minor = 10
    currency = "USD"


def member_of(organization, *, role=Role.OWNER, user=None) -> User:
    """A user who belongs to the organization with the role."""
    user = user or UserFactory()
    MembershipFactory(user=user, organization=organization, role=role)
    return user


class ServiceBlockFactory(factory.django.DjangoModelFactory):
    """A block of a verified provider starting in three days, for three hours."""

    class Meta:
        model = ServiceBlock

    provider = factory.SubFactory(VerifiedProviderFactory)
    starts_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=3))
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(hours=3))
    max_rate_mbps = 1000
    min_rate_mbps = 100
    seats = 5


class AuctionFactory(factory.django.DjangoModelFactory):
    """An open auction (opened a minute ago, closing in an hour), start price 10.00 USD."""

    class Meta:
        model = Auction

    block = factory.SubFactory(ServiceBlockFactory)
    opens_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1))
    closes_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))
    scheduled_close_at = factory.SelfAttribute("closes_at")
    currency = "USD"
    start_price_minor = 1000
    status = AuctionStatus.OPEN


def buyer(*, organization=None, role=Role.MEMBER, with_card=True) -> tuple[Organization, User]:
    """An active recipient organization and a member who may bid for it: with a card on file
    (a Card row: the bid rules look no further; tests that charge it use localstripe)."""
    organization = organization or OrganizationFactory(kind=OrganizationKind.RECIPIENT)
    if with_card:
        card_on_file(organization)
    return organization, member_of(organization, role=role)


def card_on_file(organization):
    """A card on file for the organization, without Stripe (for the bid rules)."""
    from billing.models import BillingAccount, Card

    account, _ = BillingAccount.objects.get_or_create(
        organization=organization,
        defaults={"stripe_customer_id": f"cus_test_{organization.pk}"},
    )
    return Card.objects.create(
        account=account,
        payment_method_id=f"pm_test_{organization.pk}_{Card.objects.count()}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2030,
        is_default=not account.cards.exists(),
    )


class LeaseFactory(factory.django.DjangoModelFactory):
    """A lease running now (began an hour ago, ends in two): its block's auction was won."""

    class Meta:
        model = Lease

    block = factory.SubFactory(
        ServiceBlockFactory,
        starts_at=factory.LazyFunction(lambda: timezone.now() - timedelta(hours=1)),
        ends_at=factory.LazyFunction(lambda: timezone.now() + timedelta(hours=2)),
    )
    auction = factory.SubFactory(
        AuctionFactory,
        block=factory.SelfAttribute("..block"),
        opens_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=2)),
        closes_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=1)),
        status=AuctionStatus.CLOSED,
    )
    winner = factory.SubFactory(OrganizationFactory, kind=OrganizationKind.RECIPIENT)
    price_minor = 5000
    currency = "USD"
    starts_at = factory.SelfAttribute("block.starts_at")
    ends_at = factory.SelfAttribute("block.ends_at")


class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    """An active webhook endpoint of a verified provider, with its own secret. The URL is a
    placeholder: tests that send give their receiver's."""

    class Meta:
        # By label: this block is appended and must not touch the imports above.
        model = "providers.WebhookEndpoint"

    provider = factory.SubFactory(VerifiedProviderFactory)
    url = factory.Sequence(lambda n: f"https://hooks{n}.provider.example/segment-exchange")
    description = "NOC integration"
    is_active = True


class WebhookDeliveryFactory(factory.django.DjangoModelFactory):
    """A pending delivery of a "service_request.created" event, due now."""

    class Meta:
        model = "providers.WebhookDelivery"

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    event = "service_request.created"
    payload = factory.Sequence(lambda n: {"service_request": {"id": n}})
    status = "pending"
    next_attempt_at = factory.LazyFunction(timezone.now)


class ClientDeviceFactory(factory.django.DjangoModelFactory):
    """A recipient's client device with a telephone number."""

    class Meta:
        model = "marketplace.ClientDevice"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Probe {n}")
    identifier = factory.Sequence(lambda n: f"SN-{n:06d}")
    phone_number = factory.Sequence(lambda n: f"+4420{n:08d}")


class SegmentationProfileFactory(factory.django.DjangoModelFactory):
    """A recipient's profile: split by connection, no processing, default planning (fastest
    first, nothing preferred or blocked)."""

    class Meta:
        model = "segmentation.SegmentationProfile"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Profile {n}")
    method = "connection"


class JobFactory(factory.django.DjangoModelFactory):
    """A finished job of a recipient (its files are not made: for billing and listings)."""

    class Meta:
        model = "segmentation.Job"

    organization = factory.SubFactory(OrganizationFactory)
    method = "connection"
    status = "succeeded"
    input_name = "capture.pcap"
    input_format = "pcap"


class WorkItemFactory(factory.django.DjangoModelFactory):
    """A done segment of a job, processed in the exchange's workers."""

    class Meta:
        model = "segmentation.WorkItem"

    job = factory.SubFactory(JobFactory)
    number = factory.Sequence(lambda n: n)
    kind = "segment"
    provider = factory.SubFactory(VerifiedProviderFactory)
    location = "exchange"
    status = "done"
    segment_path = factory.LazyAttribute(lambda o: f"split/capture-{o.number:04d}.pcap")
    packets_in = 100
    bytes_in = 100_000
    sha256_in = "0" * 64


class UsageRecordFactory(factory.django.DjangoModelFactory):
    """Metering of one work item: its provider processed `bytes` for the job."""

    class Meta:
        model = "segmentation.UsageRecord"

    job = factory.SubFactory(JobFactory)
    lease = None
    provider = factory.SubFactory(VerifiedProviderFactory)
    work_item = factory.SubFactory(
        WorkItemFactory,
        job=factory.SelfAttribute("..job"),
        provider=factory.SelfAttribute("..provider"),
    )
    kind = "segment"
    packets = 100
    bytes = 100_000


class SlaBreachFactory(factory.django.DjangoModelFactory):
    """A job under a lease that ran at half its block's guaranteed rate."""

    class Meta:
        model = "segmentation.SlaBreach"

    lease = factory.SubFactory(LeaseFactory)
    job = factory.SubFactory(
        JobFactory,
        lease=factory.SelfAttribute("..lease"),
        organization=factory.SelfAttribute("..lease.winner"),
    )
    guaranteed_mbps = 100
    measured_mbps = 50.0
    bytes = 10**9
    seconds = 160.0
    allowed_seconds = 80.0


class ProviderRatingFactory(factory.django.DjangoModelFactory):
    """A recipient's rating of the provider of an ended lease: satisfied, 4/4/4."""

    class Meta:
        model = "billing.Rating"

    kind = "provider"
    source = "manual"
    lease = factory.SubFactory(
        LeaseFactory,
        block__starts_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=2)),
        block__ends_at=factory.LazyFunction(lambda: timezone.now() - timedelta(days=1)),
    )
    provider = factory.SelfAttribute("lease.block.provider")
    recipient = factory.SelfAttribute("lease.winner")
    positive = True
    quality = 4
    communication = 4
    delivery = 4
    comment = "Solid service."


class RecipientRatingFactory(ProviderRatingFactory):
    """A provider's rating of the recipient of an ended lease: paid satisfactorily."""

    kind = "recipient"
    quality = None
    communication = None
    delivery = None
    comment = "Paid on time."


class ServiceRequestFactory(factory.django.DjangoModelFactory):
    """A recipient's open request for 1 GB, due in two hours (nothing broadcast)."""

    class Meta:
        model = "segmentation.ServiceRequest"

    organization = factory.SubFactory(OrganizationFactory)
    profile = factory.SubFactory(
        SegmentationProfileFactory, organization=factory.SelfAttribute("..organization")
    )
    data_bytes = 10**9
    deadline = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=2))


class PlanFactory(factory.django.DjangoModelFactory):
    """A feasible plan of a request, without lines: add work items for its providers."""

    class Meta:
        model = "segmentation.Plan"

    service_request = factory.SubFactory(ServiceRequestFactory)
    feasible = True
    volume_bytes = 10**9
    currency = "USD"
    cost_weight = 0.5
    inputs_at = factory.LazyFunction(timezone.now)


class PlannedJobFactory(factory.django.DjangoModelFactory):
    """A job of an accepted plan (no lease) that succeeded a day ago. Its providers are those
    of its work items (WorkItemFactory(job=..., provider=...))."""

    class Meta:
        model = "segmentation.Job"

    organization = factory.SubFactory(OrganizationFactory)
    plan = factory.SubFactory(
        PlanFactory, service_request__organization=factory.SelfAttribute("...organization")
    )
    method = "connection"
    status = "succeeded"
    input_name = "capture.pcap"
    input_format = "pcap"
    finished_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))


# --- buying groups -------------------------------------------------------------------------------


def payer_organization(user, *, with_card=True, name=None):
    """A buyer organization the user owns (so the user may pledge its money), with a card."""
    organization = OrganizationFactory(
        kind=OrganizationKind.RECIPIENT, **({"name": name} if name else {})
    )
    MembershipFactory(user=user, organization=organization, role=Role.OWNER)
    if with_card:
        card_on_file(organization)
    return organization


def group_joined(group, *, role="payer", share_bps=None, cap_minor=None, with_card=True, user=None):
    """A user (new unless given) invited to the group by its first admin and accepting it: a
    payer (with a buyer organization of its own that pays, with a card) or sponsored.
    Returns the member."""
    from auctions.groups import invitation_accept, member_invite_user

    user = user or UserFactory()
    admin = group.members.filter(is_admin=True).order_by("pk").first().user
    member = member_invite_user(group=group, by=admin, email=user.email)
    paying = payer_organization(user, with_card=with_card) if role == "payer" else None
    return invitation_accept(
        member=member,
        user=user,
        role=role,
        paying_organization=paying,
        share_bps=share_bps,
        cap_minor=cap_minor,
    )


def buying_group(
    *,
    name="Harbour Cooperative",
    currency="USD",
    share_bps=None,
    cap_minor=50_000,
    admin=None,
    with_card=True,
):
    """A buying group whose first admin is a payer (cap 500.00 by default) with a card on
    file. Returns (group, admin user, the admin's member row)."""
    from auctions.groups import group_create

    admin = admin or UserFactory()
    paying = payer_organization(admin, with_card=with_card)
    group = group_create(
        user=admin,
        name=name,
        currency=currency,
        role="payer",
        paying_organization=paying,
        share_bps=share_bps,
        cap_minor=cap_minor,
    )
    return group, admin, group.members.get(user=admin)
