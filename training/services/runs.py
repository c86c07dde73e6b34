"""Runs: trigger (with the engine's own config check), dispatch to the gpu queue, cancel, resume.

What a run reads is fixed when it is created: its input model(s), a frozen snapshot (a fresh one is
built when none is given) and the engine config. The config is checked here with the engine's own
typed check (``training.engine.configs``, which imports no torch), so a typo is a 400 at trigger time,
not a failure an hour later on a GPU node.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Project
from audit.models import AuditAction
from audit.services import audit_record
from config.exceptions import ApplicationError, ConflictError
from training.engine.configs import validate_command_config
from training.engine.errors import EngineError
from training.models import (
    DatasetSnapshot,
    LoopPolicy,
    ModelKind,
    ModelVersion,
    RunKind,
    RunState,
    RunTrigger,
    SnapshotKind,
    SnapshotState,
    TrainingRun,
)
from training.services.storage import data_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What each run kind reads and makes."""

    snapshot_kind: str | None  # the snapshot it trains on (None: reads no labels)
    input_file: str | None  # the name the snapshot gets in the run folder (the engine's default file name)
    input_kinds: tuple[str, ...]  # model kinds it accepts as input_model (empty: no input model)
    output_kind: str | None  # the kind of model version it produces (None: none)
    wired_keys: tuple[str, ...]  # config keys the platform sets; overrides may not touch them


RUN_SPECS: dict[str, RunSpec] = {
    RunKind.SFT: RunSpec(SnapshotKind.SFT, "train.jsonl", (ModelKind.BASE, ModelKind.SFT, ModelKind.POLICY),
                         ModelKind.SFT, ("model_path", "train_file")),
    RunKind.REWARD: RunSpec(SnapshotKind.PREFERENCES, "pairs.jsonl",
                            (ModelKind.BASE, ModelKind.SFT, ModelKind.POLICY, ModelKind.REWARD),
                            ModelKind.REWARD, ("model_path", "train_file")),
    RunKind.DPO: RunSpec(SnapshotKind.PREFERENCES, "pairs.jsonl", (ModelKind.BASE, ModelKind.SFT, ModelKind.POLICY),
                         ModelKind.POLICY, ("model_path", "train_file")),
    RunKind.PPO: RunSpec(SnapshotKind.PROMPTS, "prompts.jsonl", (ModelKind.BASE, ModelKind.SFT, ModelKind.POLICY),
                         ModelKind.POLICY, ("model_path", "reward_model", "prompts_file")),
    RunKind.SAMPLE: RunSpec(SnapshotKind.PROMPTS, "prompts.jsonl", (ModelKind.BASE, ModelKind.SFT, ModelKind.POLICY),
                            None, ("model_path", "prompts_file", "output_file", "generator", "num_responses")),
    RunKind.IMPORT_GGUF: RunSpec(None, None, (), ModelKind.BASE, ()),
    RunKind.MAKE_TINY: RunSpec(None, None, (), ModelKind.BASE, ()),
    # a reward model scores fresh human pairs (services/reward_checks.py); it makes no model
    RunKind.SCORE: RunSpec(SnapshotKind.PREFERENCES, "pairs.jsonl", (ModelKind.REWARD,), None,
                           ("model_path", "pairs_file")),
}


def model_folder(model: ModelVersion) -> str:
    """Return the absolute folder of a model version, as the engine reads it."""
    return str(data_path(model.storage_path))


