"""Periodic jobs of auctions: every worker opens and closes auctions on time. Each auction is
locked (skipping ones another worker holds) and its status re-checked, so running in several
workers at once closes each auction exactly once."""

from auctions.services import auctions_close_due, auctions_open_due
from marketplace.taskqueue import periodic


@periodic(every_seconds=0.5)
def auctions_open_and_close() -> tuple[int, int]:
    return auctions_open_due(), auctions_close_due()
