from django.contrib import admin

from annotation.admin_lists import BigTableAdminMixin, member_filter, project_filter
from annotation.admin_scoping import ManagedProjectsAdminMixin
from annotation.models import Guideline, Membership, Project
from annotation.services.projects import membership_remove, membership_save


class MembershipInline(ManagedProjectsAdminMixin, admin.TabularInline):
    model = Membership
    any_user_fields = ("user",)  # a manager adds people who are in none of their projects yet
    extra = 1
    autocomplete_fields = ["user"]


class GuidelineInline(ManagedProjectsAdminMixin, admin.StackedInline):
    model = Guideline
    extra = 0
    fields = ["version", "title", "body", "created_by", "created_at"]
    readonly_fields = ["created_at"]
    ordering = ["-version"]
    show_change_link = True


@admin.register(Project)
class ProjectAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    project_lookup = ""
    list_display = ["name", "slug", "member_count", "responses_per_task", "rankings_per_task", "is_archived", "created_at"]
    list_filter = ["is_archived", "created_at"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline, GuidelineInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "is_archived"]}),
        ("Demonstrations", {"fields": ["demonstrations_per_prompt", "accepts_required"]}),
        ("Ranking", {"fields": ["responses_per_task", "rankings_per_task", "gold_rate"]}),
        ("Work leases", {"fields": ["lease_minutes"]}),
    ]

    def has_add_permission(self, request):
        # a project is created by a superuser, who then names its managers
        return request.user.is_superuser

    @admin.display(description="members")
    def member_count(self, project: Project) -> int:
        return project.memberships.count()

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        # through the services, so an added member, a changed role and a removal are audited
        memberships = formset.save(commit=False)
        for membership in formset.deleted_objects:
            membership_remove(membership=membership, removed_by=request.user)
        for membership in memberships:
            membership_save(membership=membership, changed_by=request.user)


@admin.register(Membership)
class MembershipAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    any_user_fields = ("user",)
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "user__email", "project__name"]
    autocomplete_fields = ["user", "project"]
    list_select_related = ["user", "project"]

    # through the services, so an added member, a changed role and a removal are audited
    def save_model(self, request, obj, form, change):
        membership_save(membership=obj, changed_by=request.user)

    def delete_model(self, request, obj):
        membership_remove(membership=obj, removed_by=request.user)

    def delete_queryset(self, request, queryset):
        for membership in queryset.select_related("user", "project"):
            membership_remove(membership=membership, removed_by=request.user)


