"""Line items, statements and settlements (SPEC §6).

Line items are recorded once per source: a won auction (the lease's price, to the block's
provider), metered usage (a work item's bytes at the prices of the services it ran: the plan's
price per GB for a planned job, else the provider's offers for its processing steps; a
subcontracted item is "subcontracted work"), and SLA credits (a breach credits the lease's price
in proportion to the shortfall below the guaranteed rate). `line_items_record` finds what is not
billed yet and records it; a source recorded twice is still one line (a unique key).

A statement gathers a recipient's lines of a period in one currency: consolidated (all
providers, grouped by provider) or per provider, as the line says (the profile of the job it
comes from, else the recipient's billing account). Totals are sums of integer minor units, so
they reconcile exactly; the consolidated and the per-provider presentation of the same lines
give the same grand total. Settlements: per provider, period and currency, the lines of paid
statements (gross), the exchange's fee (EXCHANGE_FEE_BPS, rounded half up) and the net.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils import timezone

from auctions.models import Lease
from billing.models import (
    BillingAccount,
    DisputeReversal,
    LineItem,
    LineItemKind,
    Settlement,
    Statement,
    StatementStatus,
)
from marketplace.models import Organization, OrganizationKind
from marketplace.services import audit_log_record
from providers.models import Offer, ProviderProfile
from segmentation.models import (
    BillingPresentation,
    SlaBreach,
    UsageRecord,
    WorkItemKind,
)

BYTES_PER_GB = 10**9


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves away from zero."""
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    quotient, remainder = divmod(abs(numerator), abs(denominator))
    if 2 * remainder >= abs(denominator):
        quotient += 1
    return sign * quotient


def billing_account_of(organization: Organization) -> BillingAccount:
    account, _ = BillingAccount.objects.get_or_create(organization=organization)
    return account


# --- line items ----------------------------------------------------------------------------------


def line_items_record() -> int:
    """Record a line for every billable source that has none yet; returns how many. Safe to
    run in several processes at once (a source is unique)."""
    lines = [
        *_auction_lines(),
        *_usage_lines(),
        *_sla_credit_lines(),
    ]
    if not lines:
        return 0
    before = LineItem.objects.count()
    LineItem.objects.bulk_create(lines, ignore_conflicts=True)
    return LineItem.objects.count() - before


def _presentation_of(organization_id: int, cache: dict) -> str:
    if organization_id not in cache:
        account = BillingAccount.objects.filter(organization_id=organization_id).first()
        cache[organization_id] = (
            account.presentation if account else BillingPresentation.CONSOLIDATED
        )
    return cache[organization_id]


def _auction_lines():
    presentations: dict[int, str] = {}
    leases = (
        Lease.objects.filter(
            ~Exists(LineItem.objects.filter(lease=OuterRef("pk"), kind=LineItemKind.AUCTION))
        )
        .select_related("block__provider", "auction")
        .order_by("pk")
    )
    for lease in leases:
        block = lease.block
        yield LineItem(
            organization_id=lease.winner_id,
            provider=block.provider,
            kind=LineItemKind.AUCTION,
            description=(
                f"Block of {block.provider.legal_name}, {block.starts_at:%Y-%m-%d %H:%M} to "
                f"{block.ends_at:%Y-%m-%d %H:%M} UTC, up to {block.max_rate_mbps} Mbit/s "
                f"({lease.origin})"
            ),
            amount_minor=lease.price_minor,
            currency=lease.currency,
            presentation=_presentation_of(lease.winner_id, presentations),
            occurred_at=lease.created_at,
            source=f"lease:{lease.pk}",
            lease=lease,
        )


def _usage_lines():
    presentations: dict[int, str] = {}
    offers: dict[int, dict[str, Offer]] = {}
    records = (
        UsageRecord.objects.filter(billing_line__isnull=True)
        .select_related("job__profile", "job__plan", "provider", "work_item__plan_line", "lease")
        .order_by("pk")
    )
    for record in records:
        price, currency = _usage_price(record, offers)
        if currency is None:
            continue  # nothing it ran has a price (no offer): nothing to bill
        job = record.job
        subcontracted = record.kind == WorkItemKind.SUBCONTRACT
        # the leaseholder pays for its lease's usage, whoever ran the job under a seat
        billed = record.lease.winner_id if record.lease_id else job.organization_id
        presentation = (
            job.profile.billing_presentation
            if job.profile_id is not None and billed == job.organization_id
            else _presentation_of(billed, presentations)
        )
        yield LineItem(
            organization_id=billed,
            provider=record.provider,
            kind=LineItemKind.SUBCONTRACT if subcontracted else LineItemKind.USAGE,
            description=(
                f"Job {job.pk}, {'subcontracted segment' if subcontracted else 'segment'} "
                f"{record.work_item.number}: {record.bytes:,} bytes at {price} per GB"
            ),
            amount_minor=half_up(record.bytes * price, BYTES_PER_GB),
            currency=currency,
            presentation=presentation,
            occurred_at=record.recorded_at,
            source=f"usage:{record.pk}",
            lease=record.lease,
            job=job,
            usage_record=record,
        )


