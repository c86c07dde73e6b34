"""Admin for training: model versions, snapshots, runs (metrics inline), sampling jobs, loop policies,
promotions and GPU workers. A staff manager sees only the projects they manage.

Runs, snapshots, model versions and sampling jobs are made through the API (which checks what the
engine will accept), so admin can't add them; runs can be cancelled or resumed from the list. A
loop policy is edited here through the same service as the API's, which checks its config templates.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, F, Value, When, Window
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils.html import format_html

from annotation.admin_scoping import ManagedProjectsAdminMixin
from annotation.models import Membership, Role
from config.exceptions import ApplicationError
from training.models import (
    DatasetSnapshot,
    Evaluation,
    EvaluationEntry,
    GpuWorker,
    LoopPolicy,
    MetricPoint,
    ModelVersion,
    Promotion,
    RewardCheck,
    RunKind,
    RunState,
    SamplingJob,
    TrainingRun,
)
from training.selectors.lists import worker_is_alive
from training.services.loop_policy import LOOP_POLICY_EDITABLE, loop_policy_update, loop_templates_check
from training.services.runs import RUN_SPECS, run_cancel, run_resume

METRIC_POINTS_SHOWN = 200  # the newest points of a run shown inline (a long run logs thousands)


class ReadOnlyAdminMixin:
    """Rows written only by the platform: admins look, filter and search, but neither add nor change them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _short(sha256: str) -> str:
    return (sha256 or "")[:12]


