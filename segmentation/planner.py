"""The planner: which provider and path carries how much of a service request's data.

Providers answer a service request with availability messages; each message lists routing paths,
the bandwidth immediately available on each, a price per GB and a validity time. Every
(message, path) pair is a *candidate*. The planner decides the share of the volume that each
candidate carries as a linear program solved by HiGHS (``scipy.optimize.linprog`` with
``method="highs"``): no allocation is decided by hand. The module is pure (frozen dataclasses
and plain integer ids in, a `Plan` out, no database), so the Django side maps ids to rows and
the tests need no database.

Eligibility, before the LP
--------------------------
A candidate is left out, and the plan's `exclusions` and `reasons` say why, when its message has
expired (``valid_until <= now``), its provider is blocked by the profile, its path crosses a
blocked network, or the profile sets a minimum rating and the provider is rated below it or not
rated at all (an unrated provider has shown nothing yet, so it does not meet a minimum).
These are hard rules: no weight in the objective brings an excluded candidate back.

Units
-----
``V`` bytes to move. Candidate j moves ``r_j = 125,000 * Mbit/s`` bytes per second and charges
``p_j`` minor units per GB (10^9 bytes). Alone it would take ``t_j = V / r_j`` seconds and cost
``c_j = V * p_j / 10^9`` minor units.

The linear program
------------------
Variables: ``f_j ≥ 0``, the fraction of the volume on candidate j, and ``τ ≥ 0``, the makespan
relative to the fastest possible one, ``T_fast = V / Σ r_j`` (every eligible path at full
bandwidth); the makespan is ``T = τ * T_fast``. Constraints:

    Σ f_j = 1                           the whole volume is carried
    f_j * t_j / T_fast ≤ τ   (each j)   no path carries more than its bandwidth moves in T
    τ ≤ deadline / T_fast               when the request has a deadline
    Σ f_j * c_j ≤ price limit           when the request has a price limit

Objective, with ``w`` the profile's `cost_weight` in [0, 1]:

    minimize   (1 - w) * τ  +  w * Σ f_j * c_j / C_ref  -  Σ f_j * b_j

Both criteria are normalized to 1 at their best possible value: τ = 1 is the fastest possible
makespan and ``C_ref = min c_j`` is the cheapest possible cost (everything on the cheapest path).
So a weight means the same whatever the volume, the currency or the number of paths: at
w = 0.5, being 10 % slower than the fastest possible weighs as much as being 10 % dearer than the
cheapest possible. (When the cheapest path is free, cost is measured against the cheapest path
that is not; when every path is free the cost term is zero.)

``b_j`` is the candidate's *bonus*, the documented discount that the profile's preferences give:

- its provider is preferred with weight ω: + ω;
- its path crosses preferred networks: + the largest of their weights (the largest, not the sum:
  the preference is for routes through those networks, and a sum would favour long paths);
- prefer-highest-rated and its provider is rated: + 0.05 per star (0.25 at 5 stars; unrated
  providers get nothing).

When the candidates carry tie ranks (a negotiation's quotes, earliest first), each also gets a
discount of at most 10^-6 (`TIE_BONUS`), smaller for later ranks: far below any real difference,
it decides only between plans that are otherwise equal, for the earlier quote.

A bonus is the share of the objective the profile gives up to put all the data on that candidate:
with w = 1, a provider preferred with weight 0.2 wins over the cheapest path when its price is
less than 20 % above it. Bonuses only move the objective: they never relax a constraint, so a
preferred path never carries more than its bandwidth, nor does a plan miss the deadline or
exceed the price limit for it.

At the two ends the weight is a lexicographic order, solved in two stages. ``w = 0``, the
default, is *fastest first, then cheapest*: minimize ``τ - Σ f_j b_j``, then, among the plans
that reach that optimum exactly (on its optimal face, found from the first stage's reduced
costs and dual values), minimize the cost. ``w = 1`` is *cheapest first, then fastest*. Between
the ends the weighted sum is solved as it stands.

What the default means in practice: without a binding price limit, the fastest plan fills every
eligible path at its full bandwidth (it is the only plan with τ = 1), i.e. the split in proportion
to bandwidth. Preferences and ratings change it only when their bonus outweighs the time they
cost, and under fastest first that is rare: moving data onto one path that is already full
lengthens τ at the rate ``Σ r / r_j``. A profile that wants its preferences to count gives cost
some weight (w > 0), which creates the slack that bonuses then compete for.

Infeasibility
-------------
When the LP has no solution, the planner solves its relaxations with HiGHS to say which
constraint fails: the fastest possible plan (no deadline, no price limit), the cheapest possible
plan, the cheapest plan that meets the deadline and the fastest plan within the price limit.
The deadline fails by itself when no plan meets it even without a price limit, and the price
limit likewise; when each can be met alone but not both together, the plan says what meeting
the deadline costs at least and how long staying within the price limit takes at least.
`Plan.failures` carries stable codes for the API: ``no_candidates``,
``no_eligible_candidates``, ``deadline_too_short``, ``price_limit_too_low``,
``deadline_and_price_limit_incompatible``.

From shares to segments, times and money
----------------------------------------
Shares below one part in 10^9 of the volume are solver noise and are dropped. The shares become
whole bytes by largest remainder (floor each, then one more byte to the largest remainders, ties
to the earlier candidate), so the segment sizes sum exactly to the volume. Each used candidate
gets one segment, which is one per (provider, path): the planner refuses two live messages
offering the same path of a provider (a ValueError), as they would count its bandwidth twice.
A line's predicted time is its bytes over its bandwidth; the makespan is the longest line.
Whole bytes can move a line's time by less than one byte's transfer time from the LP's.

A line's exact cost is ``price * bytes / 10^9``, a fraction of a minor unit. The plan's total is
the exact sum rounded half up to a minor unit, and the lines share that total by largest
remainder, so each line is its exact cost rounded down or up and the lines sum exactly to the
total. Half up rather than up: a plan that spends exactly its price limit (up to the solver's
tolerance) stays within it.

The assemblage point is the provider carrying the largest share, summed over its paths: the
results of all other segments travel to it, so the fewest bytes cross between providers (ties:
the provider of the larger single segment, then the earlier candidate).

`proportional_plan` is the baseline the benchmark compares with: the same eligible candidates,
the volume split in proportion to bandwidth, times and money computed the same way.
"""

import bisect
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import numpy as np
from scipy import sparse
from scipy.optimize import OptimizeResult, linprog

from marketplace.money import CURRENCY_EXPONENTS, money_format

