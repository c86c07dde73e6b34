"""Reads of evaluations: who may see them, where each stands, what people judged (win rates with 95 %
Wilson intervals, Elo-scaled Bradley–Terry ratings with bootstrap intervals) and the loop's promotion gate.

A judgement of an evaluation task is a ranking ``[[best], [the others…]]`` (the best beats each other
answer) or ``[[all]]`` (every pair ties); each answer's generator names its model version. Win rates
count a tie as half a win: (wins + ties / 2) / judgements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404

from annotation.models import Project
from annotation.selectors import user_manages_project_data
from config.ids import parse_object_id
from ranking.models import Ranking, RankingTask, TaskStatus
from training.models import (
    Evaluation,
    EvaluationEntry,
    EvaluationState,
    LoopPolicy,
    ModelVersion,
    RunState,
    TrainingRun,
)
from training.services.ratings import (
    Outcome,
    Rating,
    judgement_outcomes,
    pair_counts,
    ratings_with_intervals,
    wilson_interval,
    win_rate,
)

# ---- who may see what: as every training object, managers of the project and its ML engineers ----


def evaluation_list(*, user: AbstractBaseUser, project: Project | None = None) -> QuerySet[Evaluation]:
    """Return the evaluations ``user`` may see (of ``project`` only, when given), newest first."""
    from training.selectors.access import projects_for_training

    evaluations = Evaluation.objects.all()
    if project is not None:
        evaluations = evaluations.filter(project=project)
    else:
        evaluations = evaluations.filter(project__in=projects_for_training(user=user))
    return _with_entries(evaluations).order_by("-id")


def evaluation_get_for_user(*, user: AbstractBaseUser, evaluation_id) -> Evaluation:
    evaluation = _with_entries(Evaluation.objects.filter(pk=parse_object_id(evaluation_id))).first()
    if evaluation is None or not user_manages_project_data(user=user, project=evaluation.project):
        raise Http404("No such evaluation.")
    return evaluation


def _with_entries(evaluations: QuerySet[Evaluation]) -> QuerySet[Evaluation]:
    entries = EvaluationEntry.objects.select_related("model", "run").order_by("position")
    return evaluations.select_related("project", "created_by").prefetch_related(
        Prefetch("entries", queryset=entries)
    ).annotate(prompt_count=Count("prompts", distinct=True))


# ---- where an evaluation stands ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationProgress:
    state: str  # EvaluationState
    error: str
    tasks: int  # evaluation tasks still served (disabled ones left out)
    tasks_open: int
    judgements: int
    judgements_needed: int  # tasks × the project's rankings per task
    active_run: TrainingRun | None  # a run still sampling

    @property
    def state_label(self) -> str:
        return EvaluationState(self.state).label

    @property
    def fraction(self) -> float | None:
        """Judgements made of those needed, 0 to 1."""
        return min(1.0, self.judgements / self.judgements_needed) if self.judgements_needed else None


def evaluation_progress(*, evaluation: Evaluation) -> EvaluationProgress:
    """Say where the evaluation stands: sampling (its runs), judging (open tasks), complete or failed."""
    entries = list(evaluation.entries.all())
    if evaluation.ingested_at is None:
        broken = next((e for e in entries if e.run.state in (RunState.FAILED, RunState.CANCELLED)), None)
        if broken is not None:
            error = f"run {broken.run.pk} ({broken.model.name}) {broken.run.state}"
            error += f": {broken.run.error}" if broken.run.error else ""
            return EvaluationProgress(EvaluationState.FAILED, error, 0, 0, 0, 0, None)
        active = next((e.run for e in entries if e.run.state in RunState.active()), None)
        return EvaluationProgress(EvaluationState.SAMPLING, "", 0, 0, 0, 0, active)
    if evaluation.error:
        return EvaluationProgress(EvaluationState.FAILED, evaluation.error, 0, 0, 0, 0, None)
    tasks = evaluation.tasks.exclude(status=TaskStatus.DISABLED)
    counts = tasks.aggregate(total=Count("pk"), open=Count("pk", filter=Q(status=TaskStatus.OPEN)))
    judgements = Ranking.objects.filter(task__in=tasks.values("pk")).count()
    state = EvaluationState.JUDGING if counts["open"] else EvaluationState.COMPLETE
    return EvaluationProgress(
        state, "", counts["total"], counts["open"], judgements,
        counts["total"] * evaluation.project.rankings_per_task, None,
    )


# ---- what people judged ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairResult:
    """How often ``model_a`` beat ``model_b``, lost to it or tied, and a's win rate with its 95 % interval."""

    model_a: ModelVersion
    model_b: ModelVersion
    wins_a: int
    wins_b: int
    ties: int

    @property
    def judgements(self) -> int:
        return self.wins_a + self.wins_b + self.ties

    @property
    def win_rate(self) -> float | None:
        """a's win rate over b, a tie counting half a win."""
        return win_rate(wins=self.wins_a, losses=self.wins_b, ties=self.ties)

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(successes=self.wins_a + self.ties / 2, n=self.judgements)

    @property
    def low(self) -> float | None:
        return self.interval[0] if self.interval else None

    @property
    def high(self) -> float | None:
        return self.interval[1] if self.interval else None

    @property
    def spread(self) -> float | None:
        """The interval's width (for drawing it)."""
        return self.interval[1] - self.interval[0] if self.interval else None

    def flipped(self) -> PairResult:
        return PairResult(self.model_b, self.model_a, self.wins_b, self.wins_a, self.ties)


