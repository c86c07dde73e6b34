from django.contrib import admin

from annotation.models import Guideline, Membership, Project, Role


class ManagedProjectsAdminMixin:
    """Limit a staff user who is not a superuser to the projects they manage.

    ``project_lookup`` is the path from the model to its project ("" for Project itself).
    Other apps' admins reuse this so that object-level rules hold in admin too.
    """

    project_lookup = "project"

    def _managed_project_ids(self, request):
        return Membership.objects.filter(user=request.user, role=Role.MANAGER).values("project_id")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        field = f"{self.project_lookup}__in" if self.project_lookup else "pk__in"
        return queryset.filter(**{field: self._managed_project_ids(request)})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Project and not request.user.is_superuser:
            kwargs["queryset"] = Project.objects.filter(pk__in=self._managed_project_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


class GuidelineInline(admin.StackedInline):
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


@admin.register(Membership)
class MembershipAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "user__email", "project__name"]
    autocomplete_fields = ["user", "project"]
    list_select_related = ["user", "project"]


@admin.register(Guideline)
class GuidelineAdmin(ManagedProjectsAdminMixin, admin.ModelAdmin):
    list_display = ["project", "version", "title", "created_by", "created_at"]
    list_filter = ["project"]
    search_fields = ["title", "body", "project__name"]
    list_select_related = ["project", "created_by"]
    readonly_fields = ["created_at"]
