"""Server-rendered pages: login, dashboard, project page."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from annotation.login_throttle import (
    client_address,
    login_block_get,
    login_failure_record,
    login_failures_clear,
)
from annotation.selectors.projects import membership_get, membership_list_for_user, project_get_for_user


class ThrottledLoginView(auth_views.LoginView):
    """Django's login page, refusing (429, Retry-After) a username, or an address at a much higher
    count, after repeated failures; a failed try says how many are left."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        block = login_block_get(username=request.POST.get("username", ""), address=client_address(request))
        if block is not None:
            response = render(request, "registration/login_blocked.html", {"lock": block}, status=429)
            response["Retry-After"] = str(block.retry_after)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        login_failures_clear(username=form.get_user().get_username())
        return super().form_valid(form)

    def form_invalid(self, form):
        tries_left = login_failure_record(
            username=self.request.POST.get("username", ""), address=client_address(self.request)
        )
        return self.render_to_response(self.get_context_data(form=form, tries_left=tries_left))


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
