"""The planner: against an independent brute force, hand-checked cases for every rule of the
profile, infeasible requests explained, and whole bytes and minor units that add up exactly.

No database: the planner is pure. hypothesis is not installed here, so random instances come
from seeded loops (each seed is its own test case, so a failure names the instance).
"""

import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np
import pytest

from segmentation.planner import (
    Candidate,
    Plan,
    PlanningProfile,
    PlanRequest,
    Preference,
    optimal_plan,
    proportional_plan,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=10)
GB = 10**9


def offer(
    provider_id: int,
    *,
    bandwidth: float,
    price: int,
    rating: float | None = 4.0,
    networks: tuple[int, ...] = (),
    network_names: tuple[str, ...] = (),
    path_id: int | None = None,
    message_id: int | None = None,
    name: str | None = None,
    valid_until: datetime = LATER,
) -> Candidate:
    path_id = path_id if path_id is not None else provider_id * 100
    return Candidate(
        provider_id=provider_id,
        provider_name=name or f"Provider {provider_id}",
        message_id=message_id if message_id is not None else provider_id * 10,
        path_id=path_id,
        path_name=f"path {path_id}",
        network_ids=networks,
        network_names=network_names,
        bandwidth_mbps=bandwidth,
        price_per_gb_minor=price,
        rating=rating,
        valid_until=valid_until,
    )


def plan(candidates, *, volume=4 * GB, deadline=None, limit=None, **profile) -> Plan:
    return optimal_plan(
        request=PlanRequest(
            volume_bytes=volume,
            currency="EUR",
            deadline_seconds=deadline,
            price_limit_minor=limit,
        ),
        profile=PlanningProfile(**profile),
        candidates=candidates,
        now=NOW,
    )


def baseline(candidates, *, volume=4 * GB, deadline=None, limit=None, **profile) -> Plan:
    return proportional_plan(
        request=PlanRequest(
            volume_bytes=volume,
            currency="EUR",
            deadline_seconds=deadline,
            price_limit_minor=limit,
        ),
        profile=PlanningProfile(**profile),
        candidates=candidates,
        now=NOW,
    )


def shares(result: Plan) -> dict[int, int]:
    """Bytes per provider."""
    carried: dict[int, int] = {}
    for line in result.lines:
        provider = line.candidate.provider_id
        carried[provider] = carried.get(provider, 0) + line.bytes
    return carried


# A carries 100 Mbit/s (12.5 MB/s) at 10.00 EUR/GB, B 300 Mbit/s (37.5 MB/s) at 30.00 EUR/GB.
# For 4 GB: the fastest plan (all paths full) takes 4e9 / 50e6 = 80 s and costs 1 GB on A plus
# 3 GB on B = 100.00 EUR; the cheapest (all on A) takes 320 s and costs 40.00 EUR.
def alpha(**changes) -> Candidate:
    return offer(1, **({"bandwidth": 100, "price": 1000, "name": "Alpha"} | changes))


def beta(**changes) -> Candidate:
    return offer(2, **({"bandwidth": 300, "price": 3000, "name": "Beta"} | changes))


# --- brute force ---------------------------------------------------------------------------------


def eligible_by_hand(profile: PlanningProfile, candidates: list[Candidate]) -> list[Candidate]:
    kept = []
    for c in candidates:
        if c.valid_until <= NOW or c.provider_id in profile.blocked_providers:
            continue
        if any(n in profile.blocked_networks for n in c.network_ids):
            continue
        if profile.min_rating is not None and (c.rating is None or c.rating < profile.min_rating):
            continue
        kept.append(c)
    return kept


