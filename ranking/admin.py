"""Admin for ranking: tasks with their answers and rankings inline, filters, search and actions."""

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from annotation.admin_lists import BigTableAdminMixin, project_filter
from annotation.admin_scoping import ManagedProjectsAdminMixin
from config.exceptions import ApplicationError
from ranking.models import Lease, Ranking, RankingTask, Response, Skip, TaskStatus
from ranking.services.leasing import ranking_tasks_counts_recount
from ranking.services.tasks import (
    ranking_task_disable,
    ranking_task_gold_from_consensus,
    ranking_task_gold_set,
    ranking_tasks_consensus_recompute,
)
from ranking.tasks import ranking_consensus_recompute, ranking_stats_rebuild

# Above this many tasks, "recompute consensus" runs on the worker instead of in the request.
RECOMPUTE_INLINE_LIMIT = 500


class ResponseInline(ManagedProjectsAdminMixin, admin.TabularInline):
    model = Response
    extra = 0
    fields = ["position", "content", "generator", "created_by"]
    raw_id_fields = ["created_by"]
    ordering = ["position"]


class RankingInline(ManagedProjectsAdminMixin, admin.TabularInline):
    model = Ranking
    extra = 0
    can_delete = True
    fields = ["labeler", "is_imported", "order", "all_bad", "flags", "scores", "time_spent_ms", "created_at"]
    readonly_fields = fields
    ordering = ["pk"]

    def has_add_permission(self, request, obj=None):
        return False  # rankings come from labelers and imports


