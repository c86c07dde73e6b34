"""Labeler noise: calibrated temperatures give InstructGPT's 73 % agreement, rankings follow Bradley–Terry."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from simulator.answers import BuiltSource, HhSource, pairs_of
from simulator.noise import (
    RunningCalibration,
    calibrate_temperature,
    expected_agreement,
    noisy_order,
    preference_probability,
    simulated_agreement,
)
from simulator.preferences import rich_score, tiny_score

HH_SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl"


def _diffs(score, answers: list[str], *, count: int, seed: int) -> list[float]:
    return [score(a) - score(b) for a, b in pairs_of(answers, count=count, seed=seed)]


def test_two_calibrated_labelers_agree_on_70_to_76_percent_of_a_large_fresh_sample():
    answers = BuiltSource(seed=3).sample_answers(400)
    temperature = calibrate_temperature(_diffs(tiny_score, answers, count=4000, seed=1))
    held_out = _diffs(tiny_score, BuiltSource(seed=4).sample_answers(400), count=20_000, seed=2)
    assert 0.70 <= simulated_agreement(held_out, temperature, random.Random(0)) <= 0.76


@pytest.mark.skipif(not HH_SAMPLE.is_file(), reason="the HH-RLHF sample lies beside the repository")
def test_the_rich_preference_calibrates_to_73_percent_on_hh_rlhf_answers():
    answers = HhSource(HH_SAMPLE).sample_answers(400)
    temperature = calibrate_temperature(_diffs(rich_score, answers, count=4000, seed=1))
    held_out = _diffs(rich_score, answers, count=20_000, seed=2)
    assert 0.70 <= simulated_agreement(held_out, temperature, random.Random(0)) <= 0.76


def test_calibration_finds_the_temperature_of_the_target_agreement():
    diffs = [0.1 * (i % 7) - 0.3 for i in range(700)] + [1.0] * 100
    temperature = calibrate_temperature(diffs, target=0.73)
    assert expected_agreement(diffs, temperature) == pytest.approx(0.73, abs=1e-6)
    assert expected_agreement(diffs, temperature * 2) < 0.73 < expected_agreement(diffs, temperature / 2)


def test_calibration_refuses_an_agreement_that_ties_make_unreachable():
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_temperature([0.0] * 60 + [1.0] * 40, target=0.73)  # at best 40 % + half of 60 % = 70 %


def test_a_ranking_orders_each_pair_as_bradley_terry_says():
    rng, scores, temperature = random.Random(7), [1.0, 0.4, 0.0, -0.5], 0.5
    trials = 20_000
    above = sum(order.index(0) < order.index(2) for order in (noisy_order(scores, temperature, rng) for _ in range(trials)))
    assert above / trials == pytest.approx(preference_probability(1.0, temperature), abs=0.015)


def test_running_calibration_holds_the_target_as_the_answers_get_easier():
    calibration = RunningCalibration(initial=1.0, target=0.73, window=180)
    rng = random.Random(0)
    temperatures = []
    for spread in (0.1, 2.0):  # gibberish first (small differences), then a trained policy's answers
        for _ in range(60):
            calibration.add([rng.uniform(0, spread) for _ in range(4)])
        assert calibration.agreement() == pytest.approx(0.73, abs=0.01)
        temperatures.append(calibration.temperature)
    assert temperatures[1] > 5 * temperatures[0]  # easier answers: a noisier labeler for the same agreement
