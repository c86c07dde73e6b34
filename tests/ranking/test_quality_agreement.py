"""The quality page's "low agreement" flag is a one-sided test against the team, not a fixed bar.

A team is simulated with constructed rankings: each answer has a true quality, a careful labeler
ranks by quality plus Thurstone noise tuned so that two careful labelers agree on ~73 % of pairs
(InstructGPT's labelers agreed on 72.6 %), a careless one ranks at random. Three labelers rank each
task (K = 4), in rotation.
"""

import itertools
import random

import pytest

from ranking.selectors import (
    LOW,
    NOT_ENOUGH_DATA,
    OK,
    AgreementTotals,
    agreement_check,
    labeler_stats,
    project_ranking_quality,
)
from ranking.services.rankings import ranking_submit
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db

NOISE = 0.72  # Thurstone noise per labeler and answer (true qualities ~ N(0, 1)): 73 % pairwise agreement
ANSWERS = 4


def _team_ranks(project, make_member, *, tasks: int, seed: int = 7):
    """Five careful labelers and one who ranks at random; return (careful, careless, careful pair agreement)."""
    project.rankings_per_task = 3
    project.save()
    careful = [make_member(project, username=f"careful{i}") for i in range(5)]
    careless = make_member(project, username="careless")
    team = [*careful, careless]
    rng = random.Random(seed)
    agreed = compared = 0
    for number in range(tasks):
        task = RankingTaskFactory(project=project, answers=ANSWERS)
        ids = response_ids(task)
        quality = {answer: rng.gauss(0, 1) for answer in ids}
        seen = {}
        for labeler in (team[(number + k) % len(team)] for k in range(3)):
            if labeler is careless:
                order = rng.sample(ids, len(ids))
            else:
                order = sorted(ids, key=lambda answer: -(quality[answer] + rng.gauss(0, NOISE)))
                seen[labeler.pk] = {answer: position for position, answer in enumerate(order)}
            ranking_submit(task=task, labeler=labeler, order=[[answer] for answer in order], time_spent_ms=30_000)
        for first, second in itertools.combinations(seen.values(), 2):
            for a, b in itertools.combinations(ids, 2):
                agreed += (first[a] < first[b]) == (second[a] < second[b])
                compared += 1
    return careful, careless, agreed / compared


def test_a_random_labeler_is_flagged_and_careful_ones_at_73_percent_agreement_are_not(project, make_member):
    careful, careless, pair_agreement = _team_ranks(project, make_member, tasks=150)
    assert 0.68 < pair_agreement < 0.78  # the constructed team is as noisy as InstructGPT's
    quality = project_ranking_quality(project=project)
    rows = {row.username: row for row in quality.labelers}
    assert rows["careless"].agreement_check == LOW and "low agreement" in rows["careless"].warnings
    assert quality.labelers[0].username == "careless"
    for labeler in careful:
        row = rows[labeler.username]
        assert row.agreement_check == OK and row.warnings == [], (row.username, row.agreement)
    # "My stats" judges against the same team
    assert labeler_stats(project=project, labeler=careless).agreement_check == LOW
    assert labeler_stats(project=project, labeler=careful[0]).agreement_check == OK


def test_too_few_overlapping_tasks_say_not_enough_data_instead_of_a_flag(project, make_member):
    careful, careless, _ = _team_ranks(project, make_member, tasks=12)
    rows = {row.username: row for row in project_ranking_quality(project=project).labelers}
    assert rows["careless"].agreement_tasks < 10
    assert rows["careless"].agreement_check == NOT_ENOUGH_DATA and "low agreement" not in rows["careless"].warnings
    assert all(rows[labeler.username].agreement_check == NOT_ENOUGH_DATA for labeler in careful)


def _totals(values: list[float]) -> AgreementTotals:
    return AgreementTotals(len(values), sum(values), sum(v * v for v in values))


def test_the_rule_compares_with_half_the_others_mean_given_the_spread():
    team = _totals([0.6, 0.2, 1.0, 0.4] * 50)  # the others: mean 0.55, so the bar is 0.275
    # a labeler at chance over 24 tasks (sd ~0.33): upper bound ~0.11 < 0.275
    assert agreement_check(own=_totals([0.5, -0.5, 0.2, -0.2, 0.0, 0.0] * 4), peers=team) == LOW
    # the same over 6 tasks could be luck: not enough data
    assert agreement_check(own=_totals([0.5, -0.5, 0.2, -0.2, 0.0, 0.0]), peers=team) == NOT_ENOUGH_DATA
    # spread too wide to tell chance from the bar, and not clearly above it either
    assert agreement_check(own=_totals([1.0, -1.0] * 6), peers=team) == NOT_ENOUGH_DATA
    # ... but clearly above it is fine on the same few tasks
    assert agreement_check(own=_totals([1.0] * 12), peers=_totals([1.0, -0.4] * 50)) == OK
    # noisier than the others but nearer the team than chance (mean 0.3 over 40 tasks): not flagged
    assert agreement_check(own=_totals([0.8, -0.2, 0.6, 0.0] * 10), peers=team) == OK
    # ranking backwards is flagged, however consistent (the others' spread is used, not a spread of 0)
    assert agreement_check(own=_totals([-1.0] * 10), peers=team) == LOW
    # a team that agrees no better than chance holds nobody to a bar
    assert agreement_check(own=_totals([0.0] * 50), peers=_totals([0.1, -0.1] * 50)) == OK
    assert agreement_check(own=AgreementTotals(), peers=team) is None