def brute_force(request: PlanRequest, profile: PlanningProfile, candidates: list[Candidate]):
    """The LP of the planner's docstring solved without linprog: every basic solution (n of the
    inequalities active, with Σ f = 1) is solved with numpy, the feasible ones are the vertices,
    and the best vertex is the optimum (the feasible set is a pointed polyhedron and the
    objective is bounded below on it). Variables are (f_1..f_n, T in seconds), a scaling of
    its own. Returns (primary optimum, secondary optimum or None) or None when infeasible."""
    eligible = eligible_by_hand(profile, candidates)
    if not eligible:
        return None
    n = len(eligible)
    volume = request.volume_bytes
    rate = np.array([c.bandwidth_mbps * 125_000 for c in eligible])
    fastest = volume / rate.sum()
    alone = volume * np.array([c.price_per_gb_minor for c in eligible], dtype=float) / GB
    positive = alone[alone > 0]
    cost_ref = positive.min() if positive.size else 1.0
    provider_weight = {p.id: p.weight for p in profile.preferred_providers}
    network_weight = {p.id: p.weight for p in profile.preferred_networks}
    bonus = np.zeros(n)
    for j, c in enumerate(eligible):
        bonus[j] += provider_weight.get(c.provider_id, 0.0)
        bonus[j] += max((network_weight.get(k, 0.0) for k in c.network_ids), default=0.0)
        if profile.prefer_highest_rated and c.rating is not None:
            bonus[j] += 0.05 * c.rating

    rows, rhs = [], []
    for j in range(n):
        row = np.zeros(n + 1)
        row[j] = -1.0
        rows.append(row), rhs.append(0.0)  # f_j >= 0
        row = np.zeros(n + 1)
        row[j], row[n] = volume / rate[j], -1.0
        rows.append(row), rhs.append(0.0)  # f_j V / r_j <= T
    row = np.zeros(n + 1)
    row[n] = -1.0
    rows.append(row), rhs.append(0.0)  # T >= 0
    if request.deadline_seconds is not None:
        row = np.zeros(n + 1)
        row[n] = 1.0
        rows.append(row), rhs.append(request.deadline_seconds)
    if request.price_limit_minor is not None:
        rows.append(np.append(alone, 0.0)), rhs.append(float(request.price_limit_minor))
    a, b = np.array(rows), np.array(rhs)
    scale = np.maximum(np.abs(a).max(axis=1), np.abs(b))
    scale[scale == 0] = 1.0  # a free plan's price row: 0 <= limit
    a, b = a / scale[:, None], b / scale
    equality = np.append(np.ones(n), 0.0)

    w = profile.cost_weight
    time_term = np.append(np.zeros(n), 1.0 / fastest)
    cost_term = np.append(alone / cost_ref, 0.0)
    discount = np.append(bonus, 0.0)
    primary = (1 - w) * time_term + w * cost_term - discount
    secondary = cost_term if w == 0 else time_term if w == 1 else None

    vertices = []
    for active in itertools.combinations(range(len(b)), n):
        system = np.vstack([equality, a[list(active)]])
        if abs(np.linalg.det(system)) < 1e-12:
            continue
        x = np.linalg.solve(system, np.append(1.0, b[list(active)]))
        if np.all(a @ x <= b + 1e-9):
            vertices.append(x)
    if not vertices:
        return None
    values = [float(primary @ x) for x in vertices]
    best = min(values)
    if secondary is None:
        return best, None
    ties = [
        x for x, v in zip(vertices, values, strict=True) if v <= best + 1e-9 * max(1, abs(best))
    ]
    return best, min(float(secondary @ x) for x in ties)


def random_instance(seed: int):
    rng = random.Random(seed)
    n = rng.randint(2, 4)
    candidates = []
    for j in range(n):
        price = 0 if rng.random() < 0.1 else rng.randint(1, 5000)
        candidates.append(
            offer(
                rng.randint(1, 3),
                path_id=j + 1,
                message_id=j + 1,
                bandwidth=round(rng.uniform(1, 1000), 1),
                price=price,
                rating=None if rng.random() < 0.25 else round(rng.uniform(0, 5), 2),
                networks=tuple(rng.sample(range(1, 6), rng.randint(1, 2))),
            )
        )
    networks = list(range(1, 6))
    rng.shuffle(networks)
    preferred_networks = [
        Preference(id=k, weight=round(rng.uniform(0.05, 1), 3))
        for k in networks[: rng.randint(0, 2)]
    ]
    blocked_networks = networks[4:] if rng.random() < 0.2 else []
    profile = PlanningProfile(
        preferred_providers=[
            Preference(id=p, weight=round(rng.uniform(0.05, 1), 3))
            for p in rng.sample([1, 2, 3], rng.randint(0, 2))
        ],
        preferred_networks=preferred_networks,
        blocked_networks=blocked_networks,
        min_rating=2.0 if rng.random() < 0.15 else None,
        prefer_highest_rated=rng.random() < 0.5,
        cost_weight=rng.choice([0.0, 1.0, round(rng.uniform(0.01, 0.99), 3)]),
    )
    volume = rng.randint(GB, 1000 * GB)
    fastest = volume / sum(c.bandwidth_mbps * 125_000 for c in candidates)
    cheapest = volume * min(c.price_per_gb_minor for c in candidates) / GB
    request = PlanRequest(
        volume_bytes=volume,
        currency="EUR",
        deadline_seconds=fastest * rng.uniform(0.8, 4) if rng.random() < 0.5 else None,
        price_limit_minor=int(cheapest * rng.uniform(0.9, 3)) if rng.random() < 0.5 else None,
    )
    return request, profile, candidates


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


