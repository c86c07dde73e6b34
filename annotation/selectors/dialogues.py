"""Reads for demonstrations: who may see which dialogue, my work, the review queue, queue figures."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from annotation.models import (
    Dialogue,
    DialogueStatus,
    Membership,
    Project,
    Prompt,
    Review,
    ReviewDecision,
    Role,
    Turn,
)
from config.ids import parse_object_id


def _turns_in_order() -> Prefetch:
    """Turns by position: the model's ordering ("dialogue", "position") joins every dialogue to sort by
    the dialogue's own ordering, which reads the whole dialogue table for one page of them."""
    return Prefetch("turns", queryset=Turn.objects.order_by("position"))


# A draft is private to its author; reviewers see the rest of the life cycle.
PRIVATE_STATUSES = [DialogueStatus.DRAFT]


def _projects_with_role(*, user: AbstractBaseUser, role: str) -> QuerySet[Project]:
    roles = [r for r in Role.values if Role.rank(r) >= Role.rank(role)]
    return Project.objects.filter(memberships__user=user, memberships__role__in=roles)


def dialogue_visible_to(*, user: AbstractBaseUser) -> QuerySet[Dialogue]:
    """Dialogues ``user`` may read: their own (if still a member), and others' non-drafts where they review."""
    if not user.is_authenticated:
        return Dialogue.objects.none()
    member_of = Membership.objects.filter(user=user).values("project_id")
    reviewer_of = _projects_with_role(user=user, role=Role.REVIEWER).values("id")
    return Dialogue.objects.filter(
        Q(author=user, project_id__in=member_of)
        | (Q(project_id__in=reviewer_of) & ~Q(status__in=PRIVATE_STATUSES))
    )


def dialogue_get_for_user(*, user: AbstractBaseUser, dialogue_id: int | str) -> Dialogue:
    """Return the dialogue if ``user`` may read it, with its turns and reviews; 404 otherwise."""
    try:
        return (
            dialogue_visible_to(user=user)
            .select_related("project", "author", "prompt")
            .prefetch_related(
                _turns_in_order(), Prefetch("reviews", queryset=Review.objects.select_related("reviewer"))
            )
            .get(pk=parse_object_id(dialogue_id))
        )
    except (Dialogue.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such dialogue.") from exc


def dialogue_get_own(*, user: AbstractBaseUser, dialogue_id: int | str) -> Dialogue:
    """Return one of ``user``'s own dialogues (to change it); 404 for anybody else's."""
    dialogue = dialogue_get_for_user(user=user, dialogue_id=dialogue_id)
    if dialogue.author_id != user.pk:
        raise Http404("No such dialogue.")
    return dialogue


def dialogue_list_for_author(
    *, user: AbstractBaseUser, project_id: int | None = None, status: str | None = None
) -> QuerySet[Dialogue]:
    """The user's own dialogues (My work), newest change first, with their turns and reviews."""
    member_of = Membership.objects.filter(user=user).values("project_id")
    dialogues = Dialogue.objects.filter(author=user, project_id__in=member_of)
    if project_id is not None:
        dialogues = dialogues.filter(project_id=project_id)
    if status:
        dialogues = dialogues.filter(status=status)
    return (
        dialogues.select_related("project", "prompt")
        .prefetch_related(_turns_in_order(), Prefetch("reviews", queryset=Review.objects.select_related("reviewer")))
        .order_by("-updated_at", "-id")
    )


def dialogue_review_queue(*, user: AbstractBaseUser, project_id: int | None = None) -> QuerySet[Dialogue]:
    """Submitted dialogues ``user`` may review and hasn't reviewed in this round; oldest first."""
    if not user.is_authenticated:
        return Dialogue.objects.none()
    already = Review.objects.filter(dialogue=OuterRef("pk"), reviewer=user, round=OuterRef("round"))
    dialogues = (
        Dialogue.objects.filter(
            status=DialogueStatus.SUBMITTED,
            project_id__in=_projects_with_role(user=user, role=Role.REVIEWER).values("id"),
        )
        .exclude(author=user)
        .exclude(Exists(already))
    )
    if project_id is not None:
        dialogues = dialogues.filter(project_id=project_id)
    return (
        dialogues.select_related("project", "author", "prompt")
        .prefetch_related(_turns_in_order(), Prefetch("reviews", queryset=Review.objects.select_related("reviewer")))
        .order_by("submitted_at", "id")
    )


def review_current_round(*, dialogue: Dialogue) -> list[Review]:
    return [review for review in dialogue.reviews.all() if review.round == dialogue.round]


def review_latest_rejection(*, dialogue: Dialogue) -> Review | None:
    """The rejection the author must address (from prefetched reviews when present)."""
    rejections = [r for r in dialogue.reviews.all() if r.decision == ReviewDecision.REJECT]
    return max(rejections, key=lambda r: (r.round, r.created_at), default=None)


def prompt_list_for_user(*, user: AbstractBaseUser, project_id: int | None = None) -> QuerySet[Prompt]:
    """Prompts of the user's projects with how many demonstrations each has."""
    if not user.is_authenticated:
        return Prompt.objects.none()
    prompts = Prompt.objects.filter(project__memberships__user=user)
    if project_id is not None:
        prompts = prompts.filter(project_id=project_id)
    # counted per listed prompt (correlated subqueries), not grouped over every prompt before the page is cut
    def dialogues_of_prompt(statuses: list[str]):
        dialogues = Dialogue.objects.filter(prompt=OuterRef("pk"), status__in=statuses).order_by()
        return Coalesce(Subquery(dialogues.values("prompt").annotate(n=Count("pk")).values("n")), 0)

    return prompts.annotate(
        demonstrations=dialogues_of_prompt([DialogueStatus.SUBMITTED, DialogueStatus.ACCEPTED]),
        accepted=dialogues_of_prompt([DialogueStatus.ACCEPTED]),
    ).order_by("id")  # oldest first: a deep page starts at its cursor on the primary key (KeysetPagination)


def project_demonstration_figures(*, project: Project) -> dict:
    """Queue and review figures for the project page."""
    now = timezone.now()
    taken = Q(dialogues__status__in=[DialogueStatus.SUBMITTED, DialogueStatus.ACCEPTED]) | Q(
        dialogues__status=DialogueStatus.DRAFT, dialogues__lease_expires_at__gt=now
    )
    prompts = Prompt.objects.filter(project=project, is_active=True, held_out=False).annotate(
        taken=Count("dialogues", filter=taken)
    )
    by_status = dict(
        Dialogue.objects.filter(project=project).values_list("status").annotate(n=Count("id")).order_by()
    )
    return {
        "prompts": prompts.count(),
        "prompts_open": prompts.filter(taken__lt=project.demonstrations_per_prompt).count(),
        "by_status": {status: by_status.get(status, 0) for status in DialogueStatus.values},
    }
