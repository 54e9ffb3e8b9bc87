"""Sampling noise of the drift scores: PSI and Jensen-Shannon distance between a profile and
live windows drawn from the very same distribution, by live sample size, on the image
recipe's bucket edges (modelship_api.profile.image_statistics). It shows which minSamples
keeps stationary traffic under the default thresholds (raise: PSI 0.25, JS 0.2; clear: 0.1).

    .venv/bin/python hack/bench/drift_noise.py [--trials 300] [--sizes 100 200 500 1200]
"""

from __future__ import annotations

import argparse
import random
import statistics
from datetime import UTC, datetime

from modelship.core.drift.distance import js_distance, psi
from modelship_api.profile import Profile, bucket_index, image_statistics

DEFINITIONS = image_statistics(["ok", "scratch", "dent"])


def draw(rng: random.Random) -> dict[str, float]:
    """One image's statistics under steady lighting (uniform within a plausible range)."""
    confidence = rng.uniform(0.7, 0.99)
    return {"input_brightness": rng.uniform(0.4, 0.6), "input_contrast": rng.uniform(0.1, 0.15),
            "input_saturated_fraction": rng.uniform(0.0, 0.004),
            "output_confidence": confidence, "output_entropy": (1 - confidence) * 1.2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 1200])
    args = parser.parse_args()
    rng = random.Random(1)
    numeric = [d for d in DEFINITIONS if d.kind == "numeric"]
    reference = [draw(rng) for _ in range(4000)]
    now = datetime.now(UTC)
    profile = Profile.build(numeric, {d.name: [s[d.name] for s in reference] for d in numeric},
                            len(reference), now, now)
    print(f"{len(numeric)} numeric statistics, profile of {len(reference)} samples, "
          f"{args.trials} live windows per size")
    print(f"{'samples':>8} {'psi mean':>9} {'psi p99':>8} {'js mean':>8} {'js p99':>7} "
          f"{'above raise':>12}")
    for n in args.sizes:
        scores: list[tuple[float, float]] = []
        for _ in range(args.trials):
            window = [draw(rng) for _ in range(n)]
            for d in numeric:
                counts = [0] * (len(d.edges or []) + 1)
                for s in window:
                    counts[bucket_index(d.edges or [], s[d.name])] += 1
                ref = profile.statistics[d.name].counts
                scores.append((psi(ref, counts), js_distance(ref, counts)))
        psis = sorted(s[0] for s in scores)
        jss = sorted(s[1] for s in scores)
        p99 = int(len(scores) * 0.99)
        above = sum(1 for a, b in scores if a > 0.25 or b > 0.2) / len(scores)
        print(f"{n:>8} {statistics.mean(psis):>9.3f} {psis[p99]:>8.3f} "
              f"{statistics.mean(jss):>8.3f} {jss[p99]:>7.3f} {above:>12.2%}")


if __name__ == "__main__":
    main()