@pytest.mark.parametrize("seed", range(300))
def test_optimum_matches_brute_force_on_small_instances(seed):
    request, profile, candidates = random_instance(seed)
    result = optimal_plan(request=request, profile=profile, candidates=candidates, now=NOW)
    expected = brute_force(request, profile, candidates)
    if expected is None:
        assert not result.feasible
        assert result.failures
        return
    assert result.feasible, result.reasons
    best, tie_break = expected
    assert close(result.objective, best)

    # the plan's own shares, checked against the formulation independently of the planner
    eligible = eligible_by_hand(profile, candidates)
    fraction = {
        (line.candidate.message_id, line.candidate.path_id): line.fraction for line in result.lines
    }
    f = np.array([fraction.get((c.message_id, c.path_id), 0.0) for c in eligible])
    rate = np.array([c.bandwidth_mbps * 125_000 for c in eligible])
    alone = request.volume_bytes * np.array([c.price_per_gb_minor for c in eligible]) / GB
    makespan = float(np.max(f * request.volume_bytes / rate))
    fastest = request.volume_bytes / rate.sum()
    cost = float(f @ alone)
    assert math.isclose(f.sum(), 1.0, rel_tol=1e-9)
    if request.deadline_seconds is not None:
        assert makespan <= request.deadline_seconds * (1 + 1e-6)
    if request.price_limit_minor is not None:
        assert cost <= request.price_limit_minor + 1e-6 * max(1, request.price_limit_minor)
    positive = alone[alone > 0]
    cost_ref = positive.min() if positive.size else 1.0
    if tie_break is not None:
        other = cost / cost_ref if profile.cost_weight == 0 else makespan / fastest
        assert close(other, tie_break)


# --- hand-checked rules --------------------------------------------------------------------------


def test_default_balance_is_fastest_first_filling_every_path():
    result = plan([alpha(), beta()])
    assert result.feasible
    assert shares(result) == {1: 1 * GB, 2: 3 * GB}
    assert result.makespan_seconds == pytest.approx(80.0)
    assert result.total_cost_minor == 10_000
    assert all(line.full_bandwidth for line in result.lines)
    assert result.binding == ("bandwidth",)
    assert result.reasons[0].startswith("Balance: fastest first, then cheapest (the default)")
    same = baseline([alpha(), beta()])
    assert shares(same) == shares(result)


def test_cheapest_first_breaks_a_tie_in_cost_by_time():
    # equal prices: every split costs the same, so time decides: both paths full
    result = plan([alpha(), beta(price=1000)], cost_weight=1)
    assert shares(result) == {1: 1 * GB, 2: 3 * GB}
    assert result.total_cost_minor == 4000
    assert result.makespan_seconds == pytest.approx(80.0)


def test_fastest_first_breaks_a_tie_in_time_by_cost():
    # Two equal paths; A's bonus is 2 (provider and network, weight 1 each), exactly what
    # moving data onto it costs in τ (2 per unit of volume), so every split from 50/50 to all
    # on A has the same first-stage objective: cost decides.
    equal = [
        offer(1, bandwidth=100, price=1000, networks=(5,)),
        offer(2, bandwidth=100, price=3000, networks=(6,)),
    ]
    preferences = {
        "preferred_providers": [Preference(id=1, weight=1)],
        "preferred_networks": [Preference(id=5, weight=1)],
    }
    assert shares(plan(equal, **preferences)) == {1: 4 * GB}
    dearer_a = [
        offer(1, bandwidth=100, price=3000, networks=(5,)),
        offer(2, bandwidth=100, price=1000, networks=(6,)),
    ]
    assert shares(plan(dearer_a, **preferences)) == {1: 2 * GB, 2: 2 * GB}