@dataclass(frozen=True)
class ModelRating:
    model: ModelVersion
    rating: Rating


@dataclass
class JudgedResults:
    pairs: list[PairResult]  # every compared pair once
    ratings: list[ModelRating] = field(default_factory=list)  # best first
    judgements: int = 0  # pairwise judgements counted

    @property
    def groups(self) -> int:
        """How many groups of models the ratings fall in (ratings compare only within one)."""
        return len({item.rating.group for item in self.ratings})

    def pair(self, model_a: ModelVersion, model_b: ModelVersion) -> PairResult | None:
        """Return the result of a against b (whichever way round it is stored), or None if never compared."""
        for result in self.pairs:
            if (result.model_a.pk, result.model_b.pk) == (model_a.pk, model_b.pk):
                return result
            if (result.model_a.pk, result.model_b.pk) == (model_b.pk, model_a.pk):
                return result.flipped()
        return None

    def rating_of(self, model: ModelVersion) -> Rating | None:
        return next((item.rating for item in self.ratings if item.model.pk == model.pk), None)

    def opponents_of(self, model: ModelVersion) -> list[PairResult]:
        """The model's record against each model it was compared with, from its side."""
        found = [result.flipped() if result.model_b.pk == model.pk else result
                 for result in self.pairs if model.pk in (result.model_a.pk, result.model_b.pk)]
        return sorted(found, key=lambda result: -result.model_b.pk)


def _judgement_clusters(tasks: QuerySet[RankingTask], *, model_by_name: dict[str, int]) -> list[list[Outcome]]:
    """Return each task's judgements as pairwise outcomes of model ids (one list per prompt, for the bootstrap)."""
    clusters = []
    tasks = tasks.exclude(status=TaskStatus.DISABLED).prefetch_related(
        "responses", Prefetch("rankings", queryset=Ranking.objects.order_by("pk"))
    ).order_by("pk")
    for task in tasks:
        model_of = {response.pk: model_by_name.get(response.generator) for response in task.responses.all()}
        cluster = [outcome for ranking in task.rankings.all()
                   for outcome in judgement_outcomes(ranking.order, model_of=model_of)]
        if cluster:
            clusters.append(cluster)
    return clusters


def _results(clusters: list[list[Outcome]], *, models: dict[int, ModelVersion], order: list[int],
             ratings: bool) -> JudgedResults:
    """Tally the outcomes per pair (a before b in ``order``) and, if asked, fit the ratings."""
    position = {pk: index for index, pk in enumerate(order)}
    pairs = []
    for (a, b), (wins_a, wins_b, ties) in pair_counts(o for cluster in clusters for o in cluster).items():
        if position.get(a, a) > position.get(b, b):
            a, b, wins_a, wins_b = b, a, wins_b, wins_a
        pairs.append(PairResult(models[a], models[b], int(wins_a), int(wins_b), int(ties)))
    pairs.sort(key=lambda result: (position.get(result.model_a.pk, 0), position.get(result.model_b.pk, 0)))
    results = JudgedResults(pairs=pairs, judgements=sum(len(cluster) for cluster in clusters))
    if ratings:
        fitted = ratings_with_intervals(clusters)
        results.ratings = sorted(
            (ModelRating(models[pk], rating) for pk, rating in fitted.items()), key=lambda item: -item.rating.rating
        )
    return results


def evaluation_results(*, evaluation: Evaluation, ratings: bool = True) -> JudgedResults:
    """Return the evaluation's pairwise wins, losses and ties (in the order its models were given) and ratings."""
    models = {entry.model_id: entry.model for entry in evaluation.entries.all()}
    clusters = _judgement_clusters(
        evaluation.tasks.all(), model_by_name={model.name: pk for pk, model in models.items()}
    )
    order = [entry.model_id for entry in evaluation.entries.all()]
    return _results(clusters, models=models, order=order, ratings=ratings)


