"""Periodic jobs of auctions: every worker opens and closes auctions on time. Each auction is
locked (skipping ones another worker holds) and its status re-checked, so running in several
workers at once closes each auction exactly once."""

from django.conf import settings

from auctions.demo import demo_bid_step
from auctions.services import auctions_close_due, auctions_open_due
from marketplace.taskqueue import periodic


@periodic(every_seconds=0.5)
def auctions_open_and_close() -> tuple[int, int]:
    return auctions_open_due(), auctions_close_due()


@periodic(every_seconds=15)
def demo_bidding() -> int:
    """With DEMO_BIDDING on (bin/run), demo buyers keep bidding on the demo auctions."""
    if not settings.DEMO_BIDDING:
        return 0
    from marketplace.management.commands.seed_demo import demo_slugs

    buyer_slugs, provider_slugs = demo_slugs()
    return demo_bid_step(buyer_slugs=buyer_slugs, provider_slugs=provider_slugs)


@periodic(every_seconds=30)
def group_offers_due() -> int:
    """Decide the providers' offers to buying groups whose deadline passed."""
    from auctions.groups import group_offers_decide

    return group_offers_decide()