def test_fastest_first_keeps_the_fastest_plan_despite_a_smaller_preference():
    # the documented consequence of time first: shifting data onto a full path lengthens τ at
    # Σ r / r_j = 2 per unit here, more than a weight of 1 gives back
    result = plan([alpha(), beta()], preferred_providers=[Preference(id=1, weight=1)])
    assert shares(result) == {1: 1 * GB, 2: 3 * GB}


def test_cheapest_first_puts_everything_on_the_cheapest_path():
    result = plan([alpha(), beta()], cost_weight=1)
    assert shares(result) == {1: 4 * GB}
    assert result.makespan_seconds == pytest.approx(320.0)
    assert result.total_cost_minor == 4000
    assert any(
        "Beta / path 200 (message 20) is not used" in reason and "cheapest first" in reason
        for reason in result.reasons
    )


def test_balance_moves_from_time_to_cost_as_the_cost_weight_grows():
    # objective (1 - w) τ + w C / 40 EUR: the fastest plan has τ = 1, C = 2.5 times the cheapest;
    # all on A has τ = 4, C = the cheapest. Equal at w = 2/3: below it the fastest plan wins.
    assert shares(plan([alpha(), beta()], cost_weight=0.5)) == {1: 1 * GB, 2: 3 * GB}
    assert plan([alpha(), beta()], cost_weight=0.5).objective == pytest.approx(0.5 + 1.25)
    assert shares(plan([alpha(), beta()], cost_weight=0.7)) == {1: 4 * GB}
    makespans, costs = [], []
    for weight in (0, 0.2, 0.4, 0.6, 0.8, 1):
        result = plan([alpha(), beta(), offer(3, bandwidth=200, price=2000)], cost_weight=weight)
        makespans.append(result.makespan_seconds)
        costs.append(result.total_cost_minor)
    assert makespans == sorted(makespans)
    assert costs == sorted(costs, reverse=True)
    assert makespans[0] < makespans[-1] and costs[0] > costs[-1]


def test_deadline_binds_under_cheapest_first():
    # within 160 s A moves at most 2 GB; the rest goes to B: 20 + 60 = 80.00 EUR
    result = plan([alpha(), beta()], cost_weight=1, deadline=160)
    assert shares(result) == {1: 2 * GB, 2: 2 * GB}
    assert result.makespan_seconds == pytest.approx(160.0)
    assert result.total_cost_minor == 8000
    assert "deadline" in result.binding
    assert any(reason.startswith("The deadline (160 s) binds") for reason in result.reasons)


def test_price_limit_binds_under_fastest_first():
    # 10 f_A + 30 f_B per GB, 4 GB, at most 60.00 EUR: f_B <= 1/4, so T = 3 GB / 12.5 MB/s
    result = plan([alpha(), beta()], limit=6000)
    assert shares(result) == {1: 3 * GB, 2: 1 * GB}
    assert result.makespan_seconds == pytest.approx(240.0)
    assert result.total_cost_minor == 6000
    assert "price_limit" in result.binding
    assert any(reason.startswith("The price limit (60.00 EUR) binds") for reason in result.reasons)
    line_b = next(line for line in result.lines if line.candidate.provider_id == 2)
    assert not line_b.full_bandwidth
    assert "It uses 11.1 % of its bandwidth" in line_b.reason


def test_blocked_provider_is_excluded_and_said():
    result = plan([alpha(), beta()], blocked_providers={2})
    assert shares(result) == {1: 4 * GB}
    (exclusion,) = result.exclusions
    assert exclusion.candidate.provider_id == 2
    assert exclusion.causes == ("blocked_provider",)
    assert "Beta / path 200 (message 20) is excluded: the profile blocks provider Beta." in (
        result.reasons
    )


def test_blocked_network_is_excluded_and_said():
    crossing = beta(networks=(7, 8), network_names=("Metro", "Backbone"))
    result = plan([alpha(networks=(7,)), crossing], blocked_networks={8})
    assert shares(result) == {1: 4 * GB}
    assert result.exclusions[0].causes == ("blocked_network",)
    assert result.exclusions[0].reason.endswith(
        "its path crosses Backbone, blocked by the profile."
    )


