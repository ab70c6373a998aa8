"""Bootstrap confidence intervals and the across-seed summary of the learn benchmark.

>>> lo, hi = bootstrap_ci([1, 0] * 100, n_boot=2000, seed=0)
>>> round(lo, 2), round(hi, 2)
(0.43, 0.57)
>>> bootstrap_ci([1, 1, 1])
(1.0, 1.0)
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (episodes resampled with replacement).

    Deterministic for a given ``seed``; an empty input gives ``(0.0, 0.0)``.
    """
    n = len(values)
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    vals = list(values)
    means = sorted(sum(rng.choices(vals, k=n)) / n for _ in range(n_boot))
    a = (1 - level) / 2
    lo_i = max(0, min(n_boot - 1, int(a * n_boot)))
    hi_i = max(0, min(n_boot - 1, int((1 - a) * n_boot) - 1))
    return (means[lo_i], means[hi_i])


def seed_summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std (0 for one seed), min and max of a metric over training seeds."""
    v = list(values)
    return {"mean": statistics.fmean(v) if v else 0.0, "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "min": min(v) if v else 0.0, "max": max(v) if v else 0.0, "n": len(v)}


def cis_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return not (a[1] < b[0] or b[1] < a[0])
