"""The data a Schemathesis run of the partner API meets (tests/api/test_schemathesis.py): a
verified provider with its catalogue, blocks, an open auction and a sold one, a recipient
without a card (so generated bids are refused before they bind anyone) that holds a lease,
and a write-scoped API key of each."""

from dataclasses import dataclass

from marketplace.models import ApiKeyScope, OrganizationKind
from marketplace.services import api_key_create
from tests.factories import (
    AuctionFactory,
    ClientDeviceFactory,
    JobFactory,
    LeaseFactory,
    NetworkFactory,
    OfferFactory,
    OrganizationFactory,
    RoutingPathFactory,
    RoutingPathHopFactory,
    SegmentationProfileFactory,
    ServiceBlockFactory,
    VerifiedProviderFactory,
    member_of,
)


@dataclass(frozen=True)
class SchemathesisWorld:
    provider_key: str
    recipient_key: str
    recipient_read_key: str


def _key(organization, *, scope: str = ApiKeyScope.WRITE) -> str:
    _, key = api_key_create(
        organization=organization,
        name=f"schemathesis {scope}",
        scope=scope,
        created_by=organization.memberships.order_by("pk").first().user,
    )
    return key


def schemathesis_world() -> SchemathesisWorld:
    """Create the data and return the API keys."""
    provider = VerifiedProviderFactory(
        organization__name="Fuzz Networks", organization__slug="fuzz-networks"
    )
    member_of(provider.organization)
    network = NetworkFactory(provider=provider)
    path = RoutingPathFactory(provider=provider)
    RoutingPathHopFactory(path=path, network=network, position=0)
    OfferFactory(provider=provider)
    ServiceBlockFactory(provider=provider)
    AuctionFactory(block__provider=provider)

    recipient = OrganizationFactory(
        kind=OrganizationKind.RECIPIENT, name="Fuzz Recipient", slug="fuzz-recipient"
    )
    member_of(recipient)  # no card on file: bids and buy-now are refused with card_required
    LeaseFactory(block__provider=provider, winner=recipient)
    ClientDeviceFactory(organization=recipient)
    SegmentationProfileFactory(organization=recipient)
    JobFactory(organization=recipient)
    return SchemathesisWorld(
        provider_key=_key(provider.organization),
        recipient_key=_key(recipient),
        recipient_read_key=_key(recipient, scope=ApiKeyScope.READ),
    )