def test_preferred_provider_wins_when_its_weight_outweighs_its_price():
    # cheapest first: B is 10 % dearer than A, so a weight above 0.1 moves everything to it
    dear_b = beta(price=1100)
    preferred = plan(
        [alpha(), dear_b], cost_weight=1, preferred_providers=[Preference(id=2, weight=0.2)]
    )
    assert shares(preferred) == {2: 4 * GB}
    assert preferred.lines[0].bonus == pytest.approx(0.2)
    assert "provider Beta is preferred (no. 1, weight 0.2)" in preferred.lines[0].reason
    weak = plan(
        [alpha(), dear_b], cost_weight=1, preferred_providers=[Preference(id=2, weight=0.05)]
    )
    assert shares(weak) == {1: 4 * GB}


def test_preferred_networks_count_their_largest_weight():
    dear_b = beta(price=1100, networks=(8, 9))
    networks = [Preference(id=8, weight=0.06), Preference(id=9, weight=0.08)]
    result = plan([alpha(networks=(7,)), dear_b], cost_weight=1, preferred_networks=networks)
    # 0.08 < 0.1: not enough (their sum, 0.14, would have been)
    assert shares(result) == {1: 4 * GB}
    networks.append(Preference(id=10, weight=0.5))
    result = plan(
        [alpha(networks=(7,)), beta(price=1100, networks=(8, 9, 10))],
        cost_weight=1,
        preferred_networks=networks,
    )
    assert shares(result) == {2: 4 * GB}
    assert result.lines[0].bonus == pytest.approx(0.5)
    assert "its path crosses preferred network 10 (no. 3, weight 0.5)" in result.lines[0].reason


def test_preferences_never_break_the_deadline_or_the_bandwidth():
    # A alone would take 320 s; preferred as much as can be, it still carries only what it
    # moves in the 160 s deadline
    result = plan(
        [alpha(), beta()],
        cost_weight=1,
        deadline=160,
        preferred_providers=[Preference(id=1, weight=1)],
    )
    assert shares(result)[1] == 2 * GB
    assert result.makespan_seconds <= 160 + 1e-6


def test_preferences_never_break_the_price_limit():
    result = plan(
        [alpha(), beta()],
        cost_weight=0.5,
        limit=6000,
        preferred_providers=[Preference(id=2, weight=1)],
    )
    assert result.total_cost_minor <= 6000


def test_minimum_rating_excludes_lower_rated_and_unrated_providers():
    unrated = offer(3, bandwidth=1000, price=1, rating=None, name="Gamma")
    result = plan([alpha(rating=3.0), beta(rating=4.5), unrated], min_rating=4.0)
    assert shares(result) == {2: 4 * GB}
    causes = {e.candidate.provider_id: e.causes for e in result.exclusions}
    assert causes == {1: ("below_min_rating",), 3: ("unrated",)}
    assert any(
        "provider Alpha is rated 3.00, below the profile's minimum of 4.00" in r
        for r in result.reasons
    )
    assert any(
        "provider Gamma is not rated yet and the profile requires at least 4.00" in r
        for r in result.reasons
    )


def test_prefer_highest_rated_favours_the_better_rated_path():
    # bonuses 0.05 per star: A (2 stars) 0.10, B (5 stars) 0.25; B is 4 % dearer
    candidates = [alpha(rating=2.0), beta(price=1040, rating=5.0)]
    assert shares(plan(candidates, cost_weight=1)) == {1: 4 * GB}
    result = plan(candidates, cost_weight=1, prefer_highest_rated=True)
    assert shares(result) == {2: 4 * GB}
    assert result.lines[0].bonus == pytest.approx(0.25)
    assert "rated 5.00 (prefer highest-rated: 0.25)" in result.lines[0].reason


def test_expired_message_is_ignored():
    cheap_but_expired = offer(3, bandwidth=1000, price=1, valid_until=NOW, name="Gamma")
    result = plan([alpha(), beta(), cheap_but_expired], cost_weight=1)
    assert shares(result) == {1: 4 * GB}
    (exclusion,) = result.exclusions
    assert exclusion.causes == ("expired",)
    assert exclusion.reason.startswith(
        "Gamma / path 300 (message 30) is ignored: its message expired"
    )


