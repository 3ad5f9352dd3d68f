"""The split of a buying group's charges between its payers (billing.shares): over many random
cases the parts always add up to the amount, never pass a cap, follow the pledged shares, and
the rounding goes in the documented order."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.shares import (
    Pledge,
    SplitImpossible,
    apportion,
    ceiling_of,
    group_limit,
    split_charge,
    sponsorship_split,
    weights_of,
)

pledges = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(1, 10_000)),
        st.one_of(st.none(), st.integers(0, 10**9)),
    )
    .filter(lambda pledge: pledge != (None, None))
    .map(lambda pledge: Pledge(share_bps=pledge[0], cap_minor=pledge[1])),
    min_size=1,
    max_size=8,
)


@settings(max_examples=500, deadline=None)
@given(pledges=pledges, data=st.data())
def test_a_price_within_the_caps_is_split_exactly_and_nobody_passes_its_cap(pledges, data):
    limit = group_limit(pledges)
    price = data.draw(st.integers(0, limit if limit is not None else 10**12))

    parts = split_charge(price, pledges)

    assert sum(parts) == price
    assert all(part >= 0 for part in parts)
    for part, pledge in zip(parts, pledges, strict=True):
        if pledge.cap_minor is not None:
            assert part <= pledge.cap_minor
        if pledge.share_bps is not None:  # a share is a ceiling (up to the rounding unit)
            assert part < price * Fraction(pledge.share_bps, 10_000) + 1
    # one unit more than the limit is not covered
    if limit is not None:
        with pytest.raises(SplitImpossible):
            split_charge(limit + 1, pledges)


@settings(max_examples=300, deadline=None)
@given(pledges=pledges, data=st.data())
def test_each_part_is_a_rounding_of_the_proportional_part_when_no_cap_binds(pledges, data):
    weights = weights_of(pledges)
    if sum(weights) == 0:
        return
    price = data.draw(st.integers(0, 10**9))
    exact = [Fraction(price) * w / sum(weights) for w in weights]
    if any(e > ceiling_of(p, price) for p, e in zip(pledges, exact, strict=True)):
        return  # a ceiling binds (or nobody covers the price): covered by the test above

    parts = split_charge(price, pledges)

    for part, share in zip(parts, exact, strict=True):
        assert share - 1 < part < share + 1


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(-(10**9), 10**9),
    weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=10).filter(any),
)
def test_apportion_always_adds_up_and_keeps_the_sign(amount, weights):
    parts = apportion(amount, weights)

    assert sum(parts) == amount
    assert all((part <= 0) if amount < 0 else (part >= 0) for part in parts)
    assert all(part == 0 for part, weight in zip(parts, weights, strict=True) if weight == 0)


@settings(max_examples=300, deadline=None)
@given(
    paid=st.lists(st.integers(0, 10**8), min_size=1, max_size=6),
    payers_and_sponsored=st.integers(0, 6),
)
def test_sponsorship_lines_and_own_parts_add_up_to_what_each_payer_pays(paid, payers_and_sponsored):
    sponsored = payers_and_sponsored
    members = len(paid) + sponsored

    own, per_payer = sponsorship_split(paid, members, sponsored)

    for total, mine, sponsoring in zip(paid, own, per_payer, strict=True):
        assert mine + sum(sponsoring) == total
        assert mine >= 0 and all(part >= 0 for part in sponsoring)
    # together the payers cover each sponsored member's equal part of the charge exactly
    if sponsored and sum(paid):
        each = [sum(column) for column in zip(*per_payer, strict=True)]
        assert each == apportion(sum(paid), [1] * members)[len(paid) :]


def test_remainders_go_to_the_largest_fractions_then_to_the_earlier_payer():
    # 100 split three ways: 33.33 each; the one unit left goes to the first payer
    assert split_charge(100, [Pledge(cap_minor=1000)] * 3) == [34, 33, 33]
    # caps only: in proportion to the caps (10 * 2/22, 10/22, 10/22 = 0.91, 4.55, 4.55);
    # the two units left go to the largest fraction, then to the earlier of the equal ones
    assert split_charge(10, [Pledge(cap_minor=2), Pledge(cap_minor=10), Pledge(cap_minor=10)]) == [
        1,
        5,
        4,
    ]
    # shares 50 % and 25 %; the payer without a share takes the 25 % left
    assert split_charge(
        1000, [Pledge(share_bps=5000), Pledge(share_bps=2500), Pledge(cap_minor=900)]
    ) == [500, 250, 250]


def test_a_capped_payer_never_pays_more_and_the_rest_goes_to_the_others():
    # 60 % share but a cap of 300 on a price of 1,000: 300; the other (up to 800) pays 700
    assert split_charge(1000, [Pledge(share_bps=6000, cap_minor=300), Pledge(cap_minor=800)]) == [
        300,
        700,
    ]


def test_a_share_is_a_ceiling_not_a_blank_cheque():
    # 40 % pledged: never more than 40 % of the price, even when the other payer is capped
    with pytest.raises(SplitImpossible):
        split_charge(1000, [Pledge(share_bps=6000, cap_minor=300), Pledge(share_bps=4000)])
    # alone with 10 %, a payer covers nothing; two payers of 50 % each cover any price
    assert group_limit([Pledge(share_bps=1000)]) == 0
    assert group_limit([Pledge(share_bps=5000), Pledge(share_bps=5000)]) is None
    assert split_charge(999, [Pledge(share_bps=5000), Pledge(share_bps=5000)]) == [500, 499]


def test_a_price_above_the_caps_cannot_be_split():
    with pytest.raises(SplitImpossible, match="cannot be split"):
        split_charge(1001, [Pledge(cap_minor=500), Pledge(cap_minor=500)])
    assert group_limit([Pledge(cap_minor=500), Pledge(cap_minor=500)]) == 1000
    # 500 + 1 % of the price covers prices up to 505
    assert group_limit([Pledge(cap_minor=500), Pledge(share_bps=100)]) == 505


def test_credits_are_split_by_the_weights_without_caps():
    assert split_charge(-1000, [Pledge(cap_minor=100), Pledge(cap_minor=300)]) == [-250, -750]
