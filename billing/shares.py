"""How a buying group's charges are split between its payers, to the minor unit (SPEC §4.4).

Pure arithmetic on integers and exact fractions, no database.

**Weights.** A payer who pledged a share (basis points) weighs its share. The payers who
pledged only a cap share what is left of 100 % (if anything), in proportion to their caps.
If no weight is left at all (shares of 0, or all of 100 % taken by others), the payers with
room left take the rest in proportion to their caps.

**Ceilings.** A payer never pays more of a lease's price than its ceiling: its cap, and its
share of the price, whichever is lower (a share is a promise of that part, not more; the
rounding below may add less than one minor unit to a share's part, never to a cap). The price
is split in proportion to the weights; a payer whose part would pass its ceiling pays its
ceiling, and the excess is split again among the others, in proportion to their weights (or,
when none of them has weight, to the room left under their ceilings), until nothing is left.
A price the ceilings cannot cover cannot be split: the group's bid limit (`group_limit`) is the
largest price they cover, so a won price always can. Usage is split by the weights alone
(`caps=False`); credits by what each payer paid of the lease (billing.groups).

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


def ceiling_of(pledge: Pledge, amount: Fraction | int) -> Fraction:
    """The most a payer pays of `amount`: its cap, and its share of the amount, whichever is
    lower (a pledge has at least one of them)."""
    ceilings = []
    if pledge.cap_minor is not None:
        ceilings.append(Fraction(pledge.cap_minor))
    if pledge.share_bps is not None:
        ceilings.append(Fraction(amount) * pledge.share_bps / FULL_SHARE_BPS)
    return min(ceilings)


def split_charge(amount: int, pledges: Sequence[Pledge], *, caps: bool = True) -> list[int]:
    """What each payer pays of `amount` (minor units, any sign). A charge with `caps` never
    puts more on a payer than its ceiling (`ceiling_of`); without, and for credits, it is
    split by the weights alone. Raises SplitImpossible when the ceilings cannot cover it."""
    if not pledges:
        raise SplitImpossible("The group has no payer.")
    weights = weights_of(pledges)
    if amount <= 0 or not caps:
        if sum(weights) == 0:
            return apportion(amount, [1] * len(pledges))
        return apportion(amount, weights)
    ceilings = [ceiling_of(pledge, amount) for pledge in pledges]
    if sum(ceilings) < amount:
        raise SplitImpossible(
            f"{amount} is more than the payers' pledges cover ({group_limit(pledges)} at "
            "most): it cannot be split."
        )
    exact = _water_filled(Fraction(amount), ceilings, weights)
    return _rounded(exact, amount)


def _water_filled(amount: Fraction, ceilings: Sequence[Fraction], weights) -> list[Fraction]:
    """Parts of `amount` in proportion to the weights, none above its ceiling: whoever
    reaches its ceiling stops, the others share the rest; when nobody with weight has room,
    the rest goes by room left."""
    parts = [Fraction(0)] * len(ceilings)
    open_ = {i for i in range(len(ceilings)) if ceilings[i] > 0}
    left = amount
    while left > 0:
        room = {i: ceilings[i] - parts[i] for i in open_}
        basis = {i: weights[i] for i in open_ if weights[i] > 0} or dict(room)
        total = sum(basis.values())
        if not basis or total <= 0:
            raise SplitImpossible("Nobody has room left to pay.")
        # the largest step that fills nobody past its ceiling
        step = min([left] + [room[i] * total / weight for i, weight in basis.items()])
        for i, weight in basis.items():
            parts[i] += step * weight / total
        left -= step
        open_ = {i for i in open_ if parts[i] < ceilings[i]}
    return parts


def group_limit(pledges: Sequence[Pledge]) -> int | None:
    """The most the payers pay together for one lease: the largest whole price their
    ceilings cover; None (no limit) when payers who pledged shares without caps pledged
    100 % between them. 0 without payers."""
    if not pledges:
        return 0
    uncapped_share = sum(
        p.share_bps for p in pledges if p.cap_minor is None and p.share_bps is not None
    )
    if uncapped_share >= FULL_SHARE_BPS:
        return None
    caps = sum(p.cap_minor for p in pledges if p.cap_minor is not None)
    # the ceilings less the price is a concave function of the price (each ceiling is a
    # minimum of linear ones) that is 0 or more at 0: the covered prices are an interval from
    # 0 to the limit, whose end is found by bisection
    low = 0
    high = int(Fraction(caps) / (1 - Fraction(uncapped_share, FULL_SHARE_BPS))) + 1
    while low < high:
        middle = (low + high + 1) // 2
        if sum(ceiling_of(p, middle) for p in pledges) >= middle:
            low = middle
        else:
            high = middle - 1
    return low


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
