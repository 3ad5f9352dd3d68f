"""Demo data: a staff user, three verified providers, two buyer organizations, demo auctions
and a lease the first buyer can run jobs under.

Running it again changes nothing that is already there (it looks objects up by their names)."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from auctions.demo import demo_auctions_ensure, demo_group_ensure
from billing.demo import DemoCardUnavailable, demo_card_ensure
from billing.payments import PaymentRefused
from marketplace.models import Membership, Organization, OrganizationKind, Role, User
from providers.models import (
    Network,
    NetworkTechnology,
    Offer,
    ProviderProfile,
    RoutingPath,
    Service,
)
from providers.services import (
    NetworkInput,
    OfferInput,
    RoutingPathInput,
    network_create,
    offer_create,
    provider_register,
    provider_verify,
    routing_path_create,
)
from segmentation.demo import demo_lease_ensure, demo_service_request_ensure

DEMO_PASSWORD = "demo-pass-2026"
STAFF_EMAIL = "staff@demo.exchange"

PROVIDERS = [
    {
        "name": "Northwind Fiber",
        "owner": "noc@northwind.demo",
        "networks": [
            ("Metro ring", NetworkTechnology.FIBER, "eu-west"),
            ("Core backbone", NetworkTechnology.ETHERNET, "eu-west"),
        ],
        "paths": [("Metro to core", 10000, ["Metro ring", "Core backbone"])],
        "offers": [
            (Service.SEGMENTATION, 180, 12),
            (Service.ANONYMIZE_IP, 40, 0),
            (Service.COMPRESS, 15, 0),
        ],
    },
    {
        "name": "Bluepeak Mobile",
        "owner": "ops@bluepeak.demo",
        "networks": [
            ("5G radio", NetworkTechnology.NR, "us-east"),
            ("LTE radio", NetworkTechnology.LTE, "us-east"),
            ("Packet core", NetworkTechnology.ETHERNET, "us-east"),
        ],
        "paths": [
            ("5G to core", 2000, ["5G radio", "Packet core"]),
            ("LTE to core", 600, ["LTE radio", "Packet core"]),
        ],
        "offers": [
            (Service.SEGMENTATION, 210, 9),
            (Service.ANONYMIZE_IP, 45, 0),
            (Service.STRIP_PAYLOAD, 20, 0),
            (Service.DEDUPE, 25, 0),
        ],
    },
    {
        "name": "Orbital Relay",
        "owner": "desk@orbital.demo",
        "networks": [
            ("Ka-band uplink", NetworkTechnology.SATELLITE, "global"),
            ("Ground station", NetworkTechnology.FIBER, "ap-south"),
        ],
        "paths": [("Sky to ground", 400, ["Ka-band uplink", "Ground station"])],
        "offers": [(Service.SEGMENTATION, 320, 20), (Service.FILTER, 30, 0)],
    },
]

BUYERS = [
    ("Acme Analytics", "buyer@acme.demo"),
    ("Globex Security", "buyer@globex.demo"),
]


def _user(email: str, *, staff: bool = False) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        make = User.objects.create_superuser if staff else User.objects.create_user
        user = make(email=email, password=DEMO_PASSWORD)
    return user


class Command(BaseCommand):
    help = "Create demo data (idempotent): staff, three verified providers, two buyers."

    @transaction.atomic
    def handle(self, *args, **options):
        staff = _user(STAFF_EMAIL, staff=True)
        for spec in PROVIDERS:
            owner = _user(spec["owner"])
            provider = ProviderProfile.objects.filter(organization__name=spec["name"]).first()
            if provider is None:
                provider = provider_register(
                    user=owner,
                    organization=None,
                    organization_name=spec["name"],
                    legal_name=f"{spec['name']} Ltd",
                    contact_name="Network operations",
                    contact_email=spec["owner"],
                )
            for name, technology, region in spec["networks"]:
                if not Network.objects.filter(provider=provider, name=name).exists():
                    network_create(
                        provider=provider,
                        data=NetworkInput(name=name, technology=technology, region=region),
                    )
            for name, capacity, hops in spec["paths"]:
                if not RoutingPath.objects.filter(provider=provider, name=name).exists():
                    routing_path_create(
                        provider=provider,
                        data=RoutingPathInput(name=name, capacity_mbps=capacity, hops=hops),
                    )
            for service, per_gb, per_minute in spec["offers"]:
                if not Offer.objects.filter(provider=provider, service=service).exists():
                    offer_create(
                        provider=provider,
                        data=OfferInput(
                            service=service,
                            price_per_gb_minor=per_gb,
                            price_per_minute_minor=per_minute,
                        ),
                    )
            provider_verify(provider=provider, staff_user=staff)
        buyers = []
        for name, email in BUYERS:
            buyer = _user(email)
            organization, _ = Organization.objects.get_or_create(
                name=name,
                defaults={
                    "slug": name.lower().replace(" ", "-"),
                    "kind": OrganizationKind.RECIPIENT,
                },
            )
            Membership.objects.get_or_create(
                user=buyer, organization=organization, defaults={"role": Role.OWNER}
            )
            buyers.append(organization)
        try:
            for organization in buyers:
                demo_card_ensure(organization=organization)
        except (DemoCardUnavailable, PaymentRefused) as exc:
            raise CommandError(
                f"The demo buyers' cards could not be saved: {exc} (bin/run starts "
                "localstripe; `manage.py localstripe` does too)."
            ) from None
        providers = [
            ProviderProfile.objects.get(organization__name=spec["name"]) for spec in PROVIDERS
        ]
        created = demo_auctions_ensure(providers=providers, buyers=buyers)
        lease = demo_lease_ensure(provider=providers[0], buyer=buyers[0])
        service_request = demo_service_request_ensure(providers=providers, buyer=buyers[0])
        group, offer = demo_group_ensure(provider=providers[1], buyers=buyers)
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(
            f"{buyers[0].name} holds lease {lease.pk} of a {providers[0]} block until "
            f"{lease.ends_at:%Y-%m-%d}: segment a capture under it at /jobs/new/."
        )
        if service_request is not None:
            self.stdout.write(
                f"{buyers[0].name}'s service request {service_request.pk} has answers from "
                f"{service_request.availability.count()} providers: its plan is at "
                f"/requests/{service_request.pk}/."
            )
        if group is not None:
            self.stdout.write(
                f"The buying group {group} (its two buyers pay, a handset is sponsored) has an "
                f"offer from {offer.provider} until {offer.deadline:%H:%M} UTC: "
                f"/groups/{group.pk}/."
            )
        if created:
            self.stdout.write(
                f"{created} demo auctions: the first closes in 3 minutes, the last in 45."
            )
        self.stdout.write(demo_logins_text())


def demo_logins_text() -> str:
    lines = [f"Demo logins (password for all: {DEMO_PASSWORD}):", f"  staff     {STAFF_EMAIL}"]
    lines += [f"  provider  {spec['owner']}  ({spec['name']})" for spec in PROVIDERS]
    lines += [f"  buyer     {email}  ({name})" for name, email in BUYERS]
    return "\n".join(lines)


def demo_slugs() -> tuple[list[str], list[str]]:
    """Slugs of the demo buyers and providers, for the demo bidder."""
    buyers = [name.lower().replace(" ", "-") for name, _email in BUYERS]
    providers = list(
        Organization.objects.filter(name__in=[spec["name"] for spec in PROVIDERS]).values_list(
            "slug", flat=True
        )
    )
    return buyers, providers
