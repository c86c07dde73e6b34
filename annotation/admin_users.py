"""Django admin's user pages, storing usernames in their canonical form (annotation/usernames.py).

Imported by annotation/admin.py. Without it an admin could create "Labeler3" beside "labeler3":
two accounts that one canonical login name can't tell apart.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError

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