def run_config_build(
    *, project: Project, kind: str, input_model: ModelVersion | None, reward_model: ModelVersion | None,
    overrides: dict | None, extra_wiring: dict | None = None,
) -> dict:
    """Return the engine config: the project's template for the kind, the overrides, then the platform's wiring.

    Raise ApplicationError naming the field when the engine would refuse it.
    """
    spec = RUN_SPECS[kind]
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ApplicationError("config must be a JSON object of engine settings.", extra={"errors": {"config": ["must be an object"]}})
    wired = sorted(set(overrides) & set(spec.wired_keys))
    if wired:
        raise ApplicationError(
            f"config.{wired[0]} is set by the platform from the run's inputs; leave it out.",
            extra={"errors": {f"config.{wired[0]}": ["set by the platform"]}},
        )
    policy = LoopPolicy.objects.filter(project=project).first()
    template = (policy.config_templates or {}).get(kind, {}) if policy else {}
    config = {**template, **overrides}
    for key in spec.wired_keys:
        config.pop(key, None)  # a template can't wire either
    if input_model is not None:
        config["model_path"] = model_folder(input_model)
    if kind == RunKind.PPO:
        config["reward_model"] = model_folder(reward_model) if reward_model else config.get("reward_model", "")
    if spec.input_file and "model_path" in spec.wired_keys:
        key = {"train.jsonl": "train_file", "pairs.jsonl": "train_file", "prompts.jsonl": "prompts_file"}[spec.input_file]
        if kind == RunKind.SCORE:
            key = "pairs_file"
        config[key] = spec.input_file
    if kind == RunKind.SAMPLE:
        config["output_file"] = "samples.jsonl"
        config["generator"] = input_model.name if input_model else ""
    config.update(extra_wiring or {})
    run_config_check(kind=kind, config=config)
    return config


