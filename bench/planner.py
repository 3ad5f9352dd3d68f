"""Planner benchmark: the LP plan for 1,000 availability messages of 5 paths each, against the
split in proportion to bandwidth.

    .venv/bin/python bench/planner.py [--quick] [--messages 1000] [--paths 5] [--seed 1]

It builds, from a seeded random generator, `--messages` availability messages from 200
providers, each listing `--paths` paths of its own: bandwidth log-normal around 200 Mbit/s,
a price per GB that grows with bandwidth, each path crossing one to three of 40 networks, each
provider rated 1.5 to 5 or not rated (5 %), 3 % of the messages already expired. The profile
has the default balance (fastest first, then cheapest) and no preferences, but blocks three
providers and two networks and requires a rating of at least 2, so that a share of the
candidates is excluded before the LP, as in real requests. The request is 10 TB, without
deadline or price limit.

- `plan_ms`: wall time of one `optimal_plan` call (eligibility, the two HiGHS solves of the
  lexicographic default, whole bytes and money, segments, every reason), best of 10 runs
  (3 with `--quick`).
- **Baseline**, on the same eligible candidates: `proportional_plan`, the volume split in
  proportion to bandwidth, times and money computed by the same code.
  `makespan_ratio_vs_proportional` = our makespan / the baseline's, `cost_ratio_vs_proportional`
  = our total cost / the baseline's. With the default balance and no binding limit the fastest
  plan *is* the proportional split, so both ratios are 1 up to whole bytes: the figure checks
  that the LP finds it, and its time.
- `balanced_*`: the same with cost weight 0.5 (time and cost weigh the same, each relative to
  its best possible), where the plan trades completion time for cost: a makespan ratio above 1
  and a cost ratio below 1 show the trade.
- `limited_*`: the default balance with a price limit at 80 % of the baseline's cost: the
  baseline breaks it (`limited_proportional_feasible`), the plan meets it at the fastest
  makespan the money allows.

Ratios are rounded to six decimals. Every figure is printed; the last line is one JSON object
with all of them. Not a test: it asserts nothing.
"""

import argparse
import json
import math
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from segmentation.planner import (  # noqa: E402
    Candidate,
    Plan,
    PlanningProfile,
    PlanRequest,
    optimal_plan,
    proportional_plan,
)

PROVIDERS = 200
NETWORKS = 40
VOLUME_BYTES = 10 * 10**12
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, under a minute")
    parser.add_argument("--messages", type=int, default=1000, help="availability messages")
    parser.add_argument("--paths", type=int, default=5, help="paths per message")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generator")
    return parser.parse_args()


def build_candidates(messages: int, paths: int, seed: int) -> list[Candidate]:
    """Seeded random availability messages: one Candidate per (message, path)."""
    rng = random.Random(seed)
    ratings = {
        provider: None if rng.random() < 0.05 else round(rng.uniform(1.5, 5), 2)
        for provider in range(1, PROVIDERS + 1)
    }
    candidates = []
    for message in range(1, messages + 1):
        provider = (message - 1) % PROVIDERS + 1
        expired = rng.random() < 0.03
        valid_until = NOW + timedelta(seconds=-60 if expired else 600)
        for k in range(paths):
            path = (message - 1) * paths + k + 1  # a path of its own: no path offered twice
            bandwidth = min(max(rng.lognormvariate(math.log(200), 0.8), 1.0), 10_000.0)
            price = round(400 * (bandwidth / 200) ** 0.3 * rng.uniform(0.5, 1.5))
            networks = tuple(rng.sample(range(1, NETWORKS + 1), rng.randint(1, 3)))
            candidates.append(
                Candidate(
                    provider_id=provider,
                    provider_name=f"provider-{provider}",
                    message_id=message,
                    path_id=path,
                    path_name=f"path-{path}",
                    network_ids=networks,
                    bandwidth_mbps=round(bandwidth, 1),
                    price_per_gb_minor=price,
                    rating=ratings[provider],
                    valid_until=valid_until,
                )
            )
    return candidates