@admin.register(ModelVersion)
class ModelVersionAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "project", "parent", "snapshot_short", "run", "created_at"]
    list_filter = ["kind", ("project", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["name", "description", "storage_path"]
    list_select_related = ["project", "parent", "snapshot", "run"]
    fields = ["project", "kind", "name", "description", "storage_path", "parent", "run", "snapshot", "metrics",
              "created_by", "created_at"]
    # Only the description is a person's to change: the rest is what the run made, and the name is
    # written into every answer it samples (the loop finds the prompts a model answered by it).
    readonly_fields = ["project", "kind", "name", "storage_path", "parent", "run", "snapshot", "metrics",
                       "created_by", "created_at"]

    def has_add_permission(self, request):
        return False  # a folder is registered (and checked) through the API

    def save_model(self, request, obj, form, change):
        obj.save(update_fields=form.changed_data or None)

    @admin.display(description="snapshot", ordering="snapshot")
    def snapshot_short(self, model: ModelVersion) -> str:
        snapshot = model.snapshot
        return f"#{snapshot.pk} {_short(snapshot.sha256)} ({snapshot.row_count} rows)" if snapshot else "–"


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(ReadOnlyAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "project", "kind", "state", "row_count", "sha256_short", "labels_until", "created_at"]
    list_filter = ["kind", "state", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "sha256", "file_path"]
    list_select_related = ["project"]
    date_hierarchy = "created_at"

    @admin.display(description="sha256", ordering="sha256")
    def sha256_short(self, snapshot: DatasetSnapshot) -> str:
        return _short(snapshot.sha256)


class MetricPointInline(ManagedProjectsAdminMixin, admin.TabularInline):
    model = MetricPoint
    fields = ["step", "values", "logged_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = f"metric points (the newest {METRIC_POINTS_SHOWN})"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        newest_first = Window(RowNumber(), partition_by=[F("run_id")], order_by=F("step").desc())
        return (
            super().get_queryset(request).annotate(from_end=newest_first)
            .filter(from_end__lte=METRIC_POINTS_SHOWN).order_by("step")
        )


@admin.register(TrainingRun)
class TrainingRunAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "project", "kind", "state", "trigger", "progress_shown", "attempt", "worker", "page_link",
                    "created_at"]
    list_filter = ["state", "kind", "trigger", ("project", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["=id", "worker", "error", "output_name"]
    list_select_related = ["project"]
    date_hierarchy = "created_at"
    inlines = [MetricPointInline]
    actions = ["cancel_selected", "resume_selected"]
    fieldsets = [
        (None, {"fields": ["project", "kind", "trigger", "state", "cancel_requested", "page_link", "created_by",
                           "created_at"]}),
        ("Inputs", {"fields": ["snapshot", "input_model", "reward_model", "output_name", "config"]}),
        ("Execution", {"fields": ["attempt", "max_attempts", "worker", "heartbeat_at", "dispatched_at",
                                  "dispatch_count", "started_at", "engine_started_at", "finished_at", "step",
                                  "total_steps", "eta_seconds", "run_dir"]}),
        ("Outcome", {"fields": ["exit_code", "error", "result"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [name for fieldset in self.fieldsets for name in fieldset[1]["fields"]]

    def has_add_permission(self, request):
        return False  # runs are triggered through the API (or the loop), which checks the engine config

    def has_change_permission(self, request, obj=None):
        # a run's page is read only (saving it would write stale progress over the worker's); the list
        # keeps the change permission for its cancel and resume actions
        return obj is None and super().has_change_permission(request)

    @admin.display(description="progress")
    def progress_shown(self, run: TrainingRun) -> str:
        return f"{run.step} / {run.total_steps}" if run.total_steps else "–"

    @admin.display(description="page")
    def page_link(self, run: TrainingRun) -> str:
        url = reverse("training-run", args=[run.project_id, run.pk])
        return format_html('<a href="{}">run page</a>', url)

    @admin.action(description="Cancel the selected runs", permissions=["change"])
    def cancel_selected(self, request, queryset):
        done = 0
        for run in queryset.filter(state__in=RunState.active()):
            run_cancel(run=run, cancelled_by=request.user)
            done += 1
        self.message_user(request, f"{done} run(s) cancelled or asked to stop.")

    @admin.action(description="Resume the selected failed or cancelled runs", permissions=["change"])
    def resume_selected(self, request, queryset):
        done, refused = 0, []
        for run in queryset.filter(state__in=[RunState.FAILED, RunState.CANCELLED]):
            try:
                run_resume(run=run, resumed_by=request.user)
                done += 1
            except ApplicationError as error:
                refused.append(f"#{run.pk}: {error.message}")
        self.message_user(request, f"{done} run(s) queued again.")
        for message in refused[:10]:
            self.message_user(request, message, level=messages.WARNING)


@admin.register(SamplingJob)
class SamplingJobAdmin(ReadOnlyAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "project", "model", "run_state", "source", "num_prompts", "responses_per_prompt",
                    "tasks_created", "tasks_skipped", "created_at"]
    list_filter = ["run__state", "source", "trigger", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "model__name"]
    list_select_related = ["project", "model", "run"]

    @admin.display(description="state", ordering="run__state")
    def run_state(self, job: SamplingJob) -> str:
        return job.run.get_state_display()


class EvaluationEntryInline(ManagedProjectsAdminMixin, admin.TabularInline):
    model = EvaluationEntry
    extra = 0
    fields = ["position", "model", "run"]
    readonly_fields = fields
    can_delete = False


@admin.register(Evaluation)
class EvaluationAdmin(ReadOnlyAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    """Evaluations are started through the API, the Models page or the loop; their tasks are in ranking tasks."""

    list_display = ["id", "project", "model_names", "tasks_created", "prompts_skipped", "ingested_at", "trigger",
                    "created_at"]
    list_filter = ["trigger", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "entries__model__name"]
    list_select_related = ["project"]
    fields = ["project", "snapshot", "tasks_created", "prompts_skipped", "ingested_at", "error", "trigger",
              "created_by", "created_at"]
    inlines = [EvaluationEntryInline]

    @admin.display(description="models")
    def model_names(self, evaluation: Evaluation) -> str:
        return " vs ".join(entry.model.name for entry in evaluation.entries.select_related("model"))


class LoopPolicyForm(forms.ModelForm):
    """The editable fields of a loop policy, checked as the API checks them; models only of its project."""

    class Meta:
        model = LoopPolicy
        fields = [name for name in LOOP_POLICY_EDITABLE]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        base_model = self.fields.get("base_model")
        if base_model is not None:
            kinds = RUN_SPECS[RunKind.SFT].input_kinds
            base_model.queryset = ModelVersion.objects.filter(
                project_id=self.instance.project_id, kind__in=kinds
            ).order_by("-id")

    def clean_config_templates(self):
        templates = self.cleaned_data.get("config_templates")
        try:
            return loop_templates_check(templates=templates if templates is not None else {})
        except ApplicationError as error:
            raise forms.ValidationError(error.message) from None


@admin.register(LoopPolicy)
class LoopPolicyAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    form = LoopPolicyForm
    list_display = ["project", "enabled", "preference_method", "auto_promote", "base_model", "current_policy",
                    "current_reward_model", "last_tick_at"]
    list_filter = ["enabled", "preference_method", "auto_promote", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["project__name"]
    list_select_related = ["project", "base_model", "current_policy", "current_reward_model"]
    readonly_fields = ["project", "current_policy", "current_reward_model", "last_tick_at", "last_tick_note",
                       "updated_at"]
    fieldsets = [
        (None, {"fields": ["project", "enabled", "base_model", "preference_method", "auto_promote"]}),
        ("Thresholds", {"fields": ["sft_min_new_demonstrations", "reward_min_new_rankings",
                                   "prompts_per_sampling_job", "queue_low_water"]}),
        ("Promotion judged by people", {"fields": ["min_win_rate_to_promote", "evaluation_prompts"]}),
        ("Engine config per run kind", {"fields": ["config_templates"]}),
        ("Current models (changed by promotion, on the Models page)",
         {"fields": ["current_policy", "current_reward_model"]}),
        ("The loop's last look", {"fields": ["last_tick_at", "last_tick_note", "updated_at"]}),
    ]

    def has_add_permission(self, request):
        return False  # every project has one, made when its Training page or loop API is first opened

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in LOOP_POLICY_EDITABLE}
        loop_policy_update(project=obj.project, changes=changes)


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "project", "model", "role", "previous", "automatic", "promoted_by", "reason", "created_at"]
    list_filter = ["role", "automatic", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["model__name", "reason", "promoted_by__username"]
    list_select_related = ["project", "model", "previous", "promoted_by"]

    def has_delete_permission(self, request, obj=None):
        return False  # the record of who made what current stays


@admin.register(GpuWorker)
class GpuWorkerAdmin(ReadOnlyAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    """Workers serve every project: a staff manager sees them all, but only their own projects' runs on them."""

    list_display = ["hostname", "gpu_count", "gpu_list", "alive", "current_run_shown", "last_heartbeat", "started_at"]
    search_fields = ["hostname"]
    list_select_related = ["current_run"]
    fields = ["hostname", "gpu_count", "gpu_names", "pid", "current_run_shown", "started_at", "last_heartbeat"]
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset.annotate(run_visible=Value(True))
        managed = Membership.objects.filter(user=request.user, role=Role.MANAGER).values("project_id")
        return queryset.annotate(
            run_visible=Case(When(current_run__project_id__in=managed, then=Value(True)), default=Value(False))
        )

    @admin.display(description="GPUs")
    def gpu_list(self, worker: GpuWorker) -> str:
        return ", ".join(str(name) for name in worker.gpu_names or []) or "–"

    @admin.display(boolean=True)
    def alive(self, worker: GpuWorker) -> bool:
        return worker_is_alive(worker)

    @admin.display(description="current run")
    def current_run_shown(self, worker: GpuWorker) -> str:
        run = worker.current_run
        if run is None:
            return "–"
        if not getattr(worker, "run_visible", False):
            return "a run of another project"
        return format_html('<a href="{}">{}</a>', reverse("training-run", args=[run.project_id, run.pk]), run)


@admin.register(RewardCheck)
class RewardCheckAdmin(ReadOnlyAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "project", "model", "task", "pairs_agreed", "pairs", "mean_margin", "task_completed_at",
                    "checked_at"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter), ("model", admin.RelatedOnlyFieldListFilter),
                   "task_completed_at"]
    search_fields = ["=task__id", "model__name"]
    list_select_related = ["project", "model", "task"]
    raw_id_fields = ["task", "run"]