@admin.register(RankingTask)
class RankingTaskAdmin(BigTableAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "project", "prompt_preview", "status", "is_gold", "answer_count", "ranking_count",
                    "agreement", "source", "created_at"]
    list_filter = [project_filter(), "is_gold", "status", "source", "created_at"]
    search_fields = ["=id", "context", "responses__content", "responses__generator"]
    list_select_related = ["project"]
    readonly_fields = ["consensus_order", "agreement", "consensus_at", "created_at"]
    raw_id_fields = ["created_by"]
    inlines = [ResponseInline, RankingInline]
    actions = ["recompute_consensus", "mark_gold_from_consensus", "unmark_gold", "disable", "enable"]
    fieldsets = [
        (None, {"fields": ["project", "context", "status", "source", "created_by"]}),
        ("Gold", {"fields": ["is_gold", "gold_order"]}),
        ("Consensus", {"fields": ["consensus_order", "agreement", "consensus_at", "created_at"]}),
    ]

    def get_queryset(self, request):
        # counted per listed task: a Count() join would group every task of the table before the page is cut
        def per_task(model):
            rows = model.objects.filter(task=OuterRef("pk")).order_by().values("task").annotate(n=Count("pk"))
            return Coalesce(Subquery(rows.values("n")), 0)

        return super().get_queryset(request).annotate(_answers=per_task(Response), _rankings=per_task(Ranking))

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        # DISTINCT only for a search (it joins the answers): on the plain list it would read every task
        return (queryset.distinct() if search_term else queryset), False

    @admin.display(description="K")
    def answer_count(self, task):
        return task._answers

    @admin.display(description="rankings")
    def ranking_count(self, task):
        return task._rankings

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # an edited gold order or deleted ranking changes the consensus
        ranking_tasks_consensus_recompute(task_ids=[form.instance.pk])
        if any(formset.deleted_objects for formset in formsets):
            stats_recount_later(project_ids=[form.instance.project_id])

    def delete_queryset(self, request, queryset):
        project_ids = list(queryset.values_list("project_id", flat=True).distinct())
        super().delete_queryset(request, queryset)
        stats_recount_later(project_ids=project_ids)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        stats_recount_later(project_ids=[obj.project_id])

    @admin.action(description="Recompute consensus and agreement")
    def recompute_consensus(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        if len(ids) > RECOMPUTE_INLINE_LIMIT:
            transaction.on_commit(lambda: ranking_consensus_recompute.delay(ids))
            self.message_user(request, f"Recomputing {len(ids)} tasks on the worker.")
            return
        count = ranking_tasks_consensus_recompute(task_ids=ids)
        self.message_user(request, f"Recomputed the consensus of {count} task(s).")

    @admin.action(description="Mark as gold (the consensus becomes the known ranking)")
    def mark_gold_from_consensus(self, request, queryset):
        done, refused = 0, []
        for task in queryset:
            try:
                ranking_task_gold_from_consensus(task=task)
                done += 1
            except ApplicationError as error:
                refused.append(error.message)
        if done:
            self.message_user(request, f"{done} task(s) are gold now.")
        for message in refused[:10]:
            self.message_user(request, message, level=messages.WARNING)

    @admin.action(description="Unmark gold")
    def unmark_gold(self, request, queryset):
        for task in queryset.filter(is_gold=True):
            ranking_task_gold_set(task=task, order=None)
        self.message_user(request, "Done.")

    @admin.action(description="Take out of the queue (disable)")
    def disable(self, request, queryset):
        for task in queryset.exclude(status=TaskStatus.DISABLED):
            ranking_task_disable(task=task)
        self.message_user(request, "Done.")

    @admin.action(description="Put back in the queue (enable)")
    def enable(self, request, queryset):
        for task in queryset.filter(status=TaskStatus.DISABLED):
            ranking_task_disable(task=task, disabled=False)
        self.message_user(request, "Done.")


def stats_recount_later(*, project_ids) -> None:
    """Deleting rankings takes them out of the running quality figures: recount those projects on the worker."""
    for project_id in set(project_ids):
        transaction.on_commit(lambda project_id=project_id: ranking_stats_rebuild.delay(project_id))


@admin.register(Ranking)
class RankingAdmin(BigTableAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    project_lookup = "task__project"
    list_display = ["id", "task", "labeler", "is_imported", "all_bad", "time_spent_ms", "created_at"]
    list_filter = [project_filter("task__project"), "is_imported", "all_bad", "created_at"]
    search_fields = ["=task__id", "labeler__username"]
    list_select_related = ["task__project", "labeler"]
    ordering = ["-id"]  # newest first through the primary key; the model's ("task", "created_at") sorts them all
    raw_id_fields = ["task", "labeler"]
    readonly_fields = ["created_at"]
    fixed_once_saved = ("task", "labeler")  # its order names that task's answers

    def has_add_permission(self, request):
        return False

    def delete_queryset(self, request, queryset):
        project_ids = list(queryset.values_list("task__project_id", flat=True).distinct())
        task_ids = list(queryset.values_list("task_id", flat=True).distinct())
        super().delete_queryset(request, queryset)
        # the tasks' counts, consensus and status follow (a complete task reopens); with a count left too
        # high `next` would never pick the task again
        ranking_tasks_consensus_recompute(task_ids=task_ids)
        stats_recount_later(project_ids=project_ids)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        ranking_tasks_consensus_recompute(task_ids=[obj.task_id])
        stats_recount_later(project_ids=[obj.task.project_id])


@admin.register(Lease)
class LeaseAdmin(BigTableAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    project_lookup = "task__project"
    list_display = ["task", "labeler", "expires_at", "created_at"]
    list_filter = [project_filter("task__project")]
    list_select_related = ["task__project", "labeler"]
    search_fields = ["=task__id", "labeler__username"]
    raw_id_fields = ["task", "labeler"]
    fixed_once_saved = ("task", "labeler")

    # a lease added, moved or deleted here changes its task's live-lease count: recount it from the rows
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        ranking_tasks_counts_recount(task_ids=[obj.task_id])

    def delete_queryset(self, request, queryset):
        task_ids = list(queryset.values_list("task_id", flat=True).distinct())
        super().delete_queryset(request, queryset)
        ranking_tasks_counts_recount(task_ids=task_ids)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        ranking_tasks_counts_recount(task_ids=[obj.task_id])


@admin.register(Skip)
class SkipAdmin(BigTableAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    project_lookup = "task__project"
    list_display = ["task", "labeler", "reason", "created_at"]
    list_filter = [project_filter("task__project")]
    list_select_related = ["task__project", "labeler"]
    search_fields = ["=task__id", "labeler__username", "reason"]
    raw_id_fields = ["task", "labeler"]
    fixed_once_saved = ("task", "labeler")