def best_of(runs: int, compute, **arguments) -> tuple[float, Plan]:
    """The fastest of `runs` calls, in milliseconds, and the plan (the same every run)."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        result = compute(**arguments)
        timings.append((time.perf_counter() - started) * 1000)
    return min(timings), result


def ratios(ours: Plan, theirs: Plan) -> tuple[float, float]:
    return (
        round(ours.makespan_seconds / theirs.makespan_seconds, 6),
        round(ours.total_cost_minor / theirs.total_cost_minor, 6),
    )


def describe(name: str, result: Plan, ms: float) -> None:
    if not result.feasible:
        print(f"{name}: infeasible ({', '.join(result.failures)}), {ms:.1f} ms", flush=True)
        return
    print(
        f"{name}: {ms:.1f} ms, {len(result.segments)} segments, makespan "
        f"{result.makespan_seconds:.3f} s, cost {result.total_cost_minor / 100:,.2f} EUR"
        + ("" if result.feasible else " (breaks a limit)"),
        flush=True,
    )


def main() -> None:
    args = _arguments()
    runs = 3 if args.quick else 10
    candidates = build_candidates(args.messages, args.paths, args.seed)
    profile = PlanningProfile(
        blocked_providers={7, 42, 133},
        blocked_networks={3, 17},
        min_rating=2.0,
    )
    request = PlanRequest(volume_bytes=VOLUME_BYTES, currency="EUR")
    inputs = {"request": request, "profile": profile, "candidates": candidates, "now": NOW}

    plan_ms, plan = best_of(runs, optimal_plan, **inputs)
    baseline_ms, baseline = best_of(runs, proportional_plan, **inputs)
    eligible = len(candidates) - len(plan.exclusions)
    print(
        f"{args.messages} messages x {args.paths} paths = {len(candidates)} candidates; "
        f"{eligible} eligible, {len(plan.exclusions)} excluded (blocked, below the minimum "
        f"rating or unrated, expired); {VOLUME_BYTES / 10**12:g} TB; best of {runs} runs",
        flush=True,
    )
    describe("plan (fastest first, then cheapest)", plan, plan_ms)
    describe("baseline (proportional to bandwidth)", baseline, baseline_ms)
    makespan_ratio, cost_ratio = ratios(plan, baseline)
    print(f"ratios vs baseline: makespan {makespan_ratio}, cost {cost_ratio}", flush=True)

    balanced_inputs = inputs | {
        "profile": PlanningProfile(
            blocked_providers=profile.blocked_providers,
            blocked_networks=profile.blocked_networks,
            min_rating=profile.min_rating,
            cost_weight=0.5,
        )
    }
    balanced_ms, balanced = best_of(runs, optimal_plan, **balanced_inputs)
    describe("plan (cost weight 0.5)", balanced, balanced_ms)
    balanced_makespan, balanced_cost = ratios(balanced, baseline)
    print(f"ratios vs baseline: makespan {balanced_makespan}, cost {balanced_cost}", flush=True)

    limit = math.floor(baseline.total_cost_minor * 0.8)
    limited_request = PlanRequest(
        volume_bytes=VOLUME_BYTES, currency="EUR", price_limit_minor=limit
    )
    limited_ms, limited = best_of(runs, optimal_plan, **(inputs | {"request": limited_request}))
    limited_baseline = proportional_plan(**(inputs | {"request": limited_request}))
    describe(f"plan (price limit {limit / 100:,.2f} EUR)", limited, limited_ms)
    limited_makespan, limited_cost = ratios(limited, baseline)
    print(
        f"ratios vs baseline: makespan {limited_makespan}, cost {limited_cost}; the baseline "
        f"{'meets' if limited_baseline.feasible else 'breaks'} the limit",
        flush=True,
    )

    result = {
        "messages": args.messages,
        "paths": args.paths,
        "candidates": len(candidates),
        "eligible": eligible,
        "excluded": len(plan.exclusions),
        "plan_ms": round(plan_ms, 1),
        "makespan_ratio_vs_proportional": makespan_ratio,
        "cost_ratio_vs_proportional": cost_ratio,
        "feasible": plan.feasible,
        "segments": len(plan.segments),
        "makespan_s": round(plan.makespan_seconds, 6),
        "total_cost_minor": plan.total_cost_minor,
        "proportional_ms": round(baseline_ms, 1),
        "proportional_makespan_s": round(baseline.makespan_seconds, 6),
        "proportional_cost_minor": baseline.total_cost_minor,
        "balanced_cost_weight": 0.5,
        "balanced_plan_ms": round(balanced_ms, 1),
        "balanced_makespan_ratio_vs_proportional": balanced_makespan,
        "balanced_cost_ratio_vs_proportional": balanced_cost,
        "balanced_segments": len(balanced.segments),
        "limited_price_limit_minor": limit,
        "limited_plan_ms": round(limited_ms, 1),
        "limited_feasible": limited.feasible,
        "limited_makespan_ratio_vs_proportional": limited_makespan,
        "limited_cost_ratio_vs_proportional": limited_cost,
        "limited_proportional_feasible": limited_baseline.feasible,
        "runs": runs,
        "seed": args.seed,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