__all__ = [
    "BYTES_PER_GB",
    "BYTES_PER_SECOND_PER_MBPS",
    "FAILURE_DEADLINE",
    "FAILURE_INCOMPATIBLE",
    "FAILURE_NO_CANDIDATES",
    "FAILURE_NO_ELIGIBLE",
    "FAILURE_PRICE_LIMIT",
    "RATING_BONUS_PER_STAR",
    "Candidate",
    "Exclusion",
    "Plan",
    "PlanLine",
    "PlanRequest",
    "PlannedSegment",
    "PlanningProfile",
    "Preference",
    "optimal_plan",
    "proportional_plan",
]

BYTES_PER_GB = 10**9
BYTES_PER_SECOND_PER_MBPS = 125_000  # 10**6 bits per second, 8 bits a byte
RATING_MAX = 5.0
TIE_BONUS = 1e-6  # see `_bonuses`: breaks ties between equal prices for the earlier quote
RATING_BONUS_PER_STAR = 0.05
# Shares below this fraction of the volume are the solver's noise, not a decision.
NEGLIGIBLE_FRACTION = 1e-9
SHARE_UNITS = 2**60
# How close (relative) to a limit a value is for the limit to count as binding.
BINDING_TOLERANCE = 1e-6
# Tolerances tighter than HiGHS's defaults (1e-7): limits are met to within a millionth of a
# second or of a minor unit on realistic volumes, and ties are decided by the objective, not by
# tolerances. Dantzig's pricing: the optimal basis here has nearly every path's row tight, so
# the dual simplex makes about one pivot per path whatever the pricing, and the cheapest pricing
# is fastest (about a quarter less time on bench/planner.py's 5,000 paths than the default).
HIGHS_OPTIONS = {
    "primal_feasibility_tolerance": 1e-9,
    "dual_feasibility_tolerance": 1e-9,
    "simplex_dual_edge_weight_strategy": "dantzig",
}

FAILURE_NO_CANDIDATES = "no_candidates"
FAILURE_NO_ELIGIBLE = "no_eligible_candidates"
FAILURE_DEADLINE = "deadline_too_short"
FAILURE_PRICE_LIMIT = "price_limit_too_low"
FAILURE_INCOMPATIBLE = "deadline_and_price_limit_incompatible"


# --- inputs ------------------------------------------------------------------------------------


def _integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, not {value!r}.")
    return int(value)


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, not {value!r}.")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, not {value!r}.")
    return number


