"""How a buying group's charges are split between its payers, to the minor unit (SPEC §4.4).

Pure arithmetic on integers and exact fractions, no database.

**Weights.** A payer who pledged a share (basis points) weighs its share. The payers who
pledged only a cap share what is left of 100 % (if anything), in proportion to their caps.
If no weight is left at all (shares of 0, or all of 100 % taken by others), the payers with
room left take the rest in proportion to their caps.

**Caps.** A lease's price is split in proportion to the weights; a payer whose part would pass
its cap pays its cap, and the excess is split again among the others, in proportion to their
weights (or, when none of them has weight, to the room left under their caps), until nothing
is left. Nobody ever pays more than its cap. A price above the sum of the caps cannot be split
(the group's bid limit is that sum, so a won price never is). Usage and credits are split by
the weights alone (`caps=False`).

**Rounding** (largest remainder, deterministic): every payer first gets the whole minor units
of its exact part; the units left over (fewer than the number of payers) go one each to the
payers with the largest fractional parts; equal fractions go to the earlier member (the
lower position in the list given, which callers order by member id). Each part is then a
floor or a ceiling of the exact part, so it stays within the cap, and the parts always add
up to the amount.

**Sponsorship.** Every member, payer or sponsored, stands for an equal part of a charge
(`apportion` of the amount over the members). The sponsored members' parts are paid by the
payers in proportion to what each pays (`sponsorship_split`): the payers' sponsoring amounts,
in the payers' order, cover the sponsored members' parts, in the members' order, end to end.
So each payer's statement shows its own part and a "sponsored for …" line for each sponsored
member it covers, adding up to what it pays, and each sponsored member is covered exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

FULL_SHARE_BPS = 10_000


class SplitImpossible(ValueError):
    """The amount cannot be split within the caps."""


@dataclass(frozen=True)
class Pledge:
    """A payer's pledge: a share in basis points and/or a cap in minor units (None: none)."""

    share_bps: int | None = None
    cap_minor: int | None = None

    def __post_init__(self):
        if self.share_bps is None and self.cap_minor is None:
            raise ValueError("A pledge has a share or a cap.")
        if self.share_bps is not None and not 0 <= self.share_bps <= FULL_SHARE_BPS:
            raise ValueError("A share is 0 to 10,000 basis points.")
        if self.cap_minor is not None and self.cap_minor < 0:
            raise ValueError("A cap is 0 or more.")


def apportion(amount: int, weights: Sequence[Fraction | int]) -> list[int]:
    """`amount` (any sign) split in proportion to `weights` (0 or more, not all 0) by the
    largest remainder: whole units first, the rest one each by largest fraction, ties to the
    earlier position. The parts add up to `amount`."""
    if not weights:
        raise ValueError("Nothing to split between.")
    total = sum(Fraction(weight) for weight in weights)
    if total <= 0 or any(weight < 0 for weight in weights):
        raise ValueError("Weights are 0 or more and not all 0.")
    sign = -1 if amount < 0 else 1
    exact = [Fraction(abs(amount)) * Fraction(weight) / total for weight in weights]
    return [sign * part for part in _rounded(exact, abs(amount))]


