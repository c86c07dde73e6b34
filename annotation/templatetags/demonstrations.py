from django import template

from annotation.models import Membership, Role

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