@admin.register(Guideline)
class GuidelineAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["project", "version", "title", "created_by", "created_at"]
    list_filter = [("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["title", "body", "project__name"]
    list_select_related = ["project", "created_by"]
    readonly_fields = ["created_at"]


# --- Demonstrations ----------------------------------------------------------------------------------------

from django.contrib import messages  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.db.models import Count, F, OuterRef, Subquery  # noqa: E402
from django.db.models.functions import Coalesce  # noqa: E402
from django.forms.models import BaseInlineFormSet  # noqa: E402

from annotation.models import Dialogue, DialogueStatus, Prompt, Review, ReviewDecision, Turn  # noqa: E402
from annotation.services.dialogues import (  # noqa: E402
    TurnData,
    dialogue_decide_as_manager,
    prompt_demonstrations_recount,
    turns_check_complete,
    turns_check_draft,
)
from config.exceptions import ApplicationError  # noqa: E402


@admin.register(Prompt)
class PromptAdmin(BigTableAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["short_text", "project", "source", "is_active", "held_out", "dialogue_count", "created_by",
                    "created_at"]
    list_filter = ["is_active", "held_out", "source", project_filter()]
    ordering = ["-id"]  # newest first, through the primary key
    search_fields = ["text"]
    list_select_related = ["project", "created_by"]
    readonly_fields = ["text_hash", "created_at"]
    fields = ["project", "text", "source", "is_active", "held_out", "created_by", "text_hash", "created_at"]
    actions = ["deactivate", "activate", "hold_out"]

    def get_queryset(self, request):
        # counted per listed prompt, not grouped over the whole table before the page is cut
        dialogues = Dialogue.objects.filter(prompt=OuterRef("pk")).order_by().values("prompt").annotate(n=Count("pk"))
        return super().get_queryset(request).annotate(n_dialogues=Coalesce(Subquery(dialogues.values("n")), 0))

    def save_model(self, request, obj, form, change):
        from annotation.services.dialogues import prompt_text_hash

        obj.text_hash = prompt_text_hash(obj.text)
        super().save_model(request, obj, form, change)

    @admin.display(description="prompt")
    def short_text(self, prompt: Prompt) -> str:
        return prompt.text[:100]

    @admin.display(description="dialogues", ordering="n_dialogues")
    def dialogue_count(self, prompt: Prompt) -> int:
        return prompt.n_dialogues

    @admin.action(description="Stop serving the selected prompts")
    def deactivate(self, request, queryset):
        self.message_user(request, f"{queryset.update(is_active=False)} prompts deactivated.")

    @admin.action(description="Serve the selected prompts again")
    def activate(self, request, queryset):
        self.message_user(request, f"{queryset.update(is_active=True)} prompts activated.")

    @admin.action(description="Hold the selected prompts out for evaluations")
    def hold_out(self, request, queryset):
        self.message_user(request, f"{queryset.update(held_out=True)} prompts held out: only evaluations use them now.")


class TurnInlineFormSet(BaseInlineFormSet):
    """Turns edited in admin obey the editor's rules: a draft's (roles, limits, system first), and for a
    dialogue that is submitted or accepted a complete conversation's (alternation, the assistant last,
    the prompt first), so an admin edit can't put a dialogue into the SFT export that breaks training."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        kept.sort(key=lambda form: form.cleaned_data["position"])
        turns = [TurnData(role=form.cleaned_data["role"], content=form.cleaned_data["content"]) for form in kept]
        dialogue = self.instance  # carries the status being saved with it
        try:
            if dialogue.status in DialogueStatus.editable():
                turns_check_draft(turns=turns)
            else:
                turns_check_complete(turns=turns, prompt=dialogue.prompt)
        except ApplicationError as exc:
            raise ValidationError(f"Turns in order of position: {exc.message}") from exc


class TurnInline(ManagedProjectsAdminMixin, admin.TabularInline):
    model = Turn
    formset = TurnInlineFormSet
    extra = 0
    fields = ["position", "role", "content"]
    ordering = ["position"]


class ReviewInline(ManagedProjectsAdminMixin, admin.TabularInline):
    model = Review
    extra = 0
    fields = ["round", "reviewer", "decision", "comment", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # reviews are written through the review queue or the bulk actions


@admin.register(Dialogue)
class DialogueAdmin(BigTableAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["id", "opening", "project", "author", "status", "round", "source", "turn_count", "updated_at"]
    list_filter = ["status", "source", "updated_at", project_filter(), member_filter("author", title="author")]
    ordering = ["-id"]  # through the primary key: sorting by updated_at would read every dialogue
    search_fields = ["turns__content", "author__username"]
    list_select_related = ["project", "author"]
    raw_id_fields = ["prompt"]
    autocomplete_fields = ["author"]
    readonly_fields = [
        "version", "round", "import_hash", "created_at", "updated_at", "submitted_at", "accepted_at", "rejected_at",
    ]
    inlines = [TurnInline, ReviewInline]
    actions = ["accept_selected", "reject_selected"]

    def get_queryset(self, request):
        opening = Turn.objects.filter(dialogue=OuterRef("pk"), role="user").order_by("position").values("content")[:1]
        turns = Turn.objects.filter(dialogue=OuterRef("pk")).order_by().values("dialogue").annotate(n=Count("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(n_turns=Coalesce(Subquery(turns.values("n")), 0), opening_text=Subquery(opening))
        )

    # a submitted or accepted dialogue deleted here no longer counts for its prompt: without the
    # recount `next-prompt` would skip the prompt as if it had its demonstrations
    def delete_queryset(self, request, queryset):
        prompt_ids = [pk for pk in queryset.values_list("prompt_id", flat=True).distinct() if pk is not None]
        super().delete_queryset(request, queryset)
        for prompt_id in prompt_ids:
            prompt_demonstrations_recount(prompt_id=prompt_id)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        if obj.prompt_id is not None:
            prompt_demonstrations_recount(prompt_id=obj.prompt_id)

    def get_search_results(self, request, queryset, search_term):
        results, _ = super().get_search_results(request, queryset, search_term)
        # DISTINCT only for a search (it joins the turns): on the plain list it would read every dialogue
        return (results.distinct() if search_term else results), False

    @admin.display(description="opening message")
    def opening(self, dialogue: Dialogue) -> str:
        return (dialogue.opening_text or "")[:80]

    @admin.display(description="turns", ordering="n_turns")
    def turn_count(self, dialogue: Dialogue) -> int:
        return dialogue.n_turns

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if any(formset.model is Turn and formset.has_changed() for formset in formsets):
            # an editor tab still open on the old turns now gets a conflict instead of overwriting these
            Dialogue.objects.filter(pk=form.instance.pk).update(version=F("version") + 1)

    def _settle(self, request, queryset, decision: str, comment: str) -> None:
        done, refused = 0, []
        for dialogue in queryset.filter(status=DialogueStatus.SUBMITTED):
            try:
                dialogue_decide_as_manager(dialogue=dialogue, manager=request.user, decision=decision, comment=comment)
                done += 1
            except ApplicationError as exc:
                refused.append(f"#{dialogue.pk}: {exc.message}")
        skipped = queryset.exclude(status=DialogueStatus.SUBMITTED).count()
        self.message_user(request, f"{done} dialogues {'accepted' if decision == 'accept' else 'rejected'}.")
        if skipped:
            self.message_user(request, f"{skipped} not waiting for review were left as they are.", messages.WARNING)
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused[:20]), messages.ERROR)

    @admin.action(description="Accept the selected submitted dialogues")
    def accept_selected(self, request, queryset):
        self._settle(request, queryset, ReviewDecision.ACCEPT, "Accepted in bulk by a manager.")

    @admin.action(description="Reject the selected submitted dialogues")
    def reject_selected(self, request, queryset):
        self._settle(request, queryset, ReviewDecision.REJECT, "Rejected in bulk by a manager.")


@admin.register(Review)
class ReviewAdmin(BigTableAdminMixin, ManagedProjectsAdminMixin, admin.ModelAdmin):
    project_lookup = "dialogue__project"
    list_display = ["dialogue", "reviewer", "round", "decision", "created_at"]
    list_filter = ["decision", project_filter("dialogue__project")]
    search_fields = ["comment", "reviewer__username"]
    list_select_related = ["dialogue__author", "reviewer"]
    ordering = ["-id"]  # the model's ("dialogue", "-created_at") sorts every review by its dialogue's order
    readonly_fields = ["dialogue", "reviewer", "round", "decision", "comment", "created_at"]

    def has_add_permission(self, request):
        return False
from annotation import admin_users  # noqa: E402,F401  (the user pages: canonical usernames)