def test_assemblage_is_at_the_provider_with_the_largest_share_over_its_paths():
    two_paths = [
        offer(1, bandwidth=60, price=1000, path_id=11, message_id=1),
        offer(1, bandwidth=60, price=1000, path_id=12, message_id=1),
    ]
    result = plan([*two_paths, offer(2, bandwidth=100, price=1000)])
    # the largest segment is provider 2's, but provider 1 carries more in all
    assert result.segments[0].provider_id == 2
    assert result.assemblage_provider_id == 1
    assert any("assembled at Provider 1: it carries the largest share" in r for r in result.reasons)


def test_every_candidate_is_explained():
    candidates = [
        alpha(),
        beta(),
        offer(3, bandwidth=50, price=9000),
        offer(4, bandwidth=50, price=100, rating=1.0),
    ]
    result = plan(candidates, cost_weight=1, deadline=200, min_rating=2.0)
    text = "\n".join(result.reasons)
    for candidate in candidates:
        assert candidate.label in text
    assert any("is not used" in reason for reason in result.reasons)
    for line in result.lines:
        assert line.reason in result.reasons


# --- infeasible requests -------------------------------------------------------------------------


def test_deadline_shorter_than_the_fastest_plan_is_explained():
    result = plan([alpha(), beta()], deadline=60)
    assert not result.feasible
    assert result.failures == ("deadline_too_short",)
    assert result.lines == () and result.segments == ()
    assert (
        "The deadline is too short: the fastest possible plan, all 2 eligible paths at full "
        "bandwidth (400 Mbit/s together), takes 80.0 s; the deadline is 60.0 s."
    ) in result.reasons


def test_price_limit_below_the_cheapest_plan_is_explained():
    result = plan([alpha(), beta()], limit=3000)
    assert result.failures == ("price_limit_too_low",)
    assert (
        "The price limit is too low: the cheapest possible plan, everything on Alpha / path 100 "
        "(message 10) at 10.00 EUR/GB, costs 40.00 EUR; the limit is 30.00 EUR."
    ) in result.reasons


def test_deadline_and_price_limit_each_feasible_but_not_together_is_explained():
    # within 100 s A moves at most 1.25 GB, so at least 2.75 GB go to B: 12.50 + 82.50 EUR;
    # within 50.00 EUR B carries at most 0.5 GB, so A carries 3.5 GB: 280 s
    result = plan([alpha(), beta()], deadline=100, limit=5000)
    assert result.failures == ("deadline_and_price_limit_incompatible",)
    assert (
        "The deadline and the price limit cannot both be met, though each can alone: finishing "
        "within 100 s costs at least 95.00 EUR (the limit is 50.00 EUR), and staying within "
        "50.00 EUR takes at least 280 s (the deadline is 100 s)."
    ) in result.reasons


def test_deadline_and_price_limit_both_too_tight_each_explained():
    result = plan([alpha(), beta()], deadline=60, limit=3000)
    assert result.failures == ("deadline_too_short", "price_limit_too_low")
    assert any(r.startswith("The deadline is too short") for r in result.reasons)
    assert any(r.startswith("The price limit is too low") for r in result.reasons)


def test_no_eligible_candidate_says_why_each_was_excluded():
    result = plan(
        [alpha(networks=(5,)), beta(rating=None)],
        blocked_networks={5},
        min_rating=1.0,
    )
    assert result.failures == ("no_eligible_candidates",)
    assert "No candidate is eligible, so there is nothing to plan." in result.reasons
    assert (
        "Alpha / path 100 (message 10) is excluded: its path crosses network 5, blocked by the "
        "profile." in result.reasons
    )
    assert any(
        r.startswith("Beta / path 200 (message 20) is excluded: provider Beta is not rated")
        for r in result.reasons
    )


def test_no_answer_at_all_is_explained():
    result = plan([])
    assert result.failures == ("no_candidates",)
    assert result.reasons == ("No provider answered with an available path.",)