def _rounded(exact: Sequence[Fraction], amount: int) -> list[int]:
    """Whole parts of exact non-negative parts that sum to `amount`, largest remainders
    rounded up first (ties to the earlier position)."""
    floors = [part.numerator // part.denominator for part in exact]
    left = amount - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def weights_of(pledges: Sequence[Pledge]) -> list[Fraction]:
    """Each payer's weight (see the module's docstring)."""
    shared = sum(p.share_bps for p in pledges if p.share_bps is not None)
    rest = Fraction(max(0, FULL_SHARE_BPS - shared))
    cap_only = [p for p in pledges if p.share_bps is None]
    caps_total = sum(p.cap_minor for p in cap_only)
    weights = []
    for pledge in pledges:
        if pledge.share_bps is not None:
            weights.append(Fraction(pledge.share_bps))
        elif caps_total > 0:
            weights.append(rest * pledge.cap_minor / caps_total)
        else:
            weights.append(rest / len(cap_only))
    return weights


def split_charge(amount: int, pledges: Sequence[Pledge], *, caps: bool = True) -> list[int]:
    """What each payer pays of `amount` (minor units, any sign; caps apply to charges only).
    Raises SplitImpossible when a charge exceeds the sum of the caps, or nobody can pay."""
    if not pledges:
        raise SplitImpossible("The group has no payer.")
    weights = weights_of(pledges)
    if amount <= 0 or not caps:
        if sum(weights) == 0:
            return apportion(amount, [1] * len(pledges))
        return apportion(amount, weights)
    limit = group_limit(pledges)
    if limit is not None and amount > limit:
        raise SplitImpossible(
            f"{amount} is more than the payers' caps together ({limit}): it cannot be split."
        )
    exact = _water_filled(Fraction(amount), pledges, weights)
    return _rounded(exact, amount)


def _water_filled(amount: Fraction, pledges: Sequence[Pledge], weights) -> list[Fraction]:
    parts = [Fraction(0)] * len(pledges)
    open_ = set(range(len(pledges)))
    left = amount
    while left > 0:
        room = {
            i: (None if pledges[i].cap_minor is None else pledges[i].cap_minor - parts[i])
            for i in open_
        }
        by_weight = {i: weights[i] for i in open_ if weights[i] > 0}
        if by_weight:
            basis = by_weight
        else:  # nobody with weight has room: the rest by room left under the caps
            basis = {i: r for i, r in room.items() if r is None or r > 0}
            if any(r is None for r in basis.values()):
                basis = {i: Fraction(1) for i, r in basis.items() if r is None}
        total = sum(basis.values())
        if not basis or total <= 0:
            raise SplitImpossible("Nobody has room left to pay.")
        # the largest step that fills no cap past its room
        step = left
        for i, weight in basis.items():
            if room[i] is not None:
                step = min(step, room[i] * total / weight)
        for i, weight in basis.items():
            parts[i] += step * weight / total
        left -= step
        for i in list(open_):
            if pledges[i].cap_minor is not None and parts[i] >= pledges[i].cap_minor:
                open_.discard(i)
    return parts


def group_limit(pledges: Sequence[Pledge]) -> int | None:
    """The most the payers pay together for one lease: the sum of their caps; None (no limit)
    when a payer pledged a share without a cap."""
    if any(pledge.cap_minor is None for pledge in pledges):
        return None
    return sum(pledge.cap_minor for pledge in pledges)


def sponsorship_split(
    paid: Sequence[int], members: int, sponsored: int
) -> tuple[list[int], list[list[int]]]:
    """Of what each payer pays (`paid`, one per payer), the part that sponsors others: the
    charge (the sum of `paid`) stands for `members` equal parts, `sponsored` of them for
    sponsored members. Returns each payer's own part, and for each payer its part of each
    sponsored member's share; everything adds up to `paid`."""
    amount = sum(paid)
    if sponsored == 0 or amount == 0:
        return list(paid), [[0] * sponsored for _ in paid]
    per_member = apportion(amount, [1] * members)
    sponsored_parts = per_member[members - sponsored :]  # the last parts, the members' order
    sponsoring = apportion(sum(sponsored_parts), [abs(p) for p in paid])
    own = [p - s for p, s in zip(paid, sponsoring, strict=True)]
    return own, _overlaps(sponsoring, sponsored_parts)


def _overlaps(rows: Sequence[int], columns: Sequence[int]) -> list[list[int]]:
    """A table of whole amounts whose rows add up to `rows` and columns to `columns` (equal
    totals, all 0 or more): the payers' amounts laid end to end against the sponsored
    members' parts laid end to end, each cell the length both share."""
    table = [[0] * len(columns) for _ in rows]
    row_end = column_end = 0
    row_starts = []
    for amount in rows:
        row_starts.append(row_end)
        row_end += amount
    column_starts = []
    for amount in columns:
        column_starts.append(column_end)
        column_end += amount
    for i, (start, amount) in enumerate(zip(row_starts, rows, strict=True)):
        for j, (c_start, c_amount) in enumerate(zip(column_starts, columns, strict=True)):
            table[i][j] = max(0, min(start + amount, c_start + c_amount) - max(start, c_start))
    return table