def _usage_price(record: UsageRecord, offers: dict) -> tuple[int, str | None]:
    """The price per GB of a usage record, and its currency: the plan's price for a planned
    segment, else the sum of the provider's per-GB prices of the services the item ran."""
    line = record.work_item.plan_line
    if line is not None:
        return line.price_per_gb_minor, record.job.plan.currency
    if record.provider_id not in offers:
        offers[record.provider_id] = {
            offer.service: offer
            for offer in Offer.objects.filter(provider_id=record.provider_id, is_active=True)
        }
    catalogue = offers[record.provider_id]
    services = {step["service"] for step in record.work_item.steps}
    priced = [catalogue[service] for service in sorted(services) if service in catalogue]
    if not priced:
        return 0, None
    currencies = {offer.currency for offer in priced}
    currency = priced[0].currency if len(currencies) == 1 else None
    if currency is None:
        return 0, None  # a provider pricing its services in several currencies: none billed
    return sum(offer.price_per_gb_minor for offer in priced), currency


def sla_credit_minor(breach: SlaBreach) -> int:
    """The credit of a breach (negative): the lease's price in proportion to the shortfall
    below the guaranteed rate, never more than the price."""
    lease = breach.lease
    shortfall = max(0.0, 1.0 - breach.measured_mbps / breach.guaranteed_mbps)
    # in millionths, so the rounding is integer arithmetic
    credit = half_up(lease.price_minor * round(shortfall * 1_000_000), 1_000_000)
    return -min(lease.price_minor, credit)


def _credit_capped(breach: SlaBreach, credited: dict[int, int]) -> int:
    lease = breach.lease
    if lease.pk not in credited:
        credited[lease.pk] = -(
            # the lease's own credits (a group's payers' shares of them count once, as the
            # group's line)
            LineItem.objects.filter(
                lease=lease, kind=LineItemKind.SLA_CREDIT, group_line__isnull=True
            ).aggregate(total=Sum("amount_minor"))["total"]
            or 0
        )
    room = max(0, lease.price_minor - credited[lease.pk])
    credit = min(room, -sla_credit_minor(breach))
    credited[lease.pk] += credit
    return -credit


def _sla_credit_lines():
    presentations: dict[int, str] = {}
    # what each lease was credited so far: all its credits together never exceed its price
    credited: dict[int, int] = {}
    breaches = (
        SlaBreach.objects.filter(billing_credit__isnull=True)
        .select_related("lease__block__provider", "job__profile")
        .order_by("pk")
    )
    for breach in breaches:
        lease = breach.lease
        job = breach.job
        presentation = (
            job.profile.billing_presentation
            if job.profile_id is not None
            else _presentation_of(lease.winner_id, presentations)
        )
        yield LineItem(
            organization_id=lease.winner_id,
            provider=lease.block.provider,
            kind=LineItemKind.SLA_CREDIT,
            description=(
                f"SLA credit, job {job.pk}: {breach.measured_mbps:.2f} Mbit/s against "
                f"{breach.guaranteed_mbps} guaranteed"
            ),
            amount_minor=_credit_capped(breach, credited),
            currency=lease.currency,
            presentation=presentation,
            occurred_at=breach.recorded_at,
            source=f"sla:{breach.pk}",
            lease=lease,
            job=job,
            sla_breach=breach,
        )


# --- statements ----------------------------------------------------------------------------------


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def statement_number(
    organization: Organization,
    period_start: date,
    currency: str,
    provider: ProviderProfile | None,
) -> str:
    return (
        f"ST-{period_start:%Y%m}-{organization.pk:05d}-{currency}-"
        f"{f'P{provider.pk}' if provider else 'ALL'}"
    )


def group_lines_split() -> int:
    from billing.groups import group_lines_split as split

    return split()


