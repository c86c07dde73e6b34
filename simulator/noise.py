"""Labeler noise: Bradley–Terry on the hidden score, calibrated to how often two labelers agree.

A careful labeler prefers answer a to b with probability σ((s_a − s_b) / T), s being the hidden
score and T the labeler's temperature (Bradley–Terry). For K answers they rank by s / T plus
independent Gumbel noise (Plackett–Luce): the difference of two Gumbels is logistic, so every pair
of that ranking follows Bradley–Terry exactly, and a ranking is as noisy as its pairs.

Two such labelers order a pair alike with probability p² + (1 − p)², p = σ(Δ / T). Over a sample of
score differences that is a decreasing function of T, from 1 (T → 0, no exact ties) to ½ (T → ∞),
so ``calibrate_temperature`` finds by bisection the T at which they agree on ``target`` of the
pairs: 73 % by default, as InstructGPT's training labelers did (72.6 ± 1.5 %, Ouyang et al. 2022).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

INSTRUCTGPT_AGREEMENT = 0.73


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def preference_probability(diff: float, temperature: float) -> float:
    """Return the probability that a labeler of this temperature prefers the answer ahead by ``diff``."""
    return sigmoid(diff / temperature)


def expected_agreement(diffs: Sequence[float], temperature: float) -> float:
    """Return the share of pairs on which two independent labelers of this temperature agree, in expectation."""
    if not diffs:
        raise ValueError("no score differences to average over")
    total = 0.0
    for diff in diffs:
        p = preference_probability(diff, temperature)
        total += p * p + (1 - p) * (1 - p)
    return total / len(diffs)


def calibrate_temperature(diffs: Sequence[float], *, target: float = INSTRUCTGPT_AGREEMENT) -> float:
    """Return the temperature at which two labelers agree on ``target`` of these pairs, in expectation.

    Raise ValueError when no temperature reaches it: ``target`` must lie in (½, the share of
    pairs whose scores differ at all + half the rest).
    """
    diffs = [abs(d) for d in diffs]
    spread = max(diffs, default=0.0)
    ceiling = (sum(1 for d in diffs if d > 0) + 0.5 * sum(1 for d in diffs if d == 0)) / max(1, len(diffs))
    if not 0.5 < target < ceiling:
        raise ValueError(f"target agreement {target} is out of reach: it must lie in (0.5, {ceiling:.3f})")
    low, high = math.log(spread * 1e-6), math.log(spread * 1e6)  # agreement(low) > target > agreement(high)
    for _ in range(200):
        middle = (low + high) / 2
        if expected_agreement(diffs, math.exp(middle)) > target:
            low = middle
        else:
            high = middle
        if high - low < 1e-9:
            break
    return math.exp((low + high) / 2)


def noisy_order(scores: Sequence[float], temperature: float, rng: random.Random) -> list[int]:
    """Return the indices of ``scores`` best first, as a Plackett–Luce labeler of this temperature ranks them."""
    keys = [score / temperature - math.log(-math.log(rng.random() or 1e-300)) for score in scores]
    return sorted(range(len(scores)), key=lambda index: -keys[index])


def noisy_choice(diff: float, temperature: float, rng: random.Random) -> bool:
    """Return True when the labeler prefers the first of two answers whose scores differ by ``diff``."""
    return rng.random() < preference_probability(diff, temperature)


def simulated_agreement(diffs: Sequence[float], temperature: float, rng: random.Random) -> float:
    """Let two labelers judge every pair once each; return the share of pairs they ordered alike."""
    agreed = sum(noisy_choice(d, temperature, rng) == noisy_choice(d, temperature, rng) for d in diffs)
    return agreed / len(diffs)


class RunningCalibration:
    """Keep the careful labelers' temperature calibrated on the pairs they are being given now.

    How often two labelers agree depends on the answers as much as on the labelers: the base model's
    gibberish is hard to tell apart, a trained policy's answers less so, and the loop moves from one
    to the other. InstructGPT's labelers agreed on 73 % of the pairs they were given; so the team
    starts from a temperature calibrated on the answer source (``initial``) and, once ``min_pairs``
    pairs of served ranking tasks are known, recalibrates on the newest ``window`` of them every
    tenth of a window: two careful labelers then agree on about ``target`` of the pairs they rank,
    whatever stage the loop is at. Each ranking is made with the temperature of its moment.
    """

    def __init__(self, *, initial: float, target: float = INSTRUCTGPT_AGREEMENT, min_pairs: int = 30,
                 window: int = 180) -> None:
        self.temperature, self.target, self.min_pairs, self.window = initial, target, min_pairs, window
        self.diffs: list[float] = []
        self._since = 0  # pairs added since the last calibration

    def add(self, scores: Sequence[float]) -> float:
        """Add the pairs of one task's distinct answers (their hidden scores); return the temperature to use."""
        new = [a - b for i, a in enumerate(scores) for b in scores[i + 1:]]
        self.diffs += new
        self._since += len(new)
        if len(self.diffs) >= self.min_pairs and self._since >= min(len(self.diffs), self.window) / 10:
            try:
                self.temperature = calibrate_temperature(self.diffs[-self.window:], target=self.target)
            except ValueError:  # too many exact ties to reach the target: keep the last temperature
                pass
            self._since = 0
        return self.temperature

    def agreement(self) -> float | None:
        """Two careful labelers' expected agreement on the newest window of pairs, at the current temperature."""
        recent = self.diffs[-self.window:]
        return expected_agreement(recent, self.temperature) if recent else None