def project_evaluation_results(*, project: Project) -> JudgedResults:
    """Return every judgement of the project's evaluations together: one rating per model version judged.

    Models judged against each other, directly or through others, share a scale (a ``group``): the
    loop's evaluations of each new policy against the current one chain every policy into one group.
    """
    models = {model.pk: model for model in ModelVersion.objects.filter(project=project)}
    tasks = RankingTask.objects.filter(project=project, evaluations__project=project).distinct()
    clusters = _judgement_clusters(tasks, model_by_name={model.name: pk for pk, model in models.items()})
    return _results(clusters, models=models, order=sorted(models, reverse=True), ratings=True)


# ---- the loop's promotion gate -----------------------------------------------------------------------------


def evaluation_between(*, project: Project, model_a: ModelVersion, model_b: ModelVersion) -> Evaluation | None:
    """Return the newest evaluation of exactly these two models, if any."""
    of_two = Evaluation.objects.filter(project=project).annotate(model_count=Count("entries")).filter(model_count=2)
    return _with_entries(
        Evaluation.objects.filter(pk__in=of_two.values("pk"), entries__model=model_a).filter(entries__model=model_b)
    ).order_by("-id").first()


@dataclass(frozen=True)
class PromotionGate:
    """What the loop's promote step does about a candidate when the policy asks for a minimum win rate."""

    ready: bool
    waiting_for: str
    start_evaluation: bool = False  # ready to start the evaluation (else, when ready: promote)
    reason: str = ""  # the promotion's recorded reason
    have: int | None = None
    need: int | None = None
    active_run: TrainingRun | None = None
    last_error: str = ""


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def promotion_gate(*, policy: LoopPolicy, candidate: ModelVersion, baseline: ModelVersion) -> PromotionGate:
    """Decide whether the candidate may be promoted over the baseline, by people's judgements of the two.

    It may when an evaluation of exactly the two is complete and the low end of the 95 % Wilson interval
    of the candidate's win rate (ties half) reaches ``policy.min_win_rate_to_promote``; without such an
    evaluation, one is to be started; while it runs, or when the candidate falls short, it waits and says why.
    """
    threshold = policy.min_win_rate_to_promote
    evaluation = evaluation_between(project=policy.project, model_a=candidate, model_b=baseline)
    if evaluation is None:
        return PromotionGate(
            ready=True, start_evaluation=True,
            waiting_for=f"people judge {candidate.name} against {baseline.name} on {policy.evaluation_prompts} "
                        f"held-out prompts before it is promoted",
        )
    progress = evaluation_progress(evaluation=evaluation)
    where = f"evaluation #{evaluation.pk} of {candidate.name} against {baseline.name}"
    if progress.state == EvaluationState.SAMPLING:
        return PromotionGate(ready=False, waiting_for=f"{where}: the models answer the held-out prompts",
                             active_run=progress.active_run)
    if progress.state == EvaluationState.FAILED:
        return PromotionGate(
            ready=False, last_error=f"{where} failed: {progress.error}",
            waiting_for=f"{where} failed; start another evaluation of the two, or promote {candidate.name} by hand",
        )
    pair = evaluation_results(evaluation=evaluation, ratings=False).pair(candidate, baseline)
    so_far = ""
    if pair is not None and pair.judgements:
        so_far = (f"; {candidate.name}'s win rate {_percent(pair.win_rate)} "
                  f"(95 % CI {_percent(pair.low)}–{_percent(pair.high)})")
    if progress.state == EvaluationState.JUDGING:
        return PromotionGate(
            ready=False, have=progress.judgements, need=progress.judgements_needed,
            waiting_for=f"{where}: {progress.judgements} of {progress.judgements_needed} judgements{so_far}",
        )
    if pair is None or not pair.judgements:
        return PromotionGate(ready=False, waiting_for=f"{where} ended without a judgement of the two; "
                                                      f"promote {candidate.name} by hand or evaluate again")
    if pair.low >= threshold:
        verdict = f"won {_percent(pair.win_rate)} (95 % CI {_percent(pair.low)}–{_percent(pair.high)})"
        return PromotionGate(
            ready=True, waiting_for=f"{candidate.name} {verdict} against {baseline.name}: promoted automatically",
            reason=f"evaluation #{evaluation.pk}: {verdict} against {baseline.name}, "
                   f"at least {_percent(threshold)} required",
        )
    return PromotionGate(
        ready=False,
        waiting_for=f"{candidate.name} is not promoted: its win rate over {baseline.name} is "
                    f"{_percent(pair.win_rate)} (95 % CI {_percent(pair.low)}–{_percent(pair.high)}), and the "
                    f"interval's low end is below the {_percent(threshold)} required (evaluation #{evaluation.pk})",
    )
