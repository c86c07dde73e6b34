"""Small statistics for the report: Wilson intervals, an exact binomial tail, a Poisson-binomial z-score."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z_95 = 1.959963984540054


def wilson(successes: float, n: float, *, z: float = Z_95) -> tuple[float, float] | None:
    """Return the Wilson score interval of ``successes / n`` (None when n is 0); half successes are fine."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def share(successes: float, n: float) -> dict:
    """Return ``{"successes", "n", "share", "low", "high"}``: the share with its 95 % Wilson interval."""
    interval = wilson(successes, n)
    return {"successes": successes, "n": n, "share": successes / n if n else None,
            "low": interval[0] if interval else None, "high": interval[1] if interval else None}


def binomial_tail(k: int, n: int, p: float = 0.5) -> float:
    """Return P(X >= k) for X ~ Binomial(n, p), exactly."""
    if k <= 0:
        return 1.0
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def poisson_binomial_z(observed: float, probabilities: Sequence[float]) -> tuple[float, float] | None:
    """Compare an observed share with independent trials of known success probabilities.

    Return (expected share, z) where z = (observed − expected) / sd, sd the standard deviation of the
    share of successes over these trials; None without trials. A zero sd (every trial certain) gives z
    = 0 when the observation matches and ±inf otherwise.
    """
    n = len(probabilities)
    if not n:
        return None
    expected = sum(probabilities) / n
    sd = math.sqrt(sum(p * (1 - p) for p in probabilities)) / n
    if sd == 0:
        return expected, 0.0 if math.isclose(observed, expected) else math.copysign(math.inf, observed - expected)
    return expected, (observed - expected) / sd
