"""Evaluations: held-out prompts, one sample run per model, evaluation tasks, pick-one-or-tie judgements that
never train anything, win rates and ratings, and the loop's minimum win rate before a promotion."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from annotation.models import Prompt
from annotation.services.dialogues import prompt_lease_next
from config.exceptions import ApplicationError
from ranking.models import Ranking, RankingTask, TaskPurpose, TaskSource, TaskStatus
from ranking.selectors import project_ranking_quality
from ranking.services.exports import preference_pairs
from ranking.services.leasing import ranking_task_lease_next
from ranking.services.rankings import ranking_submit
from ranking.services.tasks import ResponseSpec, ranking_task_create, ranking_task_gold_set
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import MembershipFactory, UserFactory
from tests.ranking.factories import RankingTaskFactory
from tests.training.evaluations import answer_of, evaluation_answered, judge, judge_all
from tests.training.factories import ModelVersionFactory, SamplingJobFactory, trained_model
from training.models import (
    Evaluation,
    EvaluationState,
    LoopPolicy,
    ModelKind,
    Promotion,
    RunKind,
    RunState,
    RunTrigger,
    SamplingJob,
    SnapshotKind,
    TrainingRun,
)
from training.selectors.evaluations import evaluation_progress, evaluation_results, project_evaluation_results
from training.selectors.loop import loop_status, prompts_left_for
from training.services.evaluations import evaluation_start
from training.services.loop import loop_step_start_now, loop_tick
from training.services.sampling import sampling_job_ingest_for_run
from training.services.snapshots import prompts_for_sampling, snapshot_build
from training.services.storage import data_path

pytestmark = pytest.mark.django_db


def _models(project, *names):
    return [ModelVersionFactory(project=project, kind=ModelKind.SFT, name=name) for name in names]


def _step(project, key):
    return next(step for step in loop_status(project=project).steps if step.key == key)


# ---- starting: held-out prompts, one sample run per model ----


def test_an_evaluation_holds_out_fresh_prompts_and_starts_one_sample_run_per_model(project, data_root):
    old, new = _models(project, "sft-v1", "sft-v2")
    held = PromptFactory(project=project, held_out=True)
    written = PromptFactory(project=project)
    DialogueFactory(project=project, prompt=written)  # has a demonstration: not fresh
    sampled = PromptFactory(project=project)
    RankingTaskFactory(project=project, prompt=sampled)  # sampled into a ranking task: not fresh
    inactive = PromptFactory(project=project, is_active=False)
    fresh = PromptFactory.create_batch(3, project=project)

    evaluation = evaluation_start(project=project, models=[new, old], num_prompts=3, config_overrides={"max_new_tokens": 16})

    # the held-out prompt first, then the two newest fresh prompts, held out from now on
    assert set(evaluation.prompts.all()) == {held, fresh[1], fresh[2]}
    assert set(Prompt.objects.filter(project=project, held_out=True)) == {held, fresh[1], fresh[2]}
    for prompt in (written, sampled, inactive, fresh[0]):
        prompt.refresh_from_db()
        assert not prompt.held_out
    runs = [entry.run for entry in evaluation.entries.order_by("position")]
    assert [run.input_model for run in runs] == [new, old]
    assert {run.kind for run in runs} == {RunKind.SAMPLE} and {run.state for run in runs} == {RunState.QUEUED}
    assert {run.snapshot_id for run in runs} == {evaluation.snapshot_id}
    assert [run.config["num_responses"] for run in runs] == [1, 1]
    assert runs[0].config["seed"] == runs[1].config["seed"] and runs[0].config["max_new_tokens"] == 16
    assert [run.dedup_key for run in runs] == [f"evaluation:{evaluation.pk}:{new.pk}", f"evaluation:{evaluation.pk}:{old.pk}"]

    snapshot = snapshot_build(snapshot=evaluation.snapshot)
    assert snapshot.kind == SnapshotKind.PROMPTS and snapshot.options["evaluation"] == evaluation.pk
    lines = [json.loads(line) for line in data_path(snapshot.file_path).read_text().splitlines()]
    assert [line["id"] for line in lines] == sorted([held.pk, fresh[1].pk, fresh[2].pk])
    assert evaluation_progress(evaluation=evaluation).state == EvaluationState.SAMPLING

    # a second evaluation judges on the same test set
    again = evaluation_start(project=project, models=[new, old], num_prompts=3)
    assert set(again.prompts.all()) == set(evaluation.prompts.all())


@pytest.mark.parametrize("case, message", [
    ("one model", "compares 2 to 9"),
    ("a model twice", "appear once"),
    ("a reward model", "reward model"),
    ("another project's model", "another project"),
])
def test_an_evaluation_refuses_models_it_cannot_compare(project, case, message):
    first, second = _models(project, "a", "b")
    PromptFactory(project=project)
    models = {
        "one model": [first],
        "a model twice": [first, first],
        "a reward model": [first, ModelVersionFactory(project=project, kind=ModelKind.REWARD)],
        "another project's model": [first, ModelVersionFactory(kind=ModelKind.SFT)],
    }[case]
    with pytest.raises(ApplicationError, match=message):
        evaluation_start(project=project, models=models, num_prompts=5)
    assert not Evaluation.objects.exists() and not TrainingRun.objects.exists()


def test_an_evaluation_without_a_prompt_to_judge_on_is_refused(project):
    DialogueFactory(project=project, prompt=PromptFactory(project=project))
    with pytest.raises(ApplicationError, match="No prompt to judge on"):
        evaluation_start(project=project, models=_models(project, "a", "b"), num_prompts=5)
    assert not Evaluation.objects.exists()


def test_held_out_prompts_are_never_sampled_trained_on_or_served_for_demonstrations(project):
    held = PromptFactory(project=project, held_out=True)
    model = ModelVersionFactory(project=project)
    assert list(prompts_for_sampling(project=project, until=timezone.now(), limit=None, not_sampled_by=None)) == []
    assert not prompts_left_for(project=project, model=model)
    labeler = UserFactory()
    MembershipFactory(project=project, user=labeler)
    assert prompt_lease_next(project=project, user=labeler) is None
    queued = PromptFactory(project=project)
    assert list(prompts_for_sampling(project=project, until=timezone.now(), limit=None, not_sampled_by=None)) == [queued]
    assert prompt_lease_next(project=project, user=labeler).dialogue.prompt == queued
    assert held.dialogues.count() == 0


# ---- the answers become evaluation tasks once every model has answered ----


def _answers(run, texts: dict[int, str]) -> None:
    folder = data_path(run.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [{"id": pk, "context": [{"role": "user", "content": "?"}], "responses": [{"content": text}]}
             for pk, text in texts.items()]
    (folder / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_the_last_model_to_answer_turns_the_answers_into_evaluation_tasks_once(project, data_root):
    first, second = _models(project, "sft-v1", "sft-v2")
    prompts = PromptFactory.create_batch(3, project=project)
    evaluation = evaluation_start(project=project, models=[second, first], num_prompts=3)
    run_second, run_first = [entry.run for entry in evaluation.entries.order_by("position")]
    _answers(run_second, {prompts[0].pk: "Two says A", prompts[1].pk: "Two says B", prompts[2].pk: "Same"})
    _answers(run_first, {prompts[0].pk: "One says A", prompts[1].pk: "  ", prompts[2].pk: "Same"})

    # the first run to succeed waits for the other
    assert sampling_job_ingest_for_run(run=run_second, folder=data_path(run_second.run_dir)) is None
    TrainingRun.objects.filter(pk=run_second.pk).update(state=RunState.SUCCEEDED)
    evaluation.refresh_from_db()
    assert evaluation.ingested_at is None and not RankingTask.objects.exists()

    sampling_job_ingest_for_run(run=run_first, folder=data_path(run_first.run_dir))
    evaluation.refresh_from_db()
    # prompt 1: one model said nothing, so nothing to compare; identical answers are judged (a likely tie)
    assert (evaluation.tasks_created, evaluation.prompts_skipped) == (2, 1)
    tasks = list(evaluation.tasks.order_by("prompt_id"))
    assert [task.prompt for task in tasks] == [prompts[0], prompts[2]]
    for task in tasks:
        assert (task.purpose, task.source, task.is_gold) == (TaskPurpose.EVALUATION, TaskSource.EVALUATION, False)
        assert task.context == [{"role": "user", "content": task.prompt.text}]
        assert [(r.generator, r.position) for r in task.responses.order_by("position")] == [("sft-v2", 0), ("sft-v1", 1)]
    assert tasks[0].responses.get(generator="sft-v1").content == "One says A"
    assert evaluation_progress(evaluation=evaluation).state == EvaluationState.JUDGING

    sampling_job_ingest_for_run(run=run_first, folder=data_path(run_first.run_dir))  # settled twice: nothing new
    assert RankingTask.objects.count() == 2


def test_an_evaluation_whose_run_failed_says_so_and_one_with_nothing_to_judge_fails(project, data_root):
    first, second = _models(project, "sft-v1", "sft-v2")
    PromptFactory.create_batch(2, project=project)
    evaluation = evaluation_start(project=project, models=[first, second], num_prompts=2)
    run = evaluation.entries.get(model=first).run
    TrainingRun.objects.filter(pk=run.pk).update(state=RunState.FAILED, error="CUDA out of memory")
    progress = evaluation_progress(evaluation=evaluation)
    assert progress.state == EvaluationState.FAILED and progress.error == f"run {run.pk} (sft-v1) failed: CUDA out of memory"

    TrainingRun.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED)
    other = evaluation.entries.get(model=second).run
    sampling_job_ingest_for_run(run=other, folder=data_path(other.run_dir))  # no samples.jsonl anywhere
    evaluation.refresh_from_db()
    progress = evaluation_progress(evaluation=evaluation)
    assert progress.state == EvaluationState.FAILED and "nothing to judge" in progress.error


# ---- judging: pick one or tie, through the normal ranking submission ----


def test_an_evaluation_judgement_picks_one_answer_or_ties_them_all(project):
    a, b, c = _models(project, "a", "b", "c")
    evaluation = evaluation_answered(project, [a, b, c], prompts=1)
    task = evaluation.tasks.get()
    ids = {model: answer_of(task, model) for model in (a, b, c)}
    labeler = UserFactory()
    MembershipFactory(project=project, user=labeler)
    for refused in ([[ids[a]], [ids[b]], [ids[c]]], [[ids[a], ids[b]], [ids[c]]]):
        with pytest.raises(ApplicationError, match="evaluation task: pick the one best answer"):
            ranking_submit(task=task, labeler=labeler, order=refused)
    ranking_submit(task=task, labeler=labeler, order=[[ids[b]], [ids[a], ids[c]]])
    judge(task, winner=None)
    assert [ranking.order for ranking in task.rankings.order_by("pk")] == [
        [[ids[b]], sorted([ids[a], ids[c]])], [sorted(ids.values())]
    ]
    # an ordinary ranking task still takes any ranking
    ordinary = RankingTaskFactory(project=project, answers=3)
    answers = list(ordinary.responses.values_list("pk", flat=True))
    ranking_submit(task=ordinary, labeler=labeler, order=[[answers[0]], [answers[1]], [answers[2]]])


def test_an_evaluation_task_is_never_gold_and_is_served_before_ranking_tasks(project):
    a, b = _models(project, "a", "b")
    RankingTaskFactory(project=project, answers=2)
    evaluation = evaluation_answered(project, [a, b], prompts=1)
    task = evaluation.tasks.get()
    with pytest.raises(ApplicationError, match="can't be gold"):
        ranking_task_gold_set(task=task, order=[[answer_of(task, a)], [answer_of(task, b)]])
    labeler = UserFactory()
    MembershipFactory(project=project, user=labeler)
    assert ranking_task_lease_next(project=project, labeler=labeler).task == task


# ---- judgements never feed reward training or the ranking quality figures ----


def test_judgements_are_left_out_of_preference_pairs_and_the_loops_rankings_threshold(project, data_root):
    a, b = _models(project, "a", "b")
    evaluation = evaluation_answered(project, [a, b], prompts=2)
    judge_all(evaluation, [a, b, None])
    assert Ranking.objects.filter(task__project=project).count() == 3
    assert list(preference_pairs(project=project)) == []
    ordinary = ranking_task_create(project=project, context=[{"role": "user", "content": "Hi?"}],
                                   responses=[ResponseSpec("Hello!", "m"), ResponseSpec("Go away.", "m")])
    labeler = UserFactory()
    MembershipFactory(project=project, user=labeler)
    best, worst = ordinary.responses.order_by("position").values_list("pk", flat=True)
    ranking_submit(task=ordinary, labeler=labeler, order=[[best], [worst]])
    pairs = list(preference_pairs(project=project))
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [("Hello!", "Go away.")]
    assert _step(project, "preferences").have == 1  # one ranking, not four
    # nor do open evaluation tasks keep the loop from sampling more ranking tasks: 1 open ranking task
    LoopPolicy.objects.create(project=project, base_model=a, queue_low_water=2)
    SamplingJobFactory(project=project, model=a)
    PromptFactory(project=project)
    step = _step(project, "sample")
    assert step.ready and step.waiting_for == "1 open ranking tasks, below 2: sample more"


def test_judgements_count_as_work_but_not_toward_agreement_or_alpha(project):
    a, b = _models(project, "a", "b")
    evaluation = evaluation_answered(project, [a, b], prompts=1)
    labelers = [UserFactory() for _ in range(3)]
    for labeler in labelers:
        MembershipFactory(project=project, user=labeler)
    task = evaluation.tasks.get()
    for labeler, winner in zip(labelers, [a, b, a], strict=True):
        judge(task, winner=winner, labeler=labeler)
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETE
    quality = project_ranking_quality(project=project)
    assert quality.alpha is None and quality.mean_task_agreement is None and quality.disagreements == []
    assert {figure.ranked for figure in quality.labelers} == {1}
    assert {figure.agreement for figure in quality.labelers} == {None}


# ---- results: pairwise win rates with Wilson intervals, Bradley–Terry ratings ----


def test_results_count_wins_losses_and_ties_per_pair_with_a_wilson_interval_and_ratings(project):
    new, old = _models(project, "sft-v2", "sft-v1")
    project.rankings_per_task = 5
    project.save()
    evaluation = evaluation_answered(project, [new, old], prompts=2)
    # 6 wins, 2 losses, 2 ties for the new model: (6 + 1) / 10 = 0.7, Wilson (0.3968, 0.8922)
    judge_all(evaluation, [new, new, new, new, new, old, new, old, None, None])
    progress = evaluation_progress(evaluation=evaluation)
    assert (progress.state, progress.judgements, progress.judgements_needed) == (EvaluationState.COMPLETE, 10, 10)
    results = evaluation_results(evaluation=evaluation)
    [pair] = results.pairs
    assert (pair.model_a, pair.model_b, pair.wins_a, pair.wins_b, pair.ties) == (new, old, 6, 2, 2)
    assert pair.win_rate == pytest.approx(0.7)
    assert (pair.low, pair.high) == (pytest.approx(0.3968, abs=1e-4), pytest.approx(0.8922, abs=1e-4))
    assert results.pair(old, new).win_rate == pytest.approx(0.3)
    [first, second] = results.ratings
    assert first.model == new and second.model == old
    # one virtual tie: (7 + 0.5) / (3 + 0.5) → 400 · log10(15/7) = 132.4 points apart
    assert first.rating.rating - second.rating.rating == pytest.approx(132.40, abs=0.01)
    assert first.rating.low < first.rating.rating < first.rating.high


def test_project_ratings_chain_every_evaluation_and_the_model_detail_shows_them(project):
    v1, v2, v3 = _models(project, "v1", "v2", "v3")
    judge_all(evaluation_answered(project, [v2, v1], prompts=3), [v2, v2, v2, v2, v1, None])
    judge_all(evaluation_answered(project, [v3, v2], prompts=3), [v3, v3, v3, v2, None, None])
    results = project_evaluation_results(project=project)
    assert [item.model for item in results.ratings] == [v3, v2, v1]
    assert results.groups == 1
    record = results.opponents_of(v2)
    assert [(r.model_b, r.wins_a, r.wins_b, r.ties) for r in record] == [(v3, 1, 3, 2), (v1, 4, 1, 1)]


# ---- the loop: a minimum win rate over the current policy before an automatic promotion ----


@pytest.fixture
def gated(project, data_root):
    """A loop whose current policy is sft-v1, a newer trained policy ppo-v2 waiting, and a 50 % minimum."""
    base = ModelVersionFactory(project=project, name="base")
    current = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-v1", parent=base)
    candidate = trained_model(project, kind=ModelKind.POLICY, run_kind=RunKind.PPO, name="ppo-v2", parent=current)
    policy = LoopPolicy.objects.create(project=project, enabled=True, base_model=base, current_policy=current,
                                       auto_promote=True, min_win_rate_to_promote=0.5, evaluation_prompts=4,
                                       sft_min_new_demonstrations=1000, reward_min_new_rankings=1000,
                                       queue_low_water=0)
    PromptFactory.create_batch(5, project=project)
    return policy, candidate, current


def test_the_loop_has_a_new_policy_judged_against_the_current_one_before_promoting_it(project, gated):
    policy, candidate, current = gated
    step = _step(project, "promote")
    assert step.ready and step.waiting_for == (
        "people judge ppo-v2 against sft-v1 on 4 held-out prompts before it is promoted"
    )
    started = loop_tick(project=project)
    assert any(note.startswith("evaluation") and "of ppo-v2 against sft-v1" in note for note in started)
    evaluation = Evaluation.objects.get()
    assert evaluation.trigger == RunTrigger.LOOP and evaluation.prompts.count() == 4
    assert [entry.model for entry in evaluation.entries.order_by("position")] == [candidate, current]
    assert {entry.run.trigger for entry in evaluation.entries.all()} == {RunTrigger.LOOP}
    step = _step(project, "promote")
    assert not step.ready and step.active_run is not None and "the models answer" in step.waiting_for
    # an evaluation's runs are not the sample step's (which sampled the one prompt left for ranking tasks)
    assert _step(project, "sample").active_run == SamplingJob.objects.get().run
    loop_tick(project=project)
    assert Evaluation.objects.count() == 1 and not Promotion.objects.exists()


def _judged_gate(project, candidate, current, verdicts):
    project.rankings_per_task = 3
    project.save()
    evaluation = evaluation_answered(project, [candidate, current], prompts=4, trigger=RunTrigger.LOOP)
    judge_all(evaluation, verdicts)
    return evaluation


def test_a_policy_that_clearly_wins_is_promoted_with_the_verdict_as_its_reason(project, gated):
    policy, candidate, current = gated
    evaluation = _judged_gate(project, candidate, current, [candidate] * 6)
    step = _step(project, "promote")
    assert not step.ready and (step.have, step.need) == (6, 12)
    assert step.waiting_for.startswith(f"evaluation #{evaluation.pk} of ppo-v2 against sft-v1: 6 of 12 judgements; "
                                       "ppo-v2's win rate 100.0 % (95 % CI 61.0 %–100.0 %)")
    # 6 more: 5 wins and a tie → (11 + 0.5) / 12 = 95.8 %
    remaining = [task for task in evaluation.tasks.order_by("pk") for _ in range(3 - task.rankings.count())]
    for index, task in enumerate(remaining):
        judge(task, winner=None if index == len(remaining) - 1 else candidate)
    step = _step(project, "promote")
    assert step.ready, step.waiting_for
    assert step.waiting_for.startswith("ppo-v2 won 95.8 % (95 % CI")
    loop_tick(project=project)
    policy.refresh_from_db()
    assert policy.current_policy == candidate
    promotion = Promotion.objects.get(model=candidate)
    assert promotion.automatic and promotion.reason.startswith(f"evaluation #{evaluation.pk}: won 95.8 %")
    assert promotion.reason.endswith("against sft-v1, at least 50.0 % required")


def test_a_policy_that_does_not_clearly_win_waits_with_the_reason_in_the_loop_status(project, gated):
    policy, candidate, current = gated
    # 7 wins, 3 losses, 2 ties: (7 + 1) / 12 = 66.7 %, but the interval reaches down to 39.1 %
    _judged_gate(project, candidate, current, [candidate] * 7 + [current] * 3 + [None] * 2)
    step = _step(project, "promote")
    assert not step.ready
    assert step.waiting_for == (
        "ppo-v2 is not promoted: its win rate over sft-v1 is 66.7 % (95 % CI 39.1 %–86.2 %), and the interval's "
        f"low end is below the 50.0 % required (evaluation #{Evaluation.objects.get().pk})"
    )
    loop_tick(project=project)
    policy.refresh_from_db()
    assert policy.current_policy == current and not Promotion.objects.exists()
    assert Evaluation.objects.count() == 1  # it waits for a newer candidate; it does not evaluate again
    # a person may still promote it: "run this step now" promotes at once
    manager = UserFactory()
    assert loop_step_start_now(project=project, key="promote", started_by=manager) == "promoted ppo-v2"
    assert Promotion.objects.get().promoted_by == manager


def test_without_a_minimum_win_rate_the_loop_promotes_as_before(project, gated):
    policy, candidate, _ = gated
    LoopPolicy.objects.filter(pk=policy.pk).update(min_win_rate_to_promote=None)
    assert _step(project, "promote").waiting_for == "ppo-v2 is promoted automatically"
    loop_tick(project=project)
    assert not Evaluation.objects.exists() and Promotion.objects.get().model == candidate
