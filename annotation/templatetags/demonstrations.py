from django import template

from annotation.models import DialogueStatus, Membership, Role
from annotation.selectors.dialogues import (
    dialogue_list_for_author,
    dialogue_review_queue,
    review_latest_rejection,
)

register = template.Library()


@register.simple_tag
def reviews_anywhere(user) -> bool:
    """True when ``user`` reviews (or manages) at least one project: the nav shows the review queue."""
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(user=user, role__in=[Role.REVIEWER, Role.MANAGER]).exists()


@register.filter
def first_user_turn(dialogue) -> str:
    """The opening user message of a dialogue (from prefetched turns), for lists."""
    return next((turn.content for turn in dialogue.turns.all() if turn.role == "user"), "")


REVIEW_BADGE_CAP = 999


@register.simple_tag
def review_waiting(user, project=None) -> int | str:
    """How many submitted dialogues wait for ``user``'s review (in ``project``, or anywhere); "999+" past that.

    Counted up to the cap only: the badge is on every page, and a backlog of 50,000 would otherwise
    be read through on each of them.
    """
    queue = dialogue_review_queue(user=user, project_id=project.pk if project else None)
    waiting = queue.order_by().values("pk")[: REVIEW_BADGE_CAP + 1].count()
    return f"{REVIEW_BADGE_CAP}+" if waiting > REVIEW_BADGE_CAP else waiting


@register.simple_tag
def rejected_work(user, limit: int = 5) -> dict:
    """The author's rejected dialogues waiting for a revision: the latest few with the reviewer's comment."""
    rejected = dialogue_list_for_author(user=user, status=DialogueStatus.REJECTED)
    latest = list(rejected[:limit])
    return {
        "count": len(latest) if len(latest) < limit else rejected.count(),
        "rows": [(dialogue, review_latest_rejection(dialogue=dialogue)) for dialogue in latest],
    }