def statements_build(*, period_start: date, period_end: date) -> list[Statement]:
    """Record what is not billed yet, then issue the period's statements: for each recipient
    and currency, one consolidated statement and one per provider whose lines ask for it,
    with every line not billed yet that occurred before the period's end (a line recorded
    late joins the next statement). Lines already on a statement are never billed again;
    safe to run twice."""
    if period_end <= period_start:
        raise ValueError("A period ends after it starts.")
    line_items_record()
    group_lines_split()
    end = _midnight(period_end)
    groups = defaultdict(list)
    # every line not billed yet up to the period's end: one recorded after its own period's
    # statement was issued joins this one; a buying group's own lines are billed to its
    # payers instead (billing.groups)
    pending = (
        LineItem.objects.filter(statement__isnull=True, occurred_at__lt=end)
        .exclude(organization__kind=OrganizationKind.GROUP)
        .values_list("pk", "organization_id", "currency", "presentation", "provider_id", "kind")
    )
    carried_in = []
    for pk, organization_id, currency, presentation, provider_id, kind in pending:
        if kind == LineItemKind.CREDIT_CARRIED_IN:
            carried_in.append((pk, organization_id, currency, provider_id))
            continue
        key_provider = provider_id if presentation == BillingPresentation.PER_PROVIDER else None
        groups[(organization_id, currency, presentation, key_provider)].append(pk)
    _carried_credits_place(carried_in, groups)
    issued = []
    for (organization_id, currency, presentation, provider_id), pks in sorted(groups.items()):
        statement = _statement_issue(
            organization_id, currency, presentation, provider_id, pks, period_start, period_end
        )
        if statement is not None:
            issued.append(statement)
    return issued


def _carried_credits_place(carried_in: list, groups: dict) -> None:
    """A credit carried from an earlier statement joins one of the recipient's statements of
    this period in its currency that charges something: the provider's own, else the
    consolidated one, else any other (its presentation follows); with none, it waits for a
    period that has one (no statement is issued for carried credits alone)."""
    for pk, organization_id, currency, provider_id in carried_in:
        candidates = [
            (organization_id, currency, BillingPresentation.PER_PROVIDER, provider_id),
            (organization_id, currency, BillingPresentation.CONSOLIDATED, None),
            *sorted(key for key in groups if key[0] == organization_id and key[1] == currency),
        ]
        target = next((key for key in candidates if key in groups), None)
        if target is None:
            continue
        LineItem.objects.filter(pk=pk).update(presentation=target[2])
        groups[target].append(pk)


def _statement_issue(
    organization_id, currency, presentation, provider_id, pks, period_start, period_end
) -> Statement | None:
    with transaction.atomic():
        # one recipient's statements are issued one at a time
        organization = Organization.objects.select_for_update().get(pk=organization_id)
        lines = list(
            LineItem.objects.select_for_update().filter(pk__in=pks, statement__isnull=True)
        )
        if not lines:
            return None
        provider = ProviderProfile.objects.get(pk=provider_id) if provider_id else None
        existing = Statement.objects.filter(
            organization=organization,
            period_start=period_start,
            currency=currency,
            presentation=presentation,
            provider=provider,
        ).first()
        if existing is not None:
            # issued already (this runs twice): the lines wait for the next period
            return None
        charges = sum(line.amount_minor for line in lines if line.amount_minor > 0)
        credits = sum(line.amount_minor for line in lines if line.amount_minor < 0)
        carried = max(0, -(charges + credits))
        total = charges + credits + carried
        statement = Statement.objects.create(
            organization=organization,
            number=statement_number(organization, period_start, currency, provider),
            period_start=period_start,
            period_end=period_end,
            presentation=presentation,
            provider=provider,
            currency=currency,
            charges_minor=charges,
            credits_minor=credits,
            carried_minor=carried,
            total_minor=total,
            status=StatementStatus.ISSUED if total > 0 else StatementStatus.NOTHING_DUE,
        )
        LineItem.objects.filter(pk__in=[line.pk for line in lines]).update(statement=statement)
        if carried:
            _credit_carry(statement, lines, carried)
        audit_log_record(
            action="statement.issued",
            organization=organization,
            target=statement,
            data={
                "number": statement.number,
                "total_minor": total,
                "carried_minor": carried,
                "currency": currency,
                "lines": len(lines),
            },
        )
    return statement


