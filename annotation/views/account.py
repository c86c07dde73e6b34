"""Account pages: a person's API tokens (list, create, revoke) and password change / reset.

Password pages are Django's own views (annotation/urls.py) with templates in templates/registration/;
the reset request is throttled per email and client address.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotation.login_throttle import client_address, password_reset_block_get, password_reset_record
from annotation.selectors.api_tokens import api_token_get_for_owner, api_token_list_for_owner
from annotation.services.api_tokens import api_token_create, api_token_revoke


class ApiTokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “training laptop”.")


@login_required
def account_tokens(request):
    """List the person's tokens; a POST creates one and shows its secret on this response only."""
    form = ApiTokenCreateForm(request.POST or None)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        created, secret = api_token_create(user=request.user, name=form.cleaned_data["name"])
        form = ApiTokenCreateForm()
    response = render(request, "annotation/account_tokens.html", {
        "form": form, "now": timezone.now(),
        # a script that logs in through the API on every run makes many tokens: pages of 50
        "tokens": Paginator(api_token_list_for_owner(user=request.user), 50).get_page(request.GET.get("page")),
        "created": created, "secret": secret, "token_days": settings.RLHF_API_TOKEN_DAYS,
    }, status=201 if created else 200)
    if secret:
        response["Cache-Control"] = "no-store"  # the secret must not stay in a cache
    return response


@login_required
@require_POST
def account_token_revoke(request, token_id: int):
    token = api_token_get_for_owner(user=request.user, token_id=token_id)
    api_token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked: it no longer works.")
    return redirect("account-tokens")


class ThrottledPasswordResetView(auth_views.PasswordResetView):
    """Django's reset page, answering 429 (Retry-After) after a few emails to one address an hour."""

    def form_valid(self, form):
        email, address = form.cleaned_data["email"], client_address(self.request)
        block = password_reset_block_get(email=email, address=address)
        if block is not None:
            response = self.render_to_response(self.get_context_data(form=form, lock=block), status=429)
            response["Retry-After"] = str(block.retry_after)
            return response
        password_reset_record(email=email, address=address)
        return super().form_valid(form)