# --- whole bytes and minor units -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(60))
def test_segments_sum_to_the_volume_and_line_costs_to_the_total(seed):
    rng = random.Random(1000 + seed)
    request, profile, candidates = random_instance(seed)
    volume = rng.choice([1, 7, 1001, rng.randint(1, 10**6), request.volume_bytes])
    request = PlanRequest(volume_bytes=volume, currency="EUR")
    for compute in (optimal_plan, proportional_plan):
        result = compute(request=request, profile=profile, candidates=candidates, now=NOW)
        if not result.lines:
            continue
        assert sum(segment.bytes for segment in result.segments) == volume
        assert sum(line.bytes for line in result.lines) == volume
        assert sum(line.cost_minor for line in result.lines) == result.total_cost_minor
        exact = [
            Fraction(line.candidate.price_per_gb_minor * line.bytes, GB) for line in result.lines
        ]
        assert result.total_cost_minor == math.floor(sum(exact) + Fraction(1, 2))
        for line, value in zip(result.lines, exact, strict=True):
            assert math.floor(value) <= line.cost_minor <= math.ceil(value)
        assert result.makespan_seconds == max(line.seconds for line in result.lines)


def test_rounding_shares_bytes_and_minor_units_by_largest_remainder():
    # three equal paths, 10 GB at 1 minor unit per GB: 10/3 GB and 10/3 minor units each
    equal = [offer(p, bandwidth=100, price=1) for p in (1, 2, 3)]
    result = plan(equal, volume=10 * GB)
    assert [line.bytes for line in result.lines] == [3_333_333_334, 3_333_333_333, 3_333_333_333]
    assert [line.cost_minor for line in result.lines] == [4, 3, 3]
    assert result.total_cost_minor == 10


def test_proportional_baseline_splits_by_bandwidth_and_flags_broken_limits():
    result = baseline(
        [alpha(), beta(), offer(3, bandwidth=100, price=1, rating=0.5)], min_rating=1.0, limit=5000
    )
    assert shares(result) == {1: 1 * GB, 2: 3 * GB}
    assert not result.feasible
    assert result.failures == ("price_limit_too_low",)
    assert "It exceeds the price limit: 100.00 EUR against 50.00 EUR." in result.reasons


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PlanRequest(volume_bytes=-1, currency="EUR"), "volume_bytes must be positive"),
        (lambda: PlanRequest(volume_bytes=0, currency="EUR"), "volume_bytes must be positive"),
        (lambda: PlanRequest(volume_bytes=1.5, currency="EUR"), "must be an integer"),
        (lambda: PlanRequest(volume_bytes=1, currency="XXX"), "Unsupported currency"),
        (lambda: PlanRequest(volume_bytes=1, currency="EUR", deadline_seconds=0), "deadline"),
        (lambda: PlanRequest(volume_bytes=1, currency="EUR", price_limit_minor=-5), "negative"),
        (lambda: offer(1, bandwidth=0, price=1), "must be positive, not 0.0 Mbit/s"),
        (lambda: offer(1, bandwidth=-3, price=1), "must be positive"),
        (lambda: offer(1, bandwidth=float("nan"), price=1), "must be finite"),
        (lambda: offer(1, bandwidth=10, price=-1), "must not be negative"),
        (lambda: offer(1, bandwidth=10, price=1, rating=6), "between 0 and 5"),
        (
            lambda: offer(1, bandwidth=10, price=1, valid_until=datetime(2030, 1, 1)),
            "timezone-aware",
        ),
        (lambda: Preference(id=1, weight=0), "in (0, 1]"),
        (lambda: Preference(id=1, weight=1.5), "in (0, 1]"),
        (lambda: PlanningProfile(cost_weight=1.2), "cost_weight must be between 0 and 1"),
        (lambda: PlanningProfile(min_rating=-1), "min_rating"),
        (
            lambda: PlanningProfile(
                blocked_providers={1}, preferred_providers=[Preference(id=1, weight=0.5)]
            ),
            "both preferred and blocked",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        make()


def test_two_live_messages_for_one_path_are_refused():
    first = offer(1, bandwidth=10, price=1, message_id=1)
    second = offer(1, bandwidth=10, price=1, message_id=2)
    with pytest.raises(ValueError, match="pass only the latest"):
        plan([first, second])
    expired = offer(1, bandwidth=10, price=1, message_id=3, valid_until=NOW)
    assert plan([first, expired]).feasible


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        optimal_plan(
            request=PlanRequest(volume_bytes=1, currency="EUR"),
            profile=PlanningProfile(),
            candidates=[alpha()],
            now=datetime(2030, 1, 1),
        )