def _credit_carry(statement: Statement, lines: list[LineItem], carried: int) -> None:
    """Credits beyond the statement's charges are not lost: they are carried to the recipient's
    next statement in the same currency and presentation. The amount is taken from the
    providers whose own lines net to a credit (the largest credit first, then by provider id),
    each at most its net, and each provider's part becomes a pair of lines: "carried to the
    next statement" here (so this statement, and the provider's settlement of it, net to
    zero for that part) and "carried from" on the next one (so the provider's next settlement
    bears it). Recorded once per statement and provider."""
    net_by_provider: dict[int, int] = defaultdict(int)
    for line in lines:
        net_by_provider[line.provider_id] += line.amount_minor
    left = carried
    end = _midnight(statement.period_end)
    for provider_id, net in sorted(net_by_provider.items(), key=lambda item: (item[1], item[0])):
        if left <= 0 or net >= 0:
            break
        part = min(left, -net)
        left -= part
        common = {
            "organization_id": statement.organization_id,
            "provider_id": provider_id,
            "currency": statement.currency,
            "presentation": statement.presentation,
        }
        LineItem.objects.create(
            **common,
            kind=LineItemKind.CREDIT_CARRIED_OUT,
            description="Credit carried to your next statement",
            amount_minor=part,
            occurred_at=end - timedelta(microseconds=1),
            source=f"carry-out:{statement.number}:{provider_id}",
            statement=statement,
        )
        LineItem.objects.create(
            **common,
            kind=LineItemKind.CREDIT_CARRIED_IN,
            description=f"Credit carried from statement {statement.number}",
            amount_minor=-part,
            occurred_at=end,
            source=f"carry-in:{statement.number}:{provider_id}",
        )


PAYABLE_STATUSES = (
    StatementStatus.ISSUED,
    StatementStatus.PAYMENT_FAILED,
    StatementStatus.ACTION_REQUIRED,
    StatementStatus.CHARGED_BACK,
)


def statement_mark_paid(*, statement: Statement, paid_at: datetime | None = None) -> Statement:
    """The statement's charge succeeded (called by the charge service). Only a statement
    waiting for its payment (issued, failed, waiting for authentication, or charged back and
    paid again) becomes paid: a late answer never turns a disputed one back into paid."""
    with transaction.atomic():
        locked = Statement.objects.select_for_update().get(pk=statement.pk)
        if locked.status not in PAYABLE_STATUSES:
            return locked
        locked.status = StatementStatus.PAID
        locked.paid_at = paid_at or timezone.now()
        locked.save(update_fields=["status", "paid_at"])
        audit_log_record(
            action="statement.paid",
            organization=locked.organization,
            target=locked,
            data={"number": locked.number, "total_minor": locked.total_minor},
        )
    return locked


@dataclass(frozen=True)
class ProviderGroup:
    """A provider's lines on a statement, with their subtotal."""

    provider: ProviderProfile
    lines: list[LineItem]
    subtotal_minor: int


def statement_groups(statement: Statement) -> list[ProviderGroup]:
    """The statement's lines grouped by provider (by name), each with its subtotal."""
    by_provider: dict[int, list[LineItem]] = defaultdict(list)
    providers = {}
    for line in statement.lines.select_related("provider").order_by("occurred_at", "pk"):
        by_provider[line.provider_id].append(line)
        providers[line.provider_id] = line.provider
    return [
        ProviderGroup(
            provider=providers[pk],
            lines=lines,
            subtotal_minor=sum(line.amount_minor for line in lines),
        )
        for pk, lines in sorted(by_provider.items(), key=lambda item: providers[item[0]].legal_name)
    ]


# --- settlements ---------------------------------------------------------------------------------


