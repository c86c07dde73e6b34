"""Django admin's user pages, storing usernames in their canonical form (annotation/usernames.py),
and the API tokens list (superusers: see and revoke).

Imported by annotation/admin.py. Without it an admin could create "Labeler3" beside "labeler3":
two accounts that one canonical login name can't tell apart.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db import models

from annotation.admin_scoping import autocomplete_user_choices, managed_project_ids
from annotation.models import ApiToken, ApiTokenRevocation, Membership
from annotation.services.api_tokens import api_token_revoke
from annotation.usernames import user_find_by_username, username_normalize


def _canonical_username_clean(form) -> str:
    username = username_normalize(form.cleaned_data["username"])
    holder = user_find_by_username(username=username)
    if holder is not None and holder.pk != form.instance.pk:
        raise ValidationError("A user with that username already exists.", code="unique")
    return username


class CanonicalUserCreationForm(AdminUserCreationForm):
    def clean_username(self):
        return _canonical_username_clean(self)


class CanonicalUserChangeForm(UserChangeForm):
    def clean_username(self):
        return _canonical_username_clean(self)


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class CanonicalUsernameUserAdmin(UserAdmin):
    add_form = CanonicalUserCreationForm
    form = CanonicalUserChangeForm

    def get_queryset(self, request):
        """A staff manager lists and opens only the people of the projects they manage (and themselves).

        The autocomplete is left whole here (a manager adds people who are not members yet) and is
        narrowed per source field by ``get_search_results``; it shows usernames only, never emails.
        """
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if request.user.is_superuser or (match is not None and match.url_name == "autocomplete"):
            return queryset
        members = Membership.objects.filter(project_id__in=managed_project_ids(request.user)).values("user_id")
        return queryset.filter(models.Q(pk__in=members) | models.Q(pk=request.user.pk))

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return autocomplete_user_choices(request, queryset), may_have_duplicates  # annotation/admin_scoping.py


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Superusers see every API token (never its secret: only a hash is kept) and can revoke them."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at", "revoked_reason"]
    list_filter = ["revoked_reason"]
    list_select_related = ["user"]
    search_fields = ["user__username", "name", "prefix"]
    readonly_fields = list_display
    fields = list_display
    actions = ["revoke_selected"]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return False  # a token's secret is shown to its owner only: they create it on their tokens page

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke_selected(self, request, queryset):
        # the action's own permission: revoking changes nothing but the revocation fields
        if not request.user.is_superuser:
            return
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token, reason=ApiTokenRevocation.ADMIN)
