"""Buying groups' charges, split between their payers (SPEC §4.4).

A group's lease is billed like any other: its won price, its usage and its SLA credits become
line items of the group's organization. Those lines are never put on a statement themselves:
each is split, once, into lines of the payers' organizations, by the shares recorded when the
group won the lease (auctions.LeaseShare) and the rules of billing.shares: the lease's price
within each payer's ceiling, usage by the weights alone, and credits in proportion to what
each payer paid for the lease. Every payer's part of a charge
is shown as its own part plus one "Sponsored for …" line per sponsored member, so the payer
sees what it pays for whom; together they add up to its part, and the parts add up to the
group's line, to the minor unit.

A payer whose card fails leaves its own statement unpaid: nothing is moved onto the others.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Exists, OuterRef

from auctions.models import LeaseShare, MemberRole
from billing.models import LineItem, LineItemKind
from billing.shares import Pledge, SplitImpossible, apportion, split_charge, sponsorship_split
from marketplace.models import OrganizationKind

logger = logging.getLogger(__name__)


def group_lines_split() -> int:
    """Split every group line not split yet; returns how many were split."""
    pending = (
        LineItem.objects.filter(organization__kind=OrganizationKind.GROUP, group_line__isnull=True)
        .exclude(Exists(LineItem.objects.filter(group_line=OuterRef("pk"))))
        .values_list("pk", flat=True)
        .order_by("pk")
    )
    split = 0
    for pk in list(pending):
        if _line_split(pk):
            split += 1
    return split


def _credit_parts(line: LineItem, payers: list, paid: dict[int, int]) -> list[int]:
    """This credit's part for each payer: the lease's credits so far, this one included, are
    apportioned by what each paid, less what each was already credited, so the rounding
    does not always fall to the same payer and nobody gets back more than its share."""
    weights = [paid.get(s.member_id, 0) for s in payers]
    already: dict[int, int] = {}
    earlier = LineItem.objects.filter(
        group_line__lease_id=line.lease_id, group_line__kind=line.kind
    ).values_list("source", "amount_minor")
    for source, amount in earlier:
        member_id = int(source.split(":")[2])
        already[member_id] = already.get(member_id, 0) + amount
    before = [already.get(s.member_id, 0) for s in payers]
    target = apportion(sum(before) + line.amount_minor, weights)
    parts = [t - b for t, b in zip(target, before, strict=True)]
    if any(part > 0 for part in parts):  # the rare rounding paradox: this credit on its own
        return apportion(line.amount_minor, weights)
    return parts


def _paid_for_lease(lease_id: int | None) -> dict[int, int]:
    """Per payer member: what it was billed for the lease's price (its part and the
    sponsorship it carried), from the split of the group's auction line."""
    paid: dict[int, int] = {}
    if lease_id is None:
        return paid
    shares = LineItem.objects.filter(
        group_line__lease_id=lease_id, group_line__kind=LineItemKind.AUCTION
    ).values_list("source", "amount_minor")
    for source, amount in shares:
        member_id = int(source.split(":")[2])  # share:<line>:<payer> or sponsor:<line>:<payer>:…
        paid[member_id] = paid.get(member_id, 0) + amount
    return paid


def _presentation_of(organization_id: int, cache: dict) -> str:
    from billing.statements import _presentation_of as presentation

    return presentation(organization_id, cache)


@transaction.atomic
def _line_split(line_pk: int) -> bool:
    line = (
        LineItem.objects.select_for_update(of=("self",))
        .select_related("organization", "lease")
        .get(pk=line_pk)
    )
    if line.shares.exists():
        return False  # split by another run meanwhile
    shares = list(
        LeaseShare.objects.filter(lease_id=line.lease_id)
        .select_related("member__user", "member__device", "paying_organization")
        .order_by("member_id")
    )
    payers = [s for s in shares if s.role == MemberRole.PAYER]
    sponsored = [s for s in shares if s.role == MemberRole.SPONSORED]
    if not payers:
        logger.error("Group line %s (%s) has no payer to split it between", line.pk, line.source)
        return False
    pledges = [Pledge(share_bps=s.share_bps, cap_minor=s.cap_minor) for s in payers]
    paid = _paid_for_lease(line.lease_id) if line.amount_minor < 0 else {}
    try:
        if any(paid.get(s.member_id, 0) > 0 for s in payers):
            # a credit goes back in proportion to what each payer paid for the lease
            parts = _credit_parts(line, payers, paid)
        else:
            parts = split_charge(line.amount_minor, pledges, caps=line.kind == LineItemKind.AUCTION)
    except SplitImpossible as exc:
        logger.error("Group line %s cannot be split: %s", line.pk, exc)
        return False
    if line.amount_minor > 0:
        own, sponsoring = sponsorship_split(parts, len(payers) + len(sponsored), len(sponsored))
    else:
        own, sponsoring = parts, [[0] * len(sponsored) for _ in payers]
    group_name = line.organization.name
    presentations: dict[int, str] = {}
    rows = []
    for payer, own_part, for_sponsored in zip(payers, own, sponsoring, strict=True):
        common = {
            "organization": payer.paying_organization,
            "provider_id": line.provider_id,
            "currency": line.currency,
            "presentation": _presentation_of(payer.paying_organization_id, presentations),
            "occurred_at": line.occurred_at,
            "lease_id": line.lease_id,
            "job_id": line.job_id,
            "group_line": line,
        }
        rows.append(
            LineItem(
                **common,
                kind=line.kind,
                description=f"{line.description} (your part as a payer of {group_name})"[:300],
                amount_minor=own_part,
                source=f"share:{line.pk}:{payer.member_id}",
            )
        )
        for member, amount in zip(sponsored, for_sponsored, strict=True):
            if amount == 0:
                continue
            rows.append(
                LineItem(
                    **common,
                    kind=LineItemKind.SPONSORSHIP,
                    description=f"Sponsored for {member.member.label} in {group_name}, "
                    f"lease {line.lease_id}"[:300],
                    amount_minor=amount,
                    source=f"sponsor:{line.pk}:{payer.member_id}:{member.member_id}",
                )
            )
    LineItem.objects.bulk_create(rows)
    return True
