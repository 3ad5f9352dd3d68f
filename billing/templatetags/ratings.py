"""Ratings on any page: a provider's aggregates (directory cards, its page, beside every
auction), its public ratings with their replies, and the "Rate" link of a lease."""

from django import template
from django.utils import timezone

from billing.models import RatingKind
from billing.ratings import (
    provider_rating_summaries,
    provider_ratings_public,
    rating_existing,
    rating_window,
)
from providers.selectors import provider_of

register = template.Library()

PUBLIC_RATINGS_SHOWN = 20


@register.inclusion_tag("billing/ratings/_summary.html", takes_context=True)
def provider_rating(context, provider, compact=False):
    """The provider's aggregates; a page listing many auctions of one provider asks once."""
    cache = context.render_context.setdefault("provider_rating_summaries", {})
    if provider.pk not in cache:
        cache.update(provider_rating_summaries(provider_ids=[provider.pk]))
    return {"summary": cache[provider.pk], "compact": compact}


@register.inclusion_tag("billing/ratings/_public.html")
def provider_ratings_list(provider):
    """The provider's latest ratings as anyone sees them: no rater named, replies shown."""
    return {"ratings": provider_ratings_public(provider=provider)[:PUBLIC_RATINGS_SHOWN]}


@register.inclusion_tag("billing/ratings/_lease_link.html", takes_context=True)
def lease_rating_link(context, lease):
    """For a party of the lease: the link to rate the other side while the window is open,
    or what it gave."""
    request = context.get("request")
    organization = getattr(request, "organization", None)
    if lease is None or organization is None:
        return {}
    if lease.winner_id == organization.pk:
        kind = RatingKind.PROVIDER
    else:
        provider = provider_of(organization=organization)
        if provider is None or provider.pk != lease.block.provider_id:
            return {}
        kind = RatingKind.RECIPIENT
    opens, closes = rating_window(lease=lease)
    now = timezone.now()
    return {
        "lease": lease,
        "kind": kind,
        "existing": rating_existing(kind=kind, lease=lease),
        "open": opens <= now <= closes,
        "not_yet": now < opens,
        "closes": closes,
        "opens": opens,
    }
