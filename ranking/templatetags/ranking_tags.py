"""Template helpers for the ranking links on shared pages (project page, navigation)."""

from django import template

from annotation.models import Role
from annotation.selectors import user_has_role, user_manages_project_data
from ranking.selectors import WaitingCount, ranking_tasks_waiting_count

register = template.Library()


@register.simple_tag
def ranking_waiting(project, user) -> WaitingCount:
    """``{% ranking_waiting project user as waiting %}``: tasks the user could still be served
    (``waiting.count``; ``waiting.is_estimate`` when it is the planner's estimate)."""
    return ranking_tasks_waiting_count(project=project, labeler=user)


@register.simple_tag
def ranking_can_manage(project, user) -> bool:
    """Managers and ML engineers of the project: export preferences."""
    return user_manages_project_data(user=user, project=project)


@register.simple_tag
def ranking_is_manager(project, user) -> bool:
    return user_has_role(user=user, project=project, role=Role.MANAGER)


@register.filter
def percent(value) -> str:
    """0.8312 -> "83%"; None -> "–"."""
    return "–" if value is None else f"{value * 100:.0f}%"


@register.filter
def decimal2(value) -> str:
    return "–" if value is None else f"{value:.2f}"


@register.filter
def seconds(milliseconds) -> str:
    """Milliseconds as seconds, "12.3 s"; None -> "–"."""
    return "–" if milliseconds is None else f"{milliseconds / 1000:.1f} s"
