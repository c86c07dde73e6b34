"""Server-rendered training pages: the loop and its runs, one run with live charts, the model lineage.

Managers and ML engineers of the project see them; anyone else gets a 404. The pages only read; what
they start or change (a loop step, cancel, resume, promote) goes through the JSON API from their script.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from training.api.reward_agreement import RewardAgreementOutputSerializer
from training.models import MetricPoint, ModelKind, ModelVersion, RunKind, RunState, SamplingJob, TrainingRun
from training.selectors.access import run_get_for_user, training_project_get
from training.selectors.evaluations import (
    evaluation_list,
    evaluation_progress,
    evaluation_results,
    project_evaluation_results,
)
from training.selectors.lists import (
    metric_points,
    model_lineage,
    run_list,
    sampling_job_list,
    worker_is_alive,
    workers_list,
)
from training.selectors.loop import loop_policy_get, loop_status
from training.selectors.reward_agreement import reward_agreement_report
from training.services.execution import run_log_tail
from training.services.model_versions import PROMOTABLE

RUNS_PER_PAGE = 20
SAMPLING_JOBS_SHOWN = 10
EVALUATIONS_SHOWN = {"home": 3, "models": 10}
LOG_TAIL_BYTES = 64 * 1024  # as the log API sends
REWARD_AGREEMENT_DAYS = 90  # the reward model chart's period (the API gives any)

# The figure a run is summed up by, per kind: the first of these it has (key, label).
HEADLINE_FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    RunKind.SFT: (("loss", "loss"), ("train_loss", "train loss"), ("eval_loss", "eval loss")),
    RunKind.REWARD: (
        ("eval_accuracy", "eval accuracy"), ("cv_accuracy", "cross-validated accuracy"),
        ("train_accuracy_last_epoch", "train accuracy"), ("train_accuracy", "train accuracy"), ("loss", "loss"),
    ),
    RunKind.PPO: (("score", "score"), ("rlhf_reward", "RLHF reward"), ("loss", "loss")),
    RunKind.DPO: (
        ("rewards/accuracies", "rewards accuracy"), ("eval_rewards/accuracies", "eval rewards accuracy"),
        ("loss", "loss"),
    ),
    RunKind.SAMPLE: (("responses", "responses"), ("prompts_done", "prompts done")),
    RunKind.MAKE_TINY: (("parameters", "parameters"),),
    RunKind.SCORE: (("pairwise_accuracy", "agreement"),),
}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def headline(kind: str, figures: dict | None) -> dict | None:
    """Return {"label", "value"} of the kind's headline figure among ``figures``, or None."""
    for key, label in HEADLINE_FIGURES.get(kind, ()):
        value = (figures or {}).get(key)
        if _number(value):
            return {"label": label, "value": value}
    return None


def figures_shown(kind: str, figures: dict | None, *, most: int = 4) -> list[dict]:
    """Return up to ``most`` figures as [{"label", "value"}]: the kind's headline ones first, then others."""
    figures = {key: value for key, value in (figures or {}).items() if _number(value)}
    shown = [{"label": label, "value": figures.pop(key)} for key, label in HEADLINE_FIGURES.get(kind, ()) if key in figures]
    shown += [{"label": key.replace("_", " "), "value": value} for key, value in sorted(figures.items())]
    return shown[:most]


def _result_figures(run: TrainingRun) -> dict:
    return (run.result or {}).get("metrics") or {} if isinstance(run.result, dict) else {}


def _run_headlines(runs: list[TrainingRun]) -> dict[int, dict | None]:
    """Headline of each run: from its result, else its newest logged point that has one (one query)."""
    headlines = {run.pk: headline(run.kind, _result_figures(run)) for run in runs}
    missing = [run.pk for run in runs if headlines[run.pk] is None and run.kind in HEADLINE_FIGURES]
    if missing:
        keys = sorted({key for figures in HEADLINE_FIGURES.values() for key, _ in figures})
        kinds = {run.pk: run.kind for run in runs}
        latest = (
            MetricPoint.objects.filter(run_id__in=missing, values__has_any_keys=keys)
            .order_by("run_id", "-step").distinct("run_id").only("run_id", "values")
        )
        for point in latest:
            headlines[point.run_id] = headline(kinds[point.run_id], point.values)
    return headlines


def _step_view(step, *, project) -> dict:
    startable = (
        not project.is_archived and step.active_run is None
        and all(value is not None for name, value in step.inputs.items() if name != "kind")
    )
    return {
        "key": step.key, "title": step.title, "ready": step.ready, "waiting_for": step.waiting_for,
        "have": step.have, "need": step.need, "progress": step.progress, "active_run": step.active_run,
        "last_error": step.last_error, "startable": startable,
        "start_url": reverse("api-training-loop-step-start", args=[project.pk, step.key]),
    }


