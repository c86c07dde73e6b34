"""Model versions: register a folder, import a GGUF file, build a tiny model; promote one to current."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.models import Project
from audit.models import AuditAction
from audit.services import audit_record
from config.exceptions import ApplicationError
from training.models import LoopPolicy, ModelKind, ModelVersion, Promotion, RunKind, TrainingRun
from training.services.runs import run_trigger
from training.services.storage import data_relative

PROMOTABLE = {
    Promotion.Role.POLICY: (ModelKind.BASE, ModelKind.SFT, ModelKind.POLICY),
    Promotion.Role.REWARD: (ModelKind.REWARD,),
}


def _name_check(*, project: Project, name: str) -> None:
    if not name or len(name) > 200:
        raise ApplicationError("name must be 1 to 200 characters.")
    if ModelVersion.objects.filter(project=project, name=name).exists():
        raise ApplicationError(f"A model version named {name!r} exists already in this project.")


def _allowed_path(path: str, *, what: str) -> Path:
    """Return the resolved path if it lies under one of RLHF_MODEL_IMPORT_ROOTS; raise ApplicationError otherwise."""
    resolved = Path(path).expanduser().resolve()
    roots = [Path(root).resolve() for root in settings.RLHF_MODEL_IMPORT_ROOTS]
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise ApplicationError(f"{what} must lie under one of the model import roots ({allowed}); got {resolved}.")
    return resolved


def model_register_folder(
    *, project: Project, name: str, path: str, kind: str = ModelKind.BASE, description: str = "",
    created_by: AbstractBaseUser | None = None,
) -> ModelVersion:
    """Register a save_pretrained folder that every worker can read (it must hold config.json)."""
    _name_check(project=project, name=name)
    if kind not in ModelKind.values:
        raise ApplicationError(f"kind must be one of {', '.join(ModelKind.values)}.")
    folder = _allowed_path(path, what="path")
    if not (folder / "config.json").is_file():
        raise ApplicationError(f"{folder} is not a model folder: it holds no config.json.")
    return ModelVersion.objects.create(
        project=project, kind=kind, name=name, storage_path=data_relative(folder), description=description,
        created_by=created_by,
    )


def model_import_gguf(
    *, project: Project, name: str, gguf_file: str, created_by: AbstractBaseUser | None = None
) -> TrainingRun:
    """Convert a GGUF file into a save_pretrained folder on a worker; the base model appears when the run succeeds."""
    _name_check(project=project, name=name)
    path = _allowed_path(gguf_file, what="gguf_file")
    if not path.is_file():
        raise ApplicationError(f"gguf_file {path} does not exist.")
    return run_trigger(
        project=project, kind=RunKind.IMPORT_GGUF, extra_wiring={"gguf_file": str(path)}, output_name=name,
        created_by=created_by,
    )


def model_make_tiny(
    *, project: Project, name: str, config: dict | None = None, created_by: AbstractBaseUser | None = None
) -> TrainingRun:
    """Build a tiny random model on a worker (for trying the loop out); it appears when the run succeeds."""
    _name_check(project=project, name=name)
    return run_trigger(
        project=project, kind=RunKind.MAKE_TINY, config_overrides=config, output_name=name, created_by=created_by
    )


@transaction.atomic
def model_promote(
    *, model: ModelVersion, role: str | None = None, promoted_by: AbstractBaseUser | None = None,
    automatic: bool = False, reason: str = "",
) -> Promotion:
    """Make the model the project's current policy (or reward model) and record who did it and why."""
    role = role or (Promotion.Role.REWARD if model.kind == ModelKind.REWARD else Promotion.Role.POLICY)
    if model.kind not in PROMOTABLE.get(role, ()):
        raise ApplicationError(f"A {model.kind} model can't become the current {role}.")
    policy, _ = LoopPolicy.objects.select_for_update().get_or_create(project=model.project)
    field = "current_policy" if role == Promotion.Role.POLICY else "current_reward_model"
    previous = getattr(policy, field)
    setattr(policy, field, model)
    policy.save(update_fields=[field, "updated_at"])
    if role == Promotion.Role.REWARD:
        # it may find a backlog of tasks no reward model trained on: check them now, not at the next tick
        from training.tasks import reward_checks_start_task

        project_id = model.project_id
        transaction.on_commit(lambda: reward_checks_start_task.delay(project_id))
    promotion = Promotion.objects.create(
        project=model.project, model=model, role=role, previous=previous, automatic=automatic,
        promoted_by=promoted_by, reason=reason,
    )
    audit_record(actor=promoted_by, action=AuditAction.MODEL_PROMOTE, project=model.project, obj=model, details={
        "role": role, "previous": previous.pk if previous else None, "automatic": automatic, "reason": reason})
    return promotion
