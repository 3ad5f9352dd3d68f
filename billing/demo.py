"""Demo data for billing: each demo buyer gets a card on file, saved through localstripe with
its test card 4242 4242 4242 4242 exactly as a browser would save it, so the demo buyers can
bid and their statements can be charged."""

from billing.localstripe import TEST_CARD_SUCCEEDS, localstripe_setup_intent_confirm
from billing.models import Card
from billing.payments import card_setup_finish, card_setup_start
from billing.stripe_gateway import localstripe_url, uses_localstripe
from marketplace.models import Organization


class DemoCardUnavailable(Exception):
    """Demo cards need localstripe: no Stripe key, and localstripe serving."""


def demo_card_ensure(*, organization: Organization) -> Card:
    card = Card.objects.filter(account__organization=organization).first()
    if card is not None:
        return card
    if not uses_localstripe():
        raise DemoCardUnavailable(
            "Demo cards are saved through localstripe: unset STRIPE_SECRET_KEY for the demo."
        )
    setup = card_setup_start(organization=organization)
    localstripe_setup_intent_confirm(
        url_base=localstripe_url(), client_secret=setup.client_secret, number=TEST_CARD_SUCCEEDS
    )
    return card_setup_finish(organization=organization, setup_intent_id=setup.id)
