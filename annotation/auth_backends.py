"""Authentication by username and password, the username taken in its canonical form."""

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q

from annotation.usernames import user_find_by_username


class CanonicalUsernameBackend(ModelBackend):
    """Django's ModelBackend (permissions included) finding the account by canonical username.

    The login page and the token endpoint both authenticate through here, and the login throttle
    counts the same canonical form: any spelling that can log in as an account spends its tries.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        user = user_find_by_username(username=username)
        if user is None:
            # hash anyway, so an unknown username takes as long as a wrong password
            get_user_model()().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    async def aauthenticate(self, request, username=None, password=None, **kwargs):
        return await sync_to_async(self.authenticate)(request, username=username, password=password, **kwargs)

    def get_all_permissions(self, user_obj, obj=None):
        """ModelBackend's permissions (the user's own and their groups'), read in one query instead of two.

        Every API call that checks ``annotation.use_training_api`` (``next`` shows ML engineers the
        answers' generators) pays for it; cached on the user object for the request, as Django does.
        """
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                perms = Permission.objects.all()
            else:
                perms = Permission.objects.filter(Q(user=user_obj) | Q(group__user=user_obj)).distinct()
            perms = perms.values_list("content_type__app_label", "codename").order_by()
            user_obj._perm_cache = {f"{app_label}.{codename}" for app_label, codename in perms}
        return user_obj._perm_cache
