"""Labeler figures and project quality: agreement with consensus, gold accuracy, time, alpha."""

import pytest

from annotation.models import Role
from ranking.selectors import labeler_stats, project_ranking_quality
from ranking.services.agreement import krippendorff_alpha_ordinal
from ranking.services.leasing import ranking_task_skip
from ranking.services.orderings import ordering_fractional_ranks
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import ranking_task_gold_set
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(project, make_member):
    """Three careful labelers and one who ranks backwards, on three tasks; one gold task."""
    project.rankings_per_task = 4
    project.save()
    careful = [make_member(project, username=f"careful{i}") for i in range(3)]
    careless = make_member(project, username="careless")
    orders = []
    for _number in range(3):
        task = RankingTaskFactory(project=project, answers=3)
        a, b, c = response_ids(task)
        for index, labeler in enumerate(careful):
            ranking_submit(task=task, labeler=labeler, order=[[a], [b], [c]], time_spent_ms=10_000 * (index + 1))
        ranking_submit(task=task, labeler=careless, order=[[c], [b], [a]], time_spent_ms=1_000, all_bad=True,
                       flags={str(a): ["harmful"]})
        orders.append(([[a], [b], [c]],) * 3 + ([[c], [b], [a]],))
    gold = RankingTaskFactory(project=project, answers=3)
    a, b, c = response_ids(gold)
    ranking_task_gold_set(task=gold, order=[[a], [b], [c]])
    ranking_submit(task=gold, labeler=careful[0], order=[[a], [b], [c]], time_spent_ms=20_000)
    ranking_submit(task=gold, labeler=careless, order=[[b], [a], [c]], time_spent_ms=1_000)
    ranking_task_skip(task=RankingTaskFactory(project=project), labeler=careless)
    return {"careful": careful, "careless": careless, "orders": orders, "gold_orders": ([[a], [b], [c]], [[b], [a], [c]])}


def test_agreement_is_with_the_consensus_of_the_others(project, team):
    # careful labeler: the others are 2 x a>b>c and 1 x c>b>a -> consensus a>b>c -> tau 1 on each task.
    # careless: the others are 3 x a>b>c -> consensus a>b>c; c>b>a against it -> tau -1.
    careful = labeler_stats(project=project, labeler=team["careful"][1])
    careless = labeler_stats(project=project, labeler=team["careless"])
    assert careful.agreement == 1.0 and careful.agreement_tasks == 3
    assert careless.agreement == -1.0 and careless.agreement_tasks == 3


def test_gold_accuracy_time_skips_and_all_bad(project, team):
    # careless on gold a>b>c ranked b>a>c: pairs ab miss, ac hit, bc hit -> 2/3
    careless = labeler_stats(project=project, labeler=team["careless"])
    assert careless.gold_accuracy == pytest.approx(2 / 3) and careless.gold_tasks == 1
    assert careless.ranked == 4 and careless.skipped == 1 and careless.all_bad == 3
    assert careless.median_time_ms == 1000
    # three tasks are too few to call its agreement low (see test_quality_agreement): the other checks flag it
    assert careless.agreement_check == "not enough data"
    assert careless.warnings == ["misses gold", "very fast"]
    first = labeler_stats(project=project, labeler=team["careful"][0])
    assert first.gold_accuracy == 1.0 and first.median_time_ms == 10_000 and first.warnings == []


def test_quality_lists_careless_labelers_first_with_project_alpha(project, team):
    quality = project_ranking_quality(project=project)
    assert [row.username for row in quality.labelers] == ["careless", "careful0", "careful1", "careful2"]
    units = []
    for orders in team["orders"]:
        ranks = [ordering_fractional_ranks(order) for order in orders]
        units += [[rank[item] for rank in ranks] for item in ranks[0]]
    ranks = [ordering_fractional_ranks(order) for order in team["gold_orders"]]
    units += [[rank[item] for rank in ranks] for item in ranks[0]]
    assert quality.alpha == pytest.approx(krippendorff_alpha_ordinal(units))
    assert quality.rankings == 14
    assert quality.counts["complete"] == 3 and quality.counts["gold"] == 1
    assert quality.flags == [("harmful", "Harmful", 3)]
    # 3 x a>b>c + 1 x c>b>a: 6 tau pairs, 3 of +1 and 3 of -1 -> mean 0 on each task
    assert [t.agreement for t in quality.disagreements][:3] == [0.0, 0.0, 0.0]


def test_a_labeler_with_nothing_ranked_has_empty_stats(project, make_member):
    stats = labeler_stats(project=project, labeler=make_member(project, Role.LABELER))
    assert stats.ranked == 0 and stats.agreement is None and stats.gold_accuracy is None and stats.warnings == []