def settlements_build(*, period_start: date, period_end: date) -> list[Settlement]:
    """Settle what was paid: per provider and currency, the lines attributed to it on
    statements paid before the period's end and not settled yet (a statement paid late, after
    its own period was settled, is settled in the period its payment came), as the gross;
    the exchange's fee (EXCHANGE_FEE_BPS of the gross, half up; none on a gross of zero or
    less) and the net. Each line is settled once; safe to run twice."""
    bps = int(getattr(settings, "EXCHANGE_FEE_BPS", 1000))
    end = _midnight(period_end)
    pending: dict[tuple[int, str], list[int]] = defaultdict(list)
    # paid statements, and those with nothing due (their credits offset their charges: each
    # provider's lines on them are settled as they stand, credits deducted)
    lines = (
        LineItem.objects.filter(settlement__isnull=True)
        .filter(
            Q(statement__status=StatementStatus.PAID, statement__paid_at__lt=end)
            | Q(statement__status=StatementStatus.NOTHING_DUE, statement__issued_at__lt=end)
        )
        .values_list("pk", "provider_id", "currency")
    )
    for pk, provider_id, currency in lines:
        pending[(provider_id, currency)].append(pk)
    # what providers return after lost disputes, recorded before the period's end
    reversals = DisputeReversal.objects.filter(settlement__isnull=True, created_at__lt=end)
    for provider_id, currency in reversals.values_list("provider_id", "currency"):
        pending.setdefault((provider_id, currency), [])
    settled = []
    for (provider_id, currency), pks in sorted(pending.items()):
        with transaction.atomic():
            if Settlement.objects.filter(
                provider_id=provider_id, period_start=period_start, currency=currency
            ).exists():
                continue  # settled already: these lines wait for the next period
            # the statements first (a dispute locks its statement too), then only the lines
            # whose statement is still paid or has nothing due
            list(
                Statement.objects.select_for_update()
                .filter(lines__pk__in=pks)
                .values_list("pk", flat=True)
                .order_by("pk")
            )
            locked = list(
                LineItem.objects.select_for_update().filter(
                    Q(statement__status=StatementStatus.PAID)
                    | Q(statement__status=StatementStatus.NOTHING_DUE),
                    pk__in=pks,
                    settlement__isnull=True,
                )
            )
            returned = list(
                reversals.select_for_update().filter(provider_id=provider_id, currency=currency)
            )
            if not locked and not returned:
                continue
            gross = sum(line.amount_minor for line in locked)
            fee = half_up(gross * bps, 10_000) if gross > 0 else 0
            reversed_minor = sum(reversal.amount_minor for reversal in returned)
            settlement = Settlement.objects.create(
                provider_id=provider_id,
                period_start=period_start,
                period_end=period_end,
                currency=currency,
                gross_minor=gross,
                fee_minor=fee,
                reversals_minor=reversed_minor,
                net_minor=gross - fee + reversed_minor,
                fee_bps=bps,
                lines_count=len(locked),
            )
            LineItem.objects.filter(pk__in=[line.pk for line in locked]).update(
                settlement=settlement
            )
            DisputeReversal.objects.filter(pk__in=[r.pk for r in returned]).update(
                settlement=settlement
            )
            audit_log_record(
                action="settlement.created",
                organization=settlement.provider.organization,
                target=settlement,
                data={
                    "gross_minor": gross,
                    "fee_minor": fee,
                    "reversals_minor": reversed_minor,
                    "net_minor": settlement.net_minor,
                    "currency": currency,
                },
            )
        settled.append(settlement)
    return settled


def settlement_lines(settlement: Settlement):
    """The lines a settlement adds up, in order."""
    return settlement.lines.select_related("statement").order_by("occurred_at", "pk")


def settlement_csv_rows(settlement: Settlement) -> list[list[str]]:
    """The settlement as CSV rows: a header, one row per line, and the totals."""
    rows = [["statement", "occurred_at", "kind", "description", "amount_minor", "currency"]]
    lines = settlement_lines(settlement)
    for line in lines:
        rows.append(
            [
                line.statement.number,
                line.occurred_at.isoformat(),
                line.kind,
                line.description,
                str(line.amount_minor),
                line.currency,
            ]
        )
    rows.append(["gross", "", "", "", str(settlement.gross_minor), settlement.currency])
    rows.append(
        [
            "fee",
            "",
            "",
            f"{settlement.fee_bps / 100:g} %",
            str(settlement.fee_minor),
            settlement.currency,
        ]
    )
    for reversal in settlement.reversals.select_related("dispute__charge__statement"):
        rows.append(
            [
                reversal.dispute.charge.statement.number,
                reversal.created_at.isoformat(),
                "dispute_reversal",
                f"Dispute {reversal.dispute.dispute_id} lost: paid earlier, returned",
                str(reversal.amount_minor),
                reversal.currency,
            ]
        )
    rows.append(["net", "", "", "", str(settlement.net_minor), settlement.currency])
    return rows


# --- periods -------------------------------------------------------------------------------------


def billing_period_of(moment: datetime) -> tuple[date, date]:
    """The calendar month (UTC) that holds `moment`: (its first day, the next month's)."""
    day = moment.astimezone(UTC).date().replace(day=1)
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day, following


def billing_period_close(*, period_start: date, period_end: date) -> int:
    """Issue the period's statements and settle its paid statements; returns how many
    statements were issued (0 when it ran before)."""
    issued = statements_build(period_start=period_start, period_end=period_end)
    settlements_build(period_start=period_start, period_end=period_end)
    return len(issued)


# --- reads ---------------------------------------------------------------------------------------


def statements_of(organization: Organization | None):
    return Statement.objects.filter(organization=organization).order_by(
        "-period_start", "currency", "number"
    )


def cards_of(organization: Organization | None):
    from billing.models import Card

    return Card.objects.filter(account__organization=organization)


def settlements_of(provider: ProviderProfile | None):
    return Settlement.objects.filter(provider=provider).order_by("-period_start", "currency")
