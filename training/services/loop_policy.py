"""The loop's policy as a person edits it: thresholds, method, base model, promotion, config templates.

Each config template is checked with the engine's own check when it is saved (the platform's wiring
filled with placeholders), so a typo is a 400 naming ``config_templates.sft.learning_rat`` now, not a
loop that can't start a run in a week.
"""

from __future__ import annotations

from django.db import transaction

from annotation.models import Project
from config.exceptions import ApplicationError
from training.models import LoopPolicy, ModelVersion, RunKind
from training.services.runs import RUN_SPECS, run_config_check

# The fields a person may change; current_policy / current_reward_model change only by promotion.
LOOP_POLICY_EDITABLE = (
    "enabled",
    "base_model",
    "sft_min_new_demonstrations",
    "reward_min_new_rankings",
    "prompts_per_sampling_job",
    "queue_low_water",
    "preference_method",
    "auto_promote",
    "min_win_rate_to_promote",
    "evaluation_prompts",
    "config_templates",
)

# What the platform wires at trigger time beyond RUN_SPECS' wired keys, and placeholders of the right type.
_PLACEHOLDER_EXTRA = {RunKind.IMPORT_GGUF: {"gguf_file": "model.gguf"}}
_PLACEHOLDER_VALUES = {"num_responses": 4}


def _refused(field: str, message: str) -> ApplicationError:
    return ApplicationError(message, extra={"errors": {field: [message]}})


def loop_templates_check(*, templates: object) -> dict:
    """Return the templates if the engine would accept each (with the platform's wiring); raise a 400 naming the key."""
    if not isinstance(templates, dict):
        raise _refused("config_templates", "config_templates must be an object: run kind -> engine settings.")
    for kind, template in templates.items():
        field = f"config_templates.{kind}"
        if kind not in RUN_SPECS:
            raise _refused(field, f"{field}: no run kind {kind!r} (kinds: {', '.join(RUN_SPECS)}).")
        if not isinstance(template, dict):
            raise _refused(field, f"{field} must be an object of engine settings.")
        wired = sorted(set(template) & set(RUN_SPECS[kind].wired_keys))
        if wired:
            raise _refused(f"{field}.{wired[0]}", f"{field}.{wired[0]} is set by the platform from the run's inputs.")
        placeholders = {key: _PLACEHOLDER_VALUES.get(key, "placeholder") for key in RUN_SPECS[kind].wired_keys}
        run_config_check(kind=kind, config={**template, **placeholders, **_PLACEHOLDER_EXTRA.get(kind, {})}, field=field)
    return templates


def loop_policy_update(*, project: Project, changes: dict) -> LoopPolicy:
    """Change the given fields of the project's loop policy (the others stay) and return it.

    Holds the policy's row lock, as a loop tick does, so an edit never lands in the middle of a tick.
    """
    unknown = sorted(set(changes) - set(LOOP_POLICY_EDITABLE))
    if unknown:
        raise _refused(unknown[0], f"{unknown[0]} can't be changed here.")
    if "config_templates" in changes:
        loop_templates_check(templates=changes["config_templates"])
    base_model: ModelVersion | None = changes.get("base_model")
    if base_model is not None:
        if base_model.project_id != project.pk:
            raise _refused("base_model", "base_model belongs to another project.")
        allowed = RUN_SPECS[RunKind.SFT].input_kinds
        if base_model.kind not in allowed:
            raise _refused(
                "base_model", f"base_model is a {base_model.kind} model; SFT starts from one of: {', '.join(allowed)}."
            )
    with transaction.atomic():
        policy, _ = LoopPolicy.objects.select_for_update().get_or_create(project=project)
        for name, value in changes.items():
            setattr(policy, name, value)
        policy.full_clean()
        if changes:
            policy.save(update_fields=[*changes, "updated_at"])
    return policy