def _aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}.")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRequest:
    """What to plan: the volume, its currency, and the limits the request sets (None: none)."""

    volume_bytes: int
    currency: str
    deadline_seconds: float | None = None
    price_limit_minor: int | None = None

    def __post_init__(self) -> None:
        volume = _integer(self.volume_bytes, "volume_bytes")
        if volume <= 0:
            raise ValueError(f"volume_bytes must be positive, not {volume}.")
        if self.currency not in CURRENCY_EXPONENTS:
            known = ", ".join(sorted(CURRENCY_EXPONENTS))
            raise ValueError(f"Unsupported currency {self.currency!r}; use one of {known}.")
        if self.deadline_seconds is not None:
            deadline = _real(self.deadline_seconds, "deadline_seconds")
            if deadline <= 0:
                raise ValueError(f"deadline_seconds must be positive, not {deadline}.")
        if self.price_limit_minor is not None:
            limit = _integer(self.price_limit_minor, "price_limit_minor")
            if limit < 0:
                raise ValueError(f"price_limit_minor must not be negative, not {limit}.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Preference:
    """A preferred provider or network and its weight, in (0, 1]: the share of the objective the
    profile gives up to put all the data there (see the module docstring)."""

    id: int
    weight: float

    def __post_init__(self) -> None:
        _integer(self.id, "preference id")
        weight = _real(self.weight, "preference weight")
        if not 0 < weight <= 1:
            raise ValueError(f"A preference weight must be in (0, 1], not {weight}.")


def _preferences(items: Iterable[Preference], kind: str) -> tuple[Preference, ...]:
    preferences = tuple(items)
    seen: set[int] = set()
    for preference in preferences:
        if not isinstance(preference, Preference):
            raise ValueError(f"Preferred {kind}s must be Preference objects, not {preference!r}.")
        if preference.id in seen:
            raise ValueError(f"{kind.capitalize()} {preference.id} is preferred twice.")
        seen.add(preference.id)
    return preferences


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanningProfile:
    """The part of a segmentation profile that the planner honours.

    Preferences are ordered (the order is the recipient's and is kept in explanations) and
    weighted (the weight is what counts in the objective). `cost_weight` is the time-vs-cost
    balance: 0 (the default) is fastest first, then cheapest; 1 is cheapest first, then
    fastest; between, the weight on cost in a weighted sum."""

    preferred_providers: tuple[Preference, ...] = ()
    preferred_networks: tuple[Preference, ...] = ()
    blocked_providers: frozenset[int] = frozenset()
    blocked_networks: frozenset[int] = frozenset()
    min_rating: float | None = None
    prefer_highest_rated: bool = False
    cost_weight: float = 0.0

    def __post_init__(self) -> None:
        # frozen: normalize the containers the caller gave (lists, sets) in place, once
        setattr_ = object.__setattr__
        setattr_(self, "preferred_providers", _preferences(self.preferred_providers, "provider"))
        setattr_(self, "preferred_networks", _preferences(self.preferred_networks, "network"))
        blocked_providers = frozenset(
            _integer(i, "blocked provider id") for i in self.blocked_providers
        )
        blocked_networks = frozenset(
            _integer(i, "blocked network id") for i in self.blocked_networks
        )
        setattr_(self, "blocked_providers", blocked_providers)
        setattr_(self, "blocked_networks", blocked_networks)
        for preference in self.preferred_providers:
            if preference.id in blocked_providers:
                raise ValueError(f"Provider {preference.id} is both preferred and blocked.")
        for preference in self.preferred_networks:
            if preference.id in blocked_networks:
                raise ValueError(f"Network {preference.id} is both preferred and blocked.")
        if self.min_rating is not None:
            rating = _real(self.min_rating, "min_rating")
            if not 0 <= rating <= RATING_MAX:
                raise ValueError(f"min_rating must be between 0 and 5, not {rating}.")
        weight = _real(self.cost_weight, "cost_weight")
        if not 0 <= weight <= 1:
            raise ValueError(f"cost_weight must be between 0 and 1, not {weight}.")
        setattr_(self, "cost_weight", weight)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One path of one availability message: what the provider offers on it, until when."""

    provider_id: int
    provider_name: str
    message_id: int
    path_id: int
    path_name: str
    network_ids: tuple[int, ...]
    bandwidth_mbps: float
    price_per_gb_minor: int
    rating: float | None
    valid_until: datetime
    network_names: tuple[str, ...] = ()
    # among candidates otherwise equal, the lower rank wins (the earlier quote of a
    # negotiation); 0 for all leaves ties to the solver
    tie_rank: int = 0

    def __post_init__(self) -> None:
        for name in ("provider_id", "message_id", "path_id"):
            _integer(getattr(self, name), name)
        object.__setattr__(
            self, "network_ids", tuple(_integer(i, "network id") for i in self.network_ids)
        )
        object.__setattr__(self, "network_names", tuple(self.network_names))
        if self.network_names and len(self.network_names) != len(self.network_ids):
            raise ValueError(
                f"Path {self.path_id} has {len(self.network_ids)} networks but "
                f"{len(self.network_names)} network names."
            )
        bandwidth = _real(self.bandwidth_mbps, "bandwidth_mbps")
        if bandwidth <= 0:
            raise ValueError(
                f"The bandwidth of path {self.path_id} (message {self.message_id}) must be "
                f"positive, not {bandwidth} Mbit/s."
            )
        price = _integer(self.price_per_gb_minor, "price_per_gb_minor")
        if price < 0:
            raise ValueError(
                f"The price of path {self.path_id} (message {self.message_id}) must not be "
                f"negative, not {price}."
            )
        if self.rating is not None:
            rating = _real(self.rating, "rating")
            if not 0 <= rating <= RATING_MAX:
                raise ValueError(f"A provider rating must be between 0 and 5, not {rating}.")
        _aware(self.valid_until, "valid_until")

    @property
    def label(self) -> str:
        return f"{self.provider_name} / {self.path_name} (message {self.message_id})"

    def network_name(self, network_id: int) -> str:
        if self.network_names:
            return self.network_names[self.network_ids.index(network_id)]
        return f"network {network_id}"


# --- outputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Exclusion:
    """A candidate left out before the LP. `causes` are codes: expired, blocked_provider,
    blocked_network, unrated, below_min_rating."""

    candidate: Candidate
    causes: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanLine:
    """A candidate that carries data. `fraction` is the LP's share of the volume, `bytes` that
    share in whole bytes; `seconds` and `cost_minor` follow from the bytes."""

    candidate: Candidate
    fraction: float
    bytes: int
    seconds: float
    cost_minor: int
    full_bandwidth: bool
    bonus: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedSegment:
    """A segment of the data for one provider and path, largest first."""

    index: int
    provider_id: int
    path_id: int
    message_id: int
    bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The planner's answer.

    `method` is "optimal" (the LP) or "proportional" (the baseline). When `feasible` is false,
    `failures` and `reasons` say which constraint fails; an infeasible optimal plan has no lines,
    while the baseline keeps its lines so that it can be compared. `binding` names the limits
    the plan meets exactly ("deadline", "price_limit", "bandwidth"). `fastest_seconds` and
    `cheapest_cost_minor` are the best possible over the eligible candidates, each ignoring the
    other and the limits (the cost exact, in minor units). `objective` is the LP's first-stage
    objective at the plan (see the module docstring)."""

    method: str
    feasible: bool
    volume_bytes: int
    currency: str
    cost_weight: float
    lines: tuple[PlanLine, ...] = ()
    segments: tuple[PlannedSegment, ...] = ()
    makespan_seconds: float | None = None
    total_cost_minor: int | None = None
    assemblage_provider_id: int | None = None
    binding: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    exclusions: tuple[Exclusion, ...] = ()
    fastest_seconds: float | None = None
    cheapest_cost_minor: float | None = None
    objective: float | None = None
    reasons: tuple[str, ...] = ()


# --- formatting for the explanations -----------------------------------------------------------


def _seconds(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} s"
    if value >= 1:
        return f"{value:.1f} s"
    return f"{value:.3g} s"


def _size(value: float) -> str:
    if value < 1000:
        return f"{value:,.0f} bytes"
    for unit, scale in (("kB", 10**3), ("MB", 10**6), ("GB", 10**9)):
        if round(value / scale, 2) < 1000:
            return f"{value / scale:,.2f} {unit}"
    return f"{value / 10**12:,.2f} TB"


def _mbps(value: float) -> str:
    return f"{value:,.6g} Mbit/s"


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _weight(value: float) -> str:
    return f"{value:.3g}"


def _money_at_least(amount: float, currency: str) -> str:
    # an LP value, exact only up to the solver's tolerance: round up, forgiving that tolerance
    return money_format(math.ceil(amount - 1e-6 * max(1.0, abs(amount))), currency)


def _price(candidate: Candidate, currency: str) -> str:
    return f"{money_format(candidate.price_per_gb_minor, currency)}/GB"


# --- eligibility -------------------------------------------------------------------------------


def _candidates_checked(candidates: Iterable[Candidate], now: datetime) -> tuple[Candidate, ...]:
    checked = tuple(candidates)
    offers: set[tuple[int, int]] = set()
    live_paths: set[tuple[int, int]] = set()
    for candidate in checked:
        if not isinstance(candidate, Candidate):
            raise ValueError(f"Candidates must be Candidate objects, not {candidate!r}.")
        offer = (candidate.message_id, candidate.path_id)
        if offer in offers:
            raise ValueError(
                f"Message {candidate.message_id} lists path {candidate.path_id} twice."
            )
        offers.add(offer)
        if candidate.valid_until > now:
            path = (candidate.provider_id, candidate.path_id)
            if path in live_paths:
                raise ValueError(
                    f"Two live messages of provider {candidate.provider_id} offer path "
                    f"{candidate.path_id}: pass only the latest, or its bandwidth counts twice."
                )
            live_paths.add(path)
    return checked


def _eligibility(
    profile: PlanningProfile, candidates: Sequence[Candidate], now: datetime
) -> tuple[list[Candidate], list[Exclusion]]:
    eligible: list[Candidate] = []
    exclusions: list[Exclusion] = []
    for candidate in candidates:
        causes: list[str] = []
        why: list[str] = []
        if candidate.valid_until <= now:
            causes.append("expired")
            why.append(
                f"its message expired at {candidate.valid_until.isoformat(timespec='seconds')}"
            )
        if candidate.provider_id in profile.blocked_providers:
            causes.append("blocked_provider")
            why.append(f"the profile blocks provider {candidate.provider_name}")
        blocked = [n for n in candidate.network_ids if n in profile.blocked_networks]
        if blocked:
            causes.append("blocked_network")
            names = ", ".join(candidate.network_name(n) for n in blocked)
            why.append(f"its path crosses {names}, blocked by the profile")
        if profile.min_rating is not None:
            if candidate.rating is None:
                causes.append("unrated")
                why.append(
                    f"provider {candidate.provider_name} is not rated yet and the profile "
                    f"requires at least {profile.min_rating:.2f}"
                )
            elif candidate.rating < profile.min_rating:
                causes.append("below_min_rating")
                why.append(
                    f"provider {candidate.provider_name} is rated {candidate.rating:.2f}, "
                    f"below the profile's minimum of {profile.min_rating:.2f}"
                )
        if causes:
            verb = "is ignored" if causes == ["expired"] else "is excluded"
            exclusions.append(
                Exclusion(
                    candidate=candidate,
                    causes=tuple(causes),
                    reason=f"{candidate.label} {verb}: {'; '.join(why)}.",
                )
            )
        else:
            eligible.append(candidate)
    return eligible, exclusions


def _bonuses(
    profile: PlanningProfile, eligible: Sequence[Candidate]
) -> tuple[np.ndarray, list[list[str]]]:
    """Each candidate's bonus (see the module docstring), and the words that explain it."""
    providers = {p.id: (rank, p.weight) for rank, p in enumerate(profile.preferred_providers, 1)}
    networks = {p.id: (rank, p.weight) for rank, p in enumerate(profile.preferred_networks, 1)}
    bonus = np.zeros(len(eligible))
    words: list[list[str]] = []
    for j, candidate in enumerate(eligible):
        said: list[str] = []
        if candidate.provider_id in providers:
            rank, weight = providers[candidate.provider_id]
            bonus[j] += weight
            said.append(
                f"provider {candidate.provider_name} is preferred (no. {rank}, weight "
                f"{_weight(weight)})"
            )
        crossed = [(networks[n][1], n) for n in candidate.network_ids if n in networks]
        if crossed:
            weight, network = max(crossed, key=lambda item: item[0])
            bonus[j] += weight
            said.append(
                f"its path crosses preferred {candidate.network_name(network)} (no. "
                f"{networks[network][0]}, weight {_weight(weight)})"
            )
        if profile.prefer_highest_rated and candidate.rating is not None:
            rating_bonus = RATING_BONUS_PER_STAR * candidate.rating
            bonus[j] += rating_bonus
            said.append(
                f"its provider is rated {candidate.rating:.2f} (prefer highest-rated: "
                f"{_weight(rating_bonus)})"
            )
        words.append(said)
    ranks = [candidate.tie_rank for candidate in eligible]
    if any(ranks):
        # the earlier quote wins a tie: a discount far below any real difference in time or
        # money (the objective's terms are 1 at their best), so it decides only among plans
        # that are otherwise equal
        last = max(ranks) + 1
        bonus += TIE_BONUS * (1 - np.array(ranks, dtype=float) / last)
    return bonus, words


# --- the linear program ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Face:
    """The optimal face of a solved LP: the inequality rows whose dual value is non-zero (they
    must stay tight) and the variables whose reduced cost is non-zero at their lower or upper
    bound (they must stay there)."""

    tight_rows: np.ndarray
    at_lower: np.ndarray
    at_upper: np.ndarray

    @classmethod
    def of(cls, result: OptimizeResult, objective: np.ndarray) -> "_Face":
        # zero up to the solver's dual tolerance, relative to the objective's coefficients
        zero = 1e-9 * max(1.0, float(np.abs(objective).max()))
        return cls(
            tight_rows=np.abs(result.ineqlin.marginals) > zero,
            at_lower=result.lower.marginals > zero,
            at_upper=result.upper.marginals < -zero,
        )


class _Problem:
    """The eligible candidates as arrays, and the linear program over them (variables: the
    fractions f_0..f_{n-1}, then τ)."""

    def __init__(
        self, request: PlanRequest, profile: PlanningProfile, eligible: Sequence[Candidate]
    ) -> None:
        self.request = request
        self.profile = profile
        self.eligible = list(eligible)
        n = self.n = len(self.eligible)
        volume = request.volume_bytes
        self.rate = np.array([c.bandwidth_mbps for c in self.eligible]) * BYTES_PER_SECOND_PER_MBPS
        self.prices = [c.price_per_gb_minor for c in self.eligible]
        self.fastest_seconds = volume / float(self.rate.sum())
        # t_j / T_fast = Σ r / r_j: how many fastest makespans the candidate would need alone
        self.load = float(self.rate.sum()) / self.rate
        self.cost_alone = volume * np.array(self.prices, dtype=float) / BYTES_PER_GB
        self.cheapest_exact = Fraction(volume * min(self.prices), BYTES_PER_GB)
        positive = self.cost_alone[self.cost_alone > 0]
        self.cost_ref = float(positive.min()) if positive.size else 1.0
        self.bonus, self.bonus_words = _bonuses(profile, self.eligible)
        rows = np.arange(n)
        self.bandwidth_rows = sparse.csr_array(
            (
                np.concatenate([self.load, -np.ones(n)]),
                (np.concatenate([rows, rows]), np.concatenate([rows, np.full(n, n)])),
            ),
            shape=(n, n + 1),
        )
        self.total_row = sparse.csr_array(np.concatenate([np.ones(n), [0.0]])[None, :])
        self.price_sorted = sorted(self.prices)

    # objective vectors over (f, τ)
    def time_objective(self) -> np.ndarray:
        vector = np.zeros(self.n + 1)
        vector[self.n] = 1.0
        return vector

    def cost_objective(self, scale: float = 1.0) -> np.ndarray:
        return np.concatenate([self.cost_alone / scale, [0.0]])

    def objectives(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The first-stage objective and, at the ends of the balance, the tie-breaking one."""
        w = self.profile.cost_weight
        discount = np.concatenate([self.bonus, [0.0]])
        normalized_cost = self.cost_objective(self.cost_ref)
        if w == 0:
            return self.time_objective() - discount, normalized_cost
        if w == 1:
            return normalized_cost - discount, self.time_objective()
        return (1 - w) * self.time_objective() + w * normalized_cost - discount, None

    def solve(
        self,
        objective: np.ndarray,
        *,
        deadline: bool = True,
        price_limit: bool = True,
        face: "_Face | None" = None,
    ) -> OptimizeResult | None:
        """HiGHS's optimal solution (``x`` is (f, τ)), or None when infeasible. `deadline` and
        `price_limit` say whether the request's limits apply (the relaxations leave them out);
        `face` restricts the LP to the optimal face of an earlier stage."""
        n = self.n
        rows = [self.bandwidth_rows]
        rhs = [np.zeros(n)]
        limit = self.request.price_limit_minor
        if price_limit and limit is not None:
            # scaled so the right-hand side is 1 (or the row is in units of its largest
            # coefficient when the limit is zero), as HiGHS's tolerances are absolute
            scale = float(limit) if limit > 0 else max(float(self.cost_alone.max()), 1.0)
            rows.append(sparse.csr_array(self.cost_objective(scale)[None, :]))
            rhs.append(np.array([limit / scale]))
        a_ub = sparse.vstack(rows, format="csr")
        b_ub = np.concatenate(rhs)
        a_eq = self.total_row
        b_eq = np.array([1.0])
        bounds = np.zeros((n + 1, 2))
        bounds[:, 1] = np.inf
        if deadline and self.request.deadline_seconds is not None:
            bounds[n, 1] = self.request.deadline_seconds / self.fastest_seconds
        if face is not None:
            tight = np.flatnonzero(face.tight_rows)
            loose = np.flatnonzero(~face.tight_rows)
            a_eq = sparse.vstack([a_eq, a_ub[tight]], format="csr")
            b_eq = np.concatenate([b_eq, b_ub[tight]])
            a_ub, b_ub = a_ub[loose], b_ub[loose]
            bounds[face.at_lower, 1] = bounds[face.at_lower, 0]
            bounds[face.at_upper, 0] = bounds[face.at_upper, 1]
        result = linprog(
            objective,
            A_ub=a_ub if a_ub.shape[0] else None,
            b_ub=b_ub if a_ub.shape[0] else None,
            A_eq=a_eq,
            b_eq=b_eq,
            bounds=bounds,
            method="highs",
            options=HIGHS_OPTIONS,
        )
        if result.status == 0:
            return result
        if result.status == 2:
            return None
        raise RuntimeError(f"HiGHS could not solve the plan: {result.message}")

    def solve_preferred(self) -> tuple[np.ndarray, float] | None:
        """The profile's preferred plan (both stages) and its first-stage objective value.

        The second stage keeps the first stage's optimum exactly rather than within a
        tolerance. By complementary slackness, given any optimal dual solution of the first
        stage, the first stage's optimal plans are exactly the feasible plans that keep at its
        bound every variable with a non-zero reduced cost and tight every row with a non-zero
        dual value: that set, the optimal face, is where the second stage searches. A tolerance
        row instead would let the second stage buy, say, a cheaper plan with a makespan a
        billionth longer than the fastest."""
        primary, secondary = self.objectives()
        first = self.solve(primary)
        if first is None:
            return None
        x = np.asarray(first.x)
        if secondary is not None:
            second = self.solve(secondary, face=_Face.of(first, primary))
            if second is not None:  # the first stage's plan lies on the face, so it should be
                x = np.asarray(second.x)
        return x, float(primary @ x)

    def makespan(self, x: np.ndarray) -> float:
        return float(x[self.n]) * self.fastest_seconds

    def cost(self, x: np.ndarray) -> float:
        return float(self.cost_alone @ x[: self.n])

    def price_rank(self, price: int) -> int:
        """How many eligible candidates are strictly cheaper."""
        return bisect.bisect_left(self.price_sorted, price)


# --- shares to bytes, time and money -----------------------------------------------------------


def _largest_remainder(total: int, numerators: Sequence[int], denominator: int) -> list[int]:
    """Whole numbers, each the floor or the ceiling of ``numerator / denominator``, summing to
    `total` (which must lie between the sums of the floors and of the ceilings): the units left
    after the floors go to the largest remainders, ties to the earlier entry. Integers only, so
    exact and fast for thousands of entries."""
    floors = [numerator // denominator for numerator in numerators]
    remainders = [numerator % denominator for numerator in numerators]
    left = total - sum(floors)
    if left < 0 or left > sum(1 for remainder in remainders if remainder):
        raise ValueError(f"Cannot share {total} among {len(floors)} values by largest remainder.")
    order = sorted(range(len(floors)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        floors[i] += 1
    return floors


@dataclass(slots=True)
class _Allocation:
    """Shares turned into whole bytes, times and money; `used` lists the candidates that carry
    data (their indices into the eligible list), largest share first."""

    fractions: np.ndarray
    byte_counts: list[int]
    used: list[int]
    seconds: dict[int, float]
    costs: dict[int, int]
    makespan: float
    total_cost: int
    assemblage_provider_id: int


def _allocate(problem: _Problem, fractions: np.ndarray) -> _Allocation:
    shares = np.clip(np.asarray(fractions[: problem.n], dtype=float), 0.0, None)
    shares[shares < NEGLIGIBLE_FRACTION * shares.sum()] = 0.0
    volume = problem.request.volume_bytes
    # shares as integers in units of 2**-60 (exact: a float times a power of two), far finer
    # than a byte of any volume below an exabyte
    weights = [int(share * SHARE_UNITS) for share in shares.tolist()]
    byte_counts = _largest_remainder(volume, [volume * w for w in weights], sum(weights))
    used = sorted(
        (j for j, count in enumerate(byte_counts) if count > 0),
        key=lambda j: (-byte_counts[j], j),
    )
    seconds = {j: byte_counts[j] / float(problem.rate[j]) for j in used}
    # exact costs in units of 10**-9 minor unit: price per GB times bytes
    exact_costs = [problem.prices[j] * byte_counts[j] for j in used]
    total_cost = (sum(exact_costs) + BYTES_PER_GB // 2) // BYTES_PER_GB  # rounded half up
    costs = dict(zip(used, _largest_remainder(total_cost, exact_costs, BYTES_PER_GB), strict=True))
    per_provider: dict[int, int] = {}
    for j in used:
        provider = problem.eligible[j].provider_id
        per_provider[provider] = per_provider.get(provider, 0) + byte_counts[j]
    # `used` is largest segment first, so max() keeps the provider of the larger segment on ties
    assemblage = max((problem.eligible[j].provider_id for j in used), key=lambda p: per_provider[p])
    return _Allocation(
        fractions=shares / shares.sum(),
        byte_counts=byte_counts,
        used=used,
        seconds=seconds,
        costs=costs,
        makespan=max(seconds.values()),
        total_cost=total_cost,
        assemblage_provider_id=assemblage,
    )


def _full_bandwidth(problem: _Problem, allocation: _Allocation, j: int) -> bool:
    # within a relative tolerance, or one byte's transfer time (the rounding to whole bytes)
    slack = max(BINDING_TOLERANCE * allocation.makespan, 1.0 / float(problem.rate[j]))
    return allocation.seconds[j] >= allocation.makespan - slack


def _segments(problem: _Problem, allocation: _Allocation) -> tuple[PlannedSegment, ...]:
    return tuple(
        PlannedSegment(
            index=index,
            provider_id=problem.eligible[j].provider_id,
            path_id=problem.eligible[j].path_id,
            message_id=problem.eligible[j].message_id,
            bytes=allocation.byte_counts[j],
        )
        for index, j in enumerate(allocation.used)
    )


# --- explanations ------------------------------------------------------------------------------


def _objective_sentence(problem: _Problem) -> str:
    w = problem.profile.cost_weight
    currency = problem.request.currency
    references = (
        f"the fastest possible makespan is {_seconds(problem.fastest_seconds)} (all "
        f"{problem.n} eligible paths at full bandwidth) and the cheapest possible cost "
        f"{money_format(math.ceil(problem.cheapest_exact), currency)}"
    )
    if w == 0:
        return (
            "Balance: fastest first, then cheapest (the default): the plan minimizes the "
            f"completion time, and cost only decides between equally fast plans; {references}."
        )
    if w == 1:
        return (
            "Balance: cheapest first, then fastest: the plan minimizes the cost, and time only "
            f"decides between equally cheap plans; {references}."
        )
    return (
        f"Balance: {_percent(1 - w)} weight on completion time relative to the fastest possible, "
        f"{_percent(w)} on cost relative to the cheapest possible; {references}."
    )


def _line_reason(problem: _Problem, allocation: _Allocation, j: int, full: bool) -> str:
    candidate = problem.eligible[j]
    currency = problem.request.currency
    share = allocation.byte_counts[j] / problem.request.volume_bytes
    sentences = [
        f"{candidate.label} carries {_percent(share)} of the data "
        f"({_size(allocation.byte_counts[j])}) in "
        f"{_seconds(allocation.seconds[j])} at {_mbps(candidate.bandwidth_mbps)}, for "
        f"{money_format(allocation.costs[j], currency)}."
    ]
    if full:
        sentences.append(
            "It runs at its full bandwidth for the whole makespan: its bandwidth binds."
        )
    else:
        used = allocation.seconds[j] / allocation.makespan
        sentences.append(
            f"It uses {_percent(used)} of its bandwidth over the makespan: it takes what the "
            "paths that are full leave, as far as that improves the objective."
        )
    cheaper = problem.price_rank(candidate.price_per_gb_minor)
    if cheaper == 0:
        sentences.append(
            f"Its price, {_price(candidate, currency)}, is the lowest of the {problem.n} "
            "eligible paths."
        )
    else:
        sentences.append(
            f"Its price is {_price(candidate, currency)}; {cheaper} of the {problem.n} eligible "
            f"paths {'is' if cheaper == 1 else 'are'} cheaper."
        )
    if problem.bonus_words[j]:
        sentences.append(
            f"Bonus {_weight(float(problem.bonus[j]))} in the objective: "
            f"{'; '.join(problem.bonus_words[j])}."
        )
    return " ".join(sentences)


@dataclass(frozen=True, slots=True)
class _UsedSummary:
    """What the explanation of an unused candidate compares it with, computed once."""

    dearest_price: int
    least_bonus: float
    worst_score: float
    scores: np.ndarray

    @classmethod
    def of(cls, problem: _Problem, allocation: _Allocation) -> "_UsedSummary":
        w = problem.profile.cost_weight
        # the per-volume part of the objective: price relative to the cheapest, less the bonus
        scores = (w if w > 0 else 1.0) * problem.cost_alone / problem.cost_ref - problem.bonus
        used = allocation.used
        return cls(
            dearest_price=max(problem.prices[i] for i in used),
            least_bonus=min(float(problem.bonus[i]) for i in used),
            worst_score=max(float(scores[i]) for i in used),
            scores=scores,
        )


def _unused_reason(problem: _Problem, j: int, used: _UsedSummary, binding: Sequence[str]) -> str:
    candidate = problem.eligible[j]
    currency = problem.request.currency
    w = problem.profile.cost_weight
    dearest = candidate.price_per_gb_minor >= used.dearest_price
    least_bonus = problem.bonus[j] <= used.least_bonus
    if "price_limit" in binding:
        why = "the price limit binds, and within it the money does more on the paths used"
        if dearest:
            why += f" (none of them is dearer than its {_price(candidate, currency)})"
    elif w == 0:
        why = (
            "fastest first, but the bonuses of the paths used (preferences, ratings) outweigh "
            "the time its bandwidth would save"
        )
    elif dearest and least_bonus:
        why = (
            f"at {_price(candidate, currency)} it is no cheaper than any path used and has no "
            "larger bonus"
        )
        if w == 1:
            why += ", and cheapest first fills the cheapest paths"
            why += " up to the deadline" if "deadline" in binding else ""
        else:
            why += ", so the time it would save is worth less than its extra cost at this balance"
    elif used.scores[j] >= used.worst_score:
        why = (
            f"at {_price(candidate, currency)}, after bonuses, it scores no better than any "
            "path used (price relative to the cheapest, less the bonus)"
        )
        if w < 1:
            why += ", so the time it would save is worth less than its extra cost"
    else:
        why = "the objective gains more from the paths used, taking time, price and bonus together"
    return f"{candidate.label} is not used ({_mbps(candidate.bandwidth_mbps)}): {why}."


def _outcome_sentences(problem: _Problem, allocation: _Allocation, method: str) -> list[str]:
    currency = problem.request.currency
    providers = {problem.eligible[j].provider_id for j in allocation.used}
    segments = len(allocation.used)
    slower = allocation.makespan / problem.fastest_seconds
    if problem.cheapest_exact > 0:
        dearer = f"{allocation.total_cost / float(problem.cheapest_exact):.3f} times the cheapest"
    else:
        dearer = "the cheapest possible plan is free"
    sentences = [
        f"{segments} segment{'s' if segments != 1 else ''} on {len(providers)} "
        f"provider{'s' if len(providers) != 1 else ''}, one per (provider, path) used, each "
        f"sized by its share; the sizes sum to the volume "
        f"({_size(problem.request.volume_bytes)}).",
        f"Completes in {_seconds(allocation.makespan)} ({slower:.3f} times the fastest "
        f"possible) and costs {money_format(allocation.total_cost, currency)} ({dearer}).",
    ]
    assemblage = allocation.assemblage_provider_id
    carried = sum(
        allocation.byte_counts[j]
        for j in allocation.used
        if problem.eligible[j].provider_id == assemblage
    )
    name = next(c.provider_name for c in problem.eligible if c.provider_id == assemblage)
    if len(providers) == 1:
        sentences.append(f"The result is assembled at {name}, which carries all the data.")
    else:
        sentences.append(
            f"The result is assembled at {name}: it carries the largest share "
            f"({_percent(carried / problem.request.volume_bytes)}), so the fewest bytes travel "
            "between providers to the assemblage."
        )
    if method == "optimal":
        sentences.append(
            "Times are bytes over bandwidth; costs are price times bytes / 10^9, the total rounded "
            "half up to a minor unit and shared among the lines by largest remainder."
        )
    return sentences


def _binding(problem: _Problem, x: np.ndarray, allocation: _Allocation) -> list[str]:
    binding = []
    deadline = problem.request.deadline_seconds
    limit = problem.request.price_limit_minor
    if deadline is not None and problem.makespan(x) >= deadline * (1 - BINDING_TOLERANCE):
        binding.append("deadline")
    if limit is not None and problem.cost(x) >= limit - BINDING_TOLERANCE * max(1.0, limit):
        binding.append("price_limit")
    if any(_full_bandwidth(problem, allocation, j) for j in allocation.used):
        binding.append("bandwidth")
    return binding


def _binding_sentences(
    problem: _Problem, x: np.ndarray, allocation: _Allocation, binding: Sequence[str]
) -> list[str]:
    currency = problem.request.currency
    deadline = problem.request.deadline_seconds
    limit = problem.request.price_limit_minor
    sentences = []
    if "deadline" in binding:
        sentences.append(
            f"The deadline ({_seconds(deadline)}) binds: the plan ends just then; no plan "
            "that finishes sooner scores better within the price limit."
        )
    elif deadline is not None:
        sentences.append(
            f"The deadline ({_seconds(deadline)}) does not bind: "
            f"{_seconds(deadline - problem.makespan(x))} to spare."
        )
    if "price_limit" in binding:
        sentences.append(
            f"The price limit ({money_format(limit, currency)}) binds: the plan spends all of "
            "it; no cheaper plan scores better within the deadline."
        )
    elif limit is not None:
        sentences.append(
            f"The price limit ({money_format(limit, currency)}) does not bind: "
            f"{money_format(limit - allocation.total_cost, currency)} to spare."
        )
    full = sum(1 for j in allocation.used if _full_bandwidth(problem, allocation, j))
    sentences.append(
        f"Bandwidth binds on {full} of the {len(allocation.used)} paths used (they run full "
        "for the whole makespan)."
    )
    return sentences


def _exclusion_sentences(
    candidates: Sequence[Candidate], exclusions: Sequence[Exclusion], eligible: int
) -> list[str]:
    if not candidates:
        return ["No provider answered with an available path."]
    sentences = [
        f"{len(candidates)} candidate paths answered; {eligible} eligible, "
        f"{len(exclusions)} left out."
    ]
    sentences.extend(exclusion.reason for exclusion in exclusions)
    return sentences


def _no_eligible_plan(
    method: str,
    request: PlanRequest,
    profile: PlanningProfile,
    candidates: Sequence[Candidate],
    exclusions: Sequence[Exclusion],
) -> Plan:
    failure = FAILURE_NO_ELIGIBLE if candidates else FAILURE_NO_CANDIDATES
    reasons = _exclusion_sentences(candidates, exclusions, 0)
    if candidates:
        reasons.append("No candidate is eligible, so there is nothing to plan.")
    return Plan(
        method=method,
        feasible=False,
        volume_bytes=request.volume_bytes,
        currency=request.currency,
        cost_weight=profile.cost_weight,
        failures=(failure,),
        exclusions=tuple(exclusions),
        reasons=tuple(reasons),
    )


def _diagnosis(problem: _Problem) -> tuple[list[str], list[str]]:
    """Which limit fails, from HiGHS's answers to the relaxations: failure codes, sentences."""
    currency = problem.request.currency
    deadline = problem.request.deadline_seconds
    limit = problem.request.price_limit_minor
    time_objective = problem.time_objective()
    cost_objective = problem.cost_objective()

    def best(objective: np.ndarray, *, deadline: bool, price_limit: bool) -> np.ndarray | None:
        result = problem.solve(objective, deadline=deadline, price_limit=price_limit)
        return None if result is None else np.asarray(result.x)

    fastest = best(time_objective, deadline=False, price_limit=False)
    cheapest = best(cost_objective, deadline=False, price_limit=False)
    if fastest is None or cheapest is None:
        raise RuntimeError("HiGHS found no plan even without the deadline and the price limit.")
    within_deadline = (
        best(cost_objective, deadline=True, price_limit=False) if deadline is not None else cheapest
    )
    within_limit = (
        best(time_objective, deadline=False, price_limit=True) if limit is not None else fastest
    )
    failures: list[str] = []
    sentences: list[str] = []
    if within_deadline is None:
        failures.append(FAILURE_DEADLINE)
        total_mbps = sum(c.bandwidth_mbps for c in problem.eligible)
        sentences.append(
            f"The deadline is too short: the fastest possible plan, all {problem.n} eligible "
            f"paths at full bandwidth ({_mbps(total_mbps)} together), takes "
            f"{_seconds(problem.makespan(fastest))}; the deadline is {_seconds(deadline)}."
        )
    if within_limit is None:
        failures.append(FAILURE_PRICE_LIMIT)
        cheapest_candidate = min(problem.eligible, key=lambda c: c.price_per_gb_minor)
        sentences.append(
            "The price limit is too low: the cheapest possible plan, everything on "
            f"{cheapest_candidate.label} at {_price(cheapest_candidate, currency)}, costs "
            f"{_money_at_least(problem.cost(cheapest), currency)}; the limit is "
            f"{money_format(limit, currency)}."
        )
    if within_deadline is not None and within_limit is not None:
        if deadline is None or limit is None:
            raise RuntimeError(
                "HiGHS found no plan, yet found one under the request's only limit: a numerical "
                "failure, not an answer."
            )
        failures.append(FAILURE_INCOMPATIBLE)
        sentences.append(
            "The deadline and the price limit cannot both be met, though each can alone: "
            f"finishing within {_seconds(deadline)} costs at least "
            f"{_money_at_least(problem.cost(within_deadline), currency)} (the limit is "
            f"{money_format(limit, currency)}), and staying within "
            f"{money_format(limit, currency)} takes at least "
            f"{_seconds(problem.makespan(within_limit))} (the deadline is {_seconds(deadline)})."
        )
    return failures, sentences


# --- the public functions ----------------------------------------------------------------------


def optimal_plan(
    *,
    request: PlanRequest,
    profile: PlanningProfile,
    candidates: Iterable[Candidate],
    now: datetime,
) -> Plan:
    """The profile's preferred plan: the LP of the module docstring, solved by HiGHS, with the
    reasons for every choice, or, when no plan meets the limits, which one fails and why."""
    now = _aware(now, "now")
    checked = _candidates_checked(candidates, now)
    eligible, exclusions = _eligibility(profile, checked, now)
    if not eligible:
        return _no_eligible_plan("optimal", request, profile, checked, exclusions)
    problem = _Problem(request, profile, eligible)
    head = [_objective_sentence(problem)]
    head.extend(_exclusion_sentences(checked, exclusions, len(eligible)))
    solved = problem.solve_preferred()
    if solved is None:
        failures, sentences = _diagnosis(problem)
        return Plan(
            method="optimal",
            feasible=False,
            volume_bytes=request.volume_bytes,
            currency=request.currency,
            cost_weight=profile.cost_weight,
            failures=tuple(failures),
            exclusions=tuple(exclusions),
            fastest_seconds=problem.fastest_seconds,
            cheapest_cost_minor=float(problem.cheapest_exact),
            reasons=(*head, "No plan meets the request's limits.", *sentences),
        )
    x, objective = solved
    allocation = _allocate(problem, x)
    binding = _binding(problem, x, allocation)
    lines = []
    line_reasons = []
    for j in allocation.used:
        full = _full_bandwidth(problem, allocation, j)
        reason = _line_reason(problem, allocation, j, full)
        line_reasons.append(reason)
        lines.append(
            PlanLine(
                candidate=problem.eligible[j],
                fraction=float(allocation.fractions[j]),
                bytes=allocation.byte_counts[j],
                seconds=allocation.seconds[j],
                cost_minor=allocation.costs[j],
                full_bandwidth=full,
                bonus=float(problem.bonus[j]),
                reason=reason,
            )
        )
    used = set(allocation.used)
    summary = _UsedSummary.of(problem, allocation)
    unused_reasons = [
        _unused_reason(problem, j, summary, binding) for j in range(problem.n) if j not in used
    ]
    reasons = [
        *head,
        *_outcome_sentences(problem, allocation, "optimal"),
        *_binding_sentences(problem, x, allocation, binding),
        *line_reasons,
        *unused_reasons,
    ]
    return Plan(
        method="optimal",
        feasible=True,
        volume_bytes=request.volume_bytes,
        currency=request.currency,
        cost_weight=profile.cost_weight,
        lines=tuple(lines),
        segments=_segments(problem, allocation),
        makespan_seconds=allocation.makespan,
        total_cost_minor=allocation.total_cost,
        assemblage_provider_id=allocation.assemblage_provider_id,
        binding=tuple(binding),
        exclusions=tuple(exclusions),
        fastest_seconds=problem.fastest_seconds,
        cheapest_cost_minor=float(problem.cheapest_exact),
        objective=objective,
        reasons=tuple(reasons),
    )


def proportional_plan(
    *,
    request: PlanRequest,
    profile: PlanningProfile,
    candidates: Iterable[Candidate],
    now: datetime,
) -> Plan:
    """The baseline: the volume split in proportion to bandwidth over the same eligible
    candidates (no LP, prices, preferences or ratings), with times and money computed as in
    `optimal_plan`. `feasible` says whether it meets the deadline and the price limit; its
    lines are given either way, so that it can be compared."""
    now = _aware(now, "now")
    checked = _candidates_checked(candidates, now)
    eligible, exclusions = _eligibility(profile, checked, now)
    if not eligible:
        return _no_eligible_plan("proportional", request, profile, checked, exclusions)
    problem = _Problem(request, profile, eligible)
    allocation = _allocate(problem, problem.rate / problem.rate.sum())
    currency = request.currency
    failures = []
    limits = []
    deadline = request.deadline_seconds
    limit = request.price_limit_minor
    if deadline is not None and allocation.makespan > deadline * (1 + BINDING_TOLERANCE):
        failures.append(FAILURE_DEADLINE)
        limits.append(
            f"It misses the deadline: {_seconds(allocation.makespan)} against {_seconds(deadline)}."
        )
    if limit is not None and allocation.total_cost > limit:
        failures.append(FAILURE_PRICE_LIMIT)
        limits.append(
            f"It exceeds the price limit: {money_format(allocation.total_cost, currency)} "
            f"against {money_format(limit, currency)}."
        )
    lines = tuple(
        PlanLine(
            candidate=problem.eligible[j],
            fraction=float(allocation.fractions[j]),
            bytes=allocation.byte_counts[j],
            seconds=allocation.seconds[j],
            cost_minor=allocation.costs[j],
            full_bandwidth=_full_bandwidth(problem, allocation, j),
            bonus=0.0,
            reason=(
                f"{problem.eligible[j].label} carries {_size(allocation.byte_counts[j])}, in "
                f"proportion to its {_mbps(problem.eligible[j].bandwidth_mbps)}, for "
                f"{money_format(allocation.costs[j], currency)}."
            ),
        )
        for j in allocation.used
    )
    reasons = [
        f"Baseline: the volume split in proportion to bandwidth over the {problem.n} eligible "
        "paths, whatever their prices, preferences and ratings.",
        *_exclusion_sentences(checked, exclusions, len(eligible)),
        *_outcome_sentences(problem, allocation, "proportional"),
        *limits,
        *(line.reason for line in lines),
    ]
    return Plan(
        method="proportional",
        feasible=not failures,
        volume_bytes=request.volume_bytes,
        currency=currency,
        cost_weight=profile.cost_weight,
        lines=lines,
        segments=_segments(problem, allocation),
        makespan_seconds=allocation.makespan,
        total_cost_minor=allocation.total_cost,
        assemblage_provider_id=allocation.assemblage_provider_id,
        binding=(),
        failures=tuple(failures),
        exclusions=tuple(exclusions),
        fastest_seconds=problem.fastest_seconds,
        cheapest_cost_minor=float(problem.cheapest_exact),
        reasons=tuple(reasons),
    )