@login_required
@ensure_csrf_cookie
def training_home(request, project_id: int):
    """The loop, the runs (newest first, paginated), sampling jobs, the current models and the GPU workers."""
    project = training_project_get(user=request.user, project_id=project_id)
    status = loop_status(project=project)
    page = Paginator(run_list(user=request.user, project=project), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    runs = list(page.object_list)
    headlines = _run_headlines(runs)
    for run in runs:
        run.headline = headlines.get(run.pk)
    jobs = list(sampling_job_list(user=request.user, project=project)[:SAMPLING_JOBS_SHOWN])
    workers = list(workers_list())
    for worker in workers:
        worker.alive = worker_is_alive(worker)
    policy = status.policy
    reward_agreement = reward_agreement_report(project=project, days=REWARD_AGREEMENT_DAYS)
    return render(request, "training/home.html", {
        "project": project,
        "loop": status,
        "policy": policy,
        "steps": [_step_view(step, project=project) for step in status.steps],
        "current_policy": policy.current_policy,
        "current_reward_model": policy.current_reward_model,
        "loop_url": reverse("api-training-loop", args=[project.pk]),
        "page": page,
        "runs": runs,
        "jobs": jobs,
        "workers": workers,
        "evaluations": _evaluation_views(project=project, user=request.user, shown=EVALUATIONS_SHOWN["home"]),
        "reward_agreement": reward_agreement,
        "reward_agreement_data": RewardAgreementOutputSerializer(reward_agreement).data,
    })


@login_required
@ensure_csrf_cookie
def run_detail(request, project_id: int, run_id: int):
    """One run: its inputs and config, live charts of its figures, its log, cancel and resume."""
    project = training_project_get(user=request.user, project_id=project_id)
    run = run_get_for_user(user=request.user, run_id=run_id)
    if run.project_id != project.pk:
        raise Http404("No such run.")
    output_model = ModelVersion.objects.filter(run=run).first()
    sampling_job = SamplingJob.objects.filter(run=run).select_related("model").first()
    points = metric_points(run=run)
    return render(request, "training/run_detail.html", {
        "project": project,
        "run": run,
        "output_model": output_model,
        "sampling_job": sampling_job,
        "config_json": json.dumps(run.config, indent=2, sort_keys=True),
        "result_json": json.dumps(run.result, indent=2, sort_keys=True) if run.result else "",
        "headline": headline(run.kind, _result_figures(run)),
        "log_tail": run_log_tail(run=run, max_bytes=LOG_TAIL_BYTES),
        "finished_states": RunState.finished(),
        "app_config": {
            "runId": run.pk,
            "state": run.state,
            "points": points,
            "lastStep": points[-1]["step"] if points else None,
            "pollSeconds": 2,
            "urls": {
                "run": reverse("api-training-run-detail", args=[run.pk]),
                "metrics": reverse("api-training-run-metrics", args=[run.pk]),
                "log": reverse("api-training-run-log", args=[run.pk]),
                "cancel": reverse("api-training-run-cancel", args=[run.pk]),
                "resume": reverse("api-training-run-resume", args=[run.pk]),
                "modelsPage": reverse("training-models", args=[project.pk]),
            },
        },
    })


def _lineage_view(nodes: list[dict], *, by_pk: dict[int, ModelVersion]) -> list[dict]:
    promotable = {kind for kinds in PROMOTABLE.values() for kind in kinds}
    for node in nodes:
        model = node["model"]
        run = model.run
        node["figures"] = figures_shown(run.kind if run else "", model.metrics)
        node["reward_model"] = by_pk.get(run.reward_model_id) if run and run.reward_model_id else None
        node["promotable"] = model.kind in promotable and not (node["is_current_policy"] or node["is_current_reward"])
        node["promote_url"] = reverse("api-training-model-promote", args=[model.pk])
        _lineage_view(node["children"], by_pk=by_pk)
    return nodes


def _walk(nodes: list[dict]):
    for node in nodes:
        yield node
        yield from _walk(node["children"])


@login_required
@ensure_csrf_cookie
def models_page(request, project_id: int):
    """The model lineage as a tree: base → SFT → reward / policy → sampling jobs, with promote buttons."""
    project = training_project_get(user=request.user, project_id=project_id)
    roots = model_lineage(project=project)
    by_pk = {node["model"].pk: node["model"] for node in _walk(roots)}
    judged = project_evaluation_results(project=project)
    for node in _walk(roots):
        node["rating"] = judged.rating_of(node["model"])
    return render(request, "training/models.html", {
        "project": project,
        "roots": _lineage_view(roots, by_pk=by_pk),
        "model_count": len(by_pk),
        "judged": judged,
        "evaluations": _evaluation_views(project=project, user=request.user, shown=EVALUATIONS_SHOWN["models"]),
        "evaluable_models": [model for model in by_pk.values() if model.kind != ModelKind.REWARD],
        "evaluations_url": reverse("api-training-evaluations"),
        "evaluation_prompts": loop_policy_get(project=project).evaluation_prompts,
    })


def _evaluation_views(*, project, user, shown: int) -> list[dict]:
    """The newest evaluations with where each stands and, once judged, its pairwise results (each with its interval)."""
    views = []
    for evaluation in evaluation_list(user=user, project=project)[:shown]:
        progress = evaluation_progress(evaluation=evaluation)
        results = evaluation_results(evaluation=evaluation) if progress.judgements else None
        views.append({"evaluation": evaluation, "entries": list(evaluation.entries.all()), "progress": progress,
                      "results": results})
    return views
