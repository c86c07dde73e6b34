"""Server-rendered pages: login, dashboard, project page."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from annotation.login_throttle import (
    client_address,
    login_failure_record,
    login_failures_clear,
    login_is_blocked,
)
from annotation.selectors.projects import membership_get, membership_list_for_user, project_get_for_user


class ThrottledLoginView(auth_views.LoginView):
    """Django's login page, refusing (429) a username or address after repeated failures."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if login_is_blocked(username=username, address=client_address(request)):
            return render(request, "registration/login_blocked.html", status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        login_failures_clear(username=form.get_user().get_username())
        return super().form_valid(form)

    def form_invalid(self, form):
        login_failure_record(username=self.request.POST.get("username", ""), address=client_address(self.request))
        return super().form_invalid(form)


@login_required
def dashboard(request):
    memberships = membership_list_for_user(user=request.user)
    return render(request, "annotation/dashboard.html", {"memberships": memberships})


@login_required
def project_detail(request, project_id: int):
    project = project_get_for_user(user=request.user, project_id=project_id)
    membership = membership_get(user=request.user, project=project)
    return render(
        request,
        "annotation/project_detail.html",
        {"project": project, "membership": membership, "guideline": project.current_guideline},
    )