_KEY_SEGMENT = re.compile(r"[A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*)*$")
_KEY_NAMED = re.compile(r"(?:unknown key|missing required key) '([^']+)'")
_KEY_LEADING = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*) (?:must\b|')")  # "lora.r must…", "reward_model '…'"


def _engine_error_key(message: str) -> tuple[list[str], str]:
    """Split an engine config error into the key path it starts with and the reason.

    "config.json: lora: r: must be an integer, got 'x'" -> (["lora", "r"], "must be an integer, got 'x'");
    list items become numbered segments ("target_modules[0]" -> "target_modules", "0").
    """
    rest = message.removeprefix("config.json: ").removeprefix("config: ")
    path: list[str] = []
    while ": " in rest:
        head, tail = rest.split(": ", 1)
        if not _KEY_SEGMENT.match(head):
            break
        path.extend(re.sub(r"\[(\d+)\]", r".\1", head).split("."))
        rest = tail
    return path, rest


def run_config_check(*, kind: str, config: dict, field: str = "config") -> None:
    """Run the engine's start-up check on the config; a refusal is a 400 whose ``errors`` names the key.

    ``field`` is where the config came from in the request: ``config`` (a run's overrides) gives
    ``{"errors": {"config.learning_rat": ["unknown key 'learning_rat' (did you mean 'learning_rate'?)"]}}``;
    ``config_templates.sft`` names a key of the loop's SFT template.
    """
    try:
        validate_command_config(kind, config)
    except EngineError as error:
        path, reason = _engine_error_key(str(error))
        named = _KEY_NAMED.match(reason)
        key = path + [named.group(1)] if named else path
        if not key and (leading := _KEY_LEADING.match(reason)):
            key = [leading.group(1)]
        where = ".".join([field, *path])
        raise ApplicationError(
            f"{where}: {reason}", extra={"errors": {".".join([field, *key]): [reason]}}
        ) from None


def _refused(field: str, message: str) -> ApplicationError:
    """A 400 whose ``errors`` names the request field at fault."""
    return ApplicationError(message, extra={"errors": {field: [message]}})


def _inputs_check(*, project: Project, kind: str, input_model, reward_model, snapshot) -> None:
    spec = RUN_SPECS[kind]
    for label, model in (("input_model", input_model), ("reward_model", reward_model)):
        if model is not None and model.project_id != project.pk:
            raise _refused(label, f"{label} belongs to another project.")
    if spec.input_kinds and input_model is None:
        raise _refused("input_model", f"A {kind} run needs input_model: the model it starts from.")
    if input_model is not None and input_model.kind not in spec.input_kinds:
        raise _refused(
            "input_model",
            f"input_model is a {input_model.kind} model; a {kind} run starts from one of: {', '.join(spec.input_kinds)}.",
        )
    if kind == RunKind.PPO and reward_model is None:
        raise _refused("reward_model", "A ppo run needs reward_model: the reward model that scores its answers.")
    if reward_model is not None and kind != RunKind.PPO:
        raise _refused("reward_model", "Only a ppo run takes reward_model.")
    if reward_model is not None and reward_model.kind != ModelKind.REWARD:
        raise _refused("reward_model", f"reward_model is a {reward_model.kind} model, not a reward model.")
    if snapshot is not None:
        if snapshot.project_id != project.pk:
            raise _refused("snapshot", "snapshot belongs to another project.")
        if spec.snapshot_kind is None:
            raise _refused("snapshot", f"A {kind} run reads no snapshot.")
        if snapshot.kind != spec.snapshot_kind:
            raise _refused(
                "snapshot", f"A {kind} run reads a {spec.snapshot_kind} snapshot; this one is {snapshot.kind}."
            )
        if snapshot.state == SnapshotState.FAILED:
            raise _refused("snapshot", f"snapshot {snapshot.pk} failed to build: {snapshot.error}")


def _dedup_key(*, kind, input_model, reward_model, snapshot, overrides, extra, trigger) -> str:
    if trigger == RunTrigger.LOOP:
        return f"loop:{kind}"
    identity = json.dumps(
        [kind, getattr(input_model, "pk", None), getattr(reward_model, "pk", None), getattr(snapshot, "pk", None),
         overrides or {}, extra],
        sort_keys=True,
    )
    return "manual:" + hashlib.sha256(identity.encode()).hexdigest()[:40]


def run_trigger(
    *,
    project: Project,
    kind: str,
    input_model: ModelVersion | None = None,
    reward_model: ModelVersion | None = None,
    snapshot: DatasetSnapshot | None = None,
    snapshot_options: dict | None = None,
    config_overrides: dict | None = None,
    output_name: str = "",
    trigger: str = RunTrigger.MANUAL,
    created_by: AbstractBaseUser | None = None,
    extra_wiring: dict | None = None,
    dedup_key: str = "",
) -> TrainingRun:
    """Create a queued run and dispatch it (once its snapshot is ready); return it.

    With no ``snapshot`` a fresh one of the right kind is built first. The same trigger twice at the
    same instant makes one run: the second raises ConflictError naming the first. ``dedup_key`` names
    the run's identity when the caller knows it better (an evaluation's run per model).
    """
    if kind not in RUN_SPECS:
        raise _refused("kind", f"kind must be one of {', '.join(RUN_SPECS)}; got {kind!r}.")
    if project.is_archived:
        raise ApplicationError("The project is archived: it starts no new runs.")
    spec = RUN_SPECS[kind]
    _inputs_check(project=project, kind=kind, input_model=input_model, reward_model=reward_model, snapshot=snapshot)
    config = run_config_build(
        project=project, kind=kind, input_model=input_model, reward_model=reward_model,
        overrides=config_overrides, extra_wiring=extra_wiring,
    )
    if output_name and ModelVersion.objects.filter(project=project, name=output_name).exists():
        raise _refused("name", f"A model version named {output_name!r} exists already in this project.")
    dedup_key = dedup_key or _dedup_key(
        kind=kind, input_model=input_model, reward_model=reward_model, snapshot=snapshot,
        overrides=config_overrides, extra=[extra_wiring or {}, output_name], trigger=trigger,
    )
    try:
        with transaction.atomic():
            if spec.snapshot_kind is not None and snapshot is None:
                from training.services.snapshots import snapshot_request

                snapshot = snapshot_request(
                    project=project, kind=spec.snapshot_kind, options=snapshot_options, created_by=created_by
                )
            run = TrainingRun.objects.create(
                project=project, kind=kind, trigger=trigger, snapshot=snapshot, input_model=input_model,
                reward_model=reward_model, config=config, output_name=output_name, dedup_key=dedup_key,
                max_attempts=settings.RLHF_RUN_MAX_ATTEMPTS, created_by=created_by,
            )
            run.run_dir = f"runs/{project.pk}/{run.pk}"
            run.save(update_fields=["run_dir"])
            audit_record(actor=created_by, action=AuditAction.RUN_TRIGGER, project=project, obj=run,
                         details={"kind": kind, "trigger": trigger})
            if snapshot is None or snapshot.state == SnapshotState.READY:
                run_dispatch(run=run)
    except IntegrityError:
        existing = TrainingRun.objects.filter(
            project=project, dedup_key=dedup_key, state__in=RunState.active()
        ).first()
        where = f" (run {existing.pk}, {existing.state})" if existing else ""
        raise ConflictError(
            f"The same {kind} run is already queued or running{where}.",
            extra={"run": existing.pk if existing else None},
        ) from None
    logger.info("run %s (%s) created by %s", run.pk, kind, trigger)
    return run


def run_dispatch(*, run: TrainingRun) -> None:
    """Send the run's message to the gpu queue after commit (a claim in the database decides who runs it)."""
    TrainingRun.objects.filter(pk=run.pk).update(
        dispatched_at=timezone.now(), dispatch_count=run.dispatch_count + 1
    )
    from training.tasks import gpu_run_execute

    run_id = run.pk
    transaction.on_commit(lambda: gpu_run_execute.apply_async(args=[run_id], queue="gpu"))


def runs_waiting_on_snapshot_settle(*, snapshot: DatasetSnapshot) -> int:
    """Dispatch the queued runs that waited for this snapshot, or fail them if it failed. Return how many."""
    waiting = list(TrainingRun.objects.filter(snapshot=snapshot, state=RunState.QUEUED, dispatch_count=0))
    for run in waiting:
        if snapshot.state == SnapshotState.READY:
            with transaction.atomic():
                run_dispatch(run=run)
        else:
            run_fail(run=run, error=f"Its snapshot {snapshot.pk} could not be built: {snapshot.error}")
    return len(waiting)


def run_fail(*, run: TrainingRun, error: str) -> None:
    """Fail a run that never started (its inputs can't be had)."""
    with transaction.atomic():
        updated = TrainingRun.objects.filter(pk=run.pk, state=RunState.QUEUED).update(
            state=RunState.FAILED, error=error, finished_at=timezone.now()
        )
        if not updated:
            return


def run_cancel(*, run: TrainingRun, cancelled_by: AbstractBaseUser | None = None) -> TrainingRun:
    """Cancel a run: a queued one at once; a running one is asked to stop (its engine checkpoints first)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.state == RunState.QUEUED:
            run.state, run.finished_at, run.cancel_requested = RunState.CANCELLED, timezone.now(), True
            run.save(update_fields=["state", "finished_at", "cancel_requested"])
        elif run.state == RunState.RUNNING:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested"])
        else:
            raise ConflictError(f"Run {run.pk} has already finished ({run.state}).")
        audit_record(actor=cancelled_by, action=AuditAction.RUN_CANCEL, project=run.project, obj=run,
                     details={"state": run.state})
    return run


def run_resume(*, run: TrainingRun, resumed_by: AbstractBaseUser | None = None) -> TrainingRun:
    """Queue a cancelled or failed run again; its engine resumes from the newest complete checkpoint."""
    try:
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=run.pk)
            if run.state not in (RunState.CANCELLED, RunState.FAILED):
                raise ConflictError(f"Only a cancelled or failed run can be resumed; run {run.pk} is {run.state}.")
            if run.snapshot_id and run.snapshot.state != SnapshotState.READY:
                raise ApplicationError(f"Its snapshot {run.snapshot_id} is not ready ({run.snapshot.state}).")
            run.state, run.cancel_requested, run.error, run.finished_at = RunState.QUEUED, False, "", None
            run.exit_code = None
            run.max_attempts = run.attempt + settings.RLHF_RUN_MAX_ATTEMPTS
            run.save(update_fields=["state", "cancel_requested", "error", "finished_at", "exit_code", "max_attempts"])
            run_dispatch(run=run)
            audit_record(actor=resumed_by, action=AuditAction.RUN_RESUME, project=run.project, obj=run,
                         details={"attempt": run.attempt})
    except IntegrityError:
        raise ConflictError("The same run is already queued or running again; follow that one.") from None
    return run
