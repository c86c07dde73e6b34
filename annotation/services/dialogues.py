"""Writes for demonstrations: prompts, the prompt queue's leases, dialogues and their reviews.

Life cycle of a dialogue: draft → submitted → accepted | rejected; a rejected dialogue is revised
(status ``revised``) and submitted again, which starts a new review round.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import (
    PROMPT_MAX_CHARS,
    TURN_MAX_CHARS,
    TURNS_MAX,
    Dialogue,
    DialogueStatus,
    Project,
    Prompt,
    Review,
    ReviewDecision,
    Role,
    Source,
    Turn,
    TurnRole,
)
from annotation.selectors.projects import user_has_role
from config.exceptions import ApplicationError, ConflictError
from config.sql import for_update_clause

# --- turns -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnData:
    role: str
    content: str


def turns_from_dicts(raw: object) -> list[TurnData]:
    """Parse ``[{"role", "content"}, …]`` as sent by a client or read from a file; raise on bad shapes."""
    if not isinstance(raw, list):
        raise ApplicationError("turns must be a list of {role, content} objects.")
    turns = []
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise ApplicationError(f"turn {number}: expected an object with role and content.")
        role, content = item.get("role"), item.get("content", "")
        if role not in TurnRole.values:
            raise ApplicationError(
                f"turn {number}: role must be one of {', '.join(TurnRole.values)}, not {role!r}."
            )
        if not isinstance(content, str):
            raise ApplicationError(f"turn {number}: content must be a string.")
        turns.append(TurnData(role=role, content=content))
    return turns


def turns_check_draft(*, turns: list[TurnData]) -> None:
    """Check what holds even for a draft: known roles, limits, a system turn only first."""
    if len(turns) > TURNS_MAX:
        raise ApplicationError(f"A dialogue has at most {TURNS_MAX} turns; this one has {len(turns)}.")
    for number, turn in enumerate(turns, start=1):
        if turn.role not in TurnRole.values:
            raise ApplicationError(f"turn {number}: unknown role {turn.role!r}.")
        if len(turn.content) > TURN_MAX_CHARS:
            raise ApplicationError(
                f"turn {number}: {len(turn.content):,} characters; a turn has at most {TURN_MAX_CHARS:,}."
            )
        if "\x00" in turn.content:
            raise ApplicationError(f"turn {number}: holds a NUL character (\\u0000), which can't be stored.")
        if turn.role == TurnRole.SYSTEM and number != 1:
            raise ApplicationError(f"turn {number}: only the first turn may be a system turn.")


def turns_check_complete(*, turns: list[TurnData], prompt: Prompt | None = None) -> None:
    """Check a dialogue is ready for review: user and assistant alternate, the assistant speaks last."""
    turns_check_draft(turns=turns)
    conversation = turns[1:] if turns and turns[0].role == TurnRole.SYSTEM else turns
    if not conversation:
        raise ApplicationError("Write at least one user turn and the assistant's answer.")
    for number, turn in enumerate(turns, start=1):
        if not turn.content.strip():
            raise ApplicationError(f"turn {number} ({turn.role}) is empty.")
    offset = len(turns) - len(conversation)
    for index, turn in enumerate(conversation):
        expected = TurnRole.USER if index % 2 == 0 else TurnRole.ASSISTANT
        if turn.role != expected:
            raise ApplicationError(
                f"turn {index + offset + 1} should be {'an' if expected == TurnRole.ASSISTANT else 'a'} "
                f"{expected} turn: user and assistant turns alternate, "
                "starting with the user."
            )
    if conversation[-1].role != TurnRole.ASSISTANT:
        raise ApplicationError("The last turn must be the assistant's.")
    if prompt is not None and _normalise(conversation[0].content) != _normalise(prompt.text):
        raise ApplicationError("The first user turn must be the prompt this dialogue was started from.")


def turns_hash(*, turns: list[TurnData]) -> str:
    payload = "\x1e".join(f"{turn.role}\x1f{turn.content}" for turn in turns)
    return hashlib.sha256(payload.encode()).hexdigest()


def _turns_replace(*, dialogue: Dialogue, turns: list[TurnData]) -> None:
    dialogue.turns.all().delete()
    rows = [Turn(dialogue=dialogue, position=i, role=t.role, content=t.content) for i, t in enumerate(turns)]
    for row in rows:
        row.full_clean(exclude=["dialogue"])
    Turn.objects.bulk_create(rows)


def _turns_of(dialogue: Dialogue) -> list[TurnData]:
    return [TurnData(role=t.role, content=t.content) for t in dialogue.turns.order_by("position")]


# --- prompts -----------------------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    return " ".join(text.split())


def prompt_text_hash(text: str) -> str:
    """Hash used to spot the same prompt twice (whitespace differences ignored)."""
    return hashlib.sha256(_normalise(text).encode()).hexdigest()


def prompt_create(
    *, project: Project, text: str, created_by: AbstractBaseUser | None, source: str = Source.WRITTEN
) -> Prompt:
    """Add a prompt to the project's queue; the same text twice in a project is refused."""
    text = text.strip()
    if not text:
        raise ApplicationError("A prompt can't be empty.")
    if len(text) > PROMPT_MAX_CHARS:
        raise ApplicationError(
            f"A prompt has at most {PROMPT_MAX_CHARS:,} characters; this one has {len(text):,}."
        )
    prompt = Prompt(
        project=project, text=text, text_hash=prompt_text_hash(text), source=source, created_by=created_by
    )
    if Prompt.objects.filter(project=project, text_hash=prompt.text_hash).exists():
        raise ApplicationError("This prompt is already in the project.")
    prompt.full_clean()
    try:
        with transaction.atomic():
            prompt.save()
    except IntegrityError as exc:  # the same text added by someone else a moment ago
        raise ApplicationError("This prompt is already in the project.") from exc
    return prompt


# --- leases on the prompt queue ------------------------------------------------------------------------------
#
# A prompt "takes" a slot for each of its dialogues that is submitted or accepted, and for each draft
# holding an unexpired lease. It is served while it takes fewer than demonstrations_per_prompt slots.
# Counting and leasing happen while holding the prompt's row lock (SELECT … FOR UPDATE), so two
# labelers can't both take its last slot. Each attempt is its own transaction holding at most the
# labeler's membership row and one prompt row, always in that order: no deadlocks.


def _slot_filter(now) -> Q:
    return Q(status__in=[DialogueStatus.SUBMITTED, DialogueStatus.ACCEPTED]) | Q(
        status=DialogueStatus.DRAFT, lease_expires_at__gt=now
    )


def _prompt_slots_taken(*, prompt: Prompt, now, excluding: Dialogue | None = None) -> int:
    dialogues = Dialogue.objects.filter(prompt=prompt).filter(_slot_filter(now))
    if excluding is not None:
        dialogues = dialogues.exclude(pk=excluding.pk)
    return dialogues.count()


def prompt_demonstrations_recount(*, prompt_id: int) -> None:
    """Set the prompt's ``demonstrations_count`` from its submitted and accepted dialogues (locks its row).

    Called where a dialogue of the prompt is submitted or reviewed, holding that dialogue's lock (always
    dialogue, then prompt, as ``_lease_renew``). A count left too low only makes `next-prompt` read the
    prompt again (its probe of the rows finds it full); too high would hide it, so every path that
    takes a demonstration away (a rejection) recounts.
    """
    done = Dialogue.objects.filter(
        prompt=OuterRef("pk"), status__in=[DialogueStatus.SUBMITTED, DialogueStatus.ACCEPTED]
    )
    per_prompt = done.order_by().values("prompt").annotate(n=Count("pk")).values("n")
    Prompt.objects.filter(pk=prompt_id).update(
        demonstrations_count=Coalesce(Subquery(per_prompt, output_field=IntegerField()), Value(0))
    )


def _lease_held(*, project: Project, user: AbstractBaseUser, now) -> Dialogue | None:
    return (
        Dialogue.objects.filter(
            project=project,
            author=user,
            status=DialogueStatus.DRAFT,
            prompt__isnull=False,
            lease_expires_at__gt=now,
        )
        .order_by("lease_expires_at")
        .first()
    )


@dataclass(frozen=True)
class LeaseResult:
    dialogue: Dialogue  # when created, with its turns and (no) reviews known: showing it reads nothing
    created: bool  # False when the labeler already held a lease in this project and got it back


def prompt_lease_next(*, project: Project, user: AbstractBaseUser, batch: int = 25) -> LeaseResult | None:
    """Lease the next prompt of the queue to ``user`` as a new draft, or return the draft already leased.

    Return None when every prompt has its demonstrations (or is leased) and the user has none open.
    Don't call inside a transaction that other work depends on: each attempt commits on its own.
    """
    if project.is_archived:
        raise ApplicationError("This project is archived and serves no new work.")
    target = project.demonstrations_per_prompt
    for _ in range(10):  # each pass makes progress: a candidate is leased or was filled by others
        candidate_ids = _candidate_prompt_ids(project=project, user=user, target=target, limit=batch)
        if not candidate_ids:
            break
        locked_ids = []
        for prompt_id in candidate_ids:
            outcome = _lease_attempt(
                project=project, user=user, prompt_id=prompt_id, target=target, wait=False
            )
            if isinstance(outcome, LeaseResult):
                return outcome
            if outcome == "locked":
                locked_ids.append(prompt_id)
        # prompts other labelers were leasing at that instant may still have room: wait for their locks
        for prompt_id in locked_ids:
            outcome = _lease_attempt(
                project=project, user=user, prompt_id=prompt_id, target=target, wait=True
            )
            if isinstance(outcome, LeaseResult):
                return outcome
    held = _lease_held(project=project, user=user, now=timezone.now())
    return LeaseResult(dialogue=held, created=False) if held else None


# `next-prompt` runs these on every call, so they are written out once as SQL: the ORM spent more CPU
# building the walk (a NOT EXISTS probe and a correlated count per row) than PostgreSQL spends running it.
# They run on SQLite too (a laptop, the tiny benches): its row-locking clause is none (config.sql).

# The first servable prompts, nearest to their demonstrations first, then oldest: an index walk
# (``prompt_next_idx``) that starts below ``target`` demonstrations, so prompts that have them all are
# never read; per row it probes whether the user wrote for it and counts the slots taken on it
# (submitted or accepted dialogues, and drafts whose lease is live), and stops after ``limit`` hits.
# Held-out prompts judge models: they are never served.
_CANDIDATE_PROMPTS_SQL = """
SELECT p.id FROM annotation_prompt p
WHERE p.project_id = %(project)s AND p.is_active AND NOT p.held_out AND p.demonstrations_count < %(target)s
  AND NOT EXISTS (SELECT 1 FROM annotation_dialogue mine WHERE mine.prompt_id = p.id AND mine.author_id = %(user)s)
  AND (SELECT count(*) FROM annotation_dialogue d
       WHERE d.prompt_id = p.id
         AND (d.status IN (%(submitted)s, %(accepted)s) OR (d.status = %(draft)s AND d.lease_expires_at > %(now)s))
      ) < %(target)s
ORDER BY p.demonstrations_count DESC, p.id
LIMIT %(limit)s
"""

# one labeler's concurrent requests queue on their membership row (the row alone: no join)
_MEMBERSHIP_LOCK_SQL = "SELECT id FROM annotation_membership WHERE project_id = %(project)s AND user_id = %(user)s"


def _candidate_prompt_ids(*, project: Project, user: AbstractBaseUser, target: int, limit: int) -> list[int]:
    """The first ``limit`` servable prompts for ``user`` (``_CANDIDATE_PROMPTS_SQL``)."""
    params = {
        "project": project.pk,
        "user": user.pk,
        "target": target,
        "limit": limit,
        "now": timezone.now(),
        "submitted": DialogueStatus.SUBMITTED,
        "accepted": DialogueStatus.ACCEPTED,
        "draft": DialogueStatus.DRAFT,
    }
    with connection.cursor() as cursor:
        cursor.execute(_CANDIDATE_PROMPTS_SQL, params)
        return [prompt_id for (prompt_id,) in cursor.fetchall()]


def _lease_attempt(*, project: Project, user: AbstractBaseUser, prompt_id: int, target: int, wait: bool):
    with transaction.atomic():
        # one labeler's concurrent requests queue here, so a double click can't lease two prompts
        with connection.cursor() as cursor:
            cursor.execute(_MEMBERSHIP_LOCK_SQL + for_update_clause(), {"project": project.pk, "user": user.pk})
        now = timezone.now()
        held = _lease_held(project=project, user=user, now=now)
        if held is not None:
            return LeaseResult(dialogue=held, created=False)
        prompt = (
            Prompt.objects.select_for_update(skip_locked=not wait)
            .filter(pk=prompt_id, is_active=True, held_out=False)
            .first()
        )
        if prompt is None:
            servable = Prompt.objects.filter(pk=prompt_id, is_active=True, held_out=False)
            return "locked" if servable.exists() else "gone"
        # read under the prompt's lock, in one query: did I write for it, and how many slots are taken
        taken = Dialogue.objects.filter(prompt=prompt).aggregate(
            mine=Count("pk", filter=Q(author=user)), slots=Count("pk", filter=_slot_filter(now))
        )
        if taken["mine"] or taken["slots"] >= target:
            return "full"
        dialogue = Dialogue(
            project=project,
            author=user,
            prompt=prompt,
            lease_expires_at=now + timedelta(minutes=project.lease_minutes),
        )
        # its constraints and keys hold by construction (checked just above under the lock, fixed
        # values, rows just read): validating them again would cost a query or a savepoint each
        dialogue.full_clean(exclude=["project", "author", "prompt"], validate_constraints=False)
        dialogue.save()
        turns = [
            Turn(dialogue=dialogue, position=0, role=TurnRole.USER, content=prompt.text),
            Turn(dialogue=dialogue, position=1, role=TurnRole.ASSISTANT, content=""),
        ]
        for turn in turns:
            turn.full_clean(exclude=["dialogue"], validate_constraints=False)
        Turn.objects.bulk_create(turns)
        # the new draft is all known: its turns just written, no review yet. Kept on it as
        # prefetch_related keeps what it read, so showing it reads no row again
        dialogue._prefetched_objects_cache = {"turns": turns, "reviews": []}
        return LeaseResult(dialogue=dialogue, created=True)


def _lease_renew(*, dialogue: Dialogue, now) -> None:
    """Extend a leased draft's reservation while its author works on it, if the prompt still has room.

    The caller holds the dialogue's row lock.
    """
    if dialogue.prompt_id is None or dialogue.status != DialogueStatus.DRAFT:
        return
    minutes = dialogue.project.lease_minutes
    if dialogue.lease_expires_at and dialogue.lease_expires_at - now > timedelta(minutes=minutes / 2):
        return  # plenty of time left: skip the prompt lock
    prompt = Prompt.objects.select_for_update().get(pk=dialogue.prompt_id)
    still_held = dialogue.lease_expires_at is not None and dialogue.lease_expires_at > now
    if (
        still_held
        or _prompt_slots_taken(prompt=prompt, now=now, excluding=dialogue)
        < dialogue.project.demonstrations_per_prompt
    ):
        dialogue.lease_expires_at = now + timedelta(minutes=minutes)


# --- dialogues ---------------------------------------------------------------------------------------------


def dialogue_create(*, project: Project, author: AbstractBaseUser, turns: list[TurnData]) -> Dialogue:
    """Start a blank-conversation draft (no prompt from the queue)."""
    if project.is_archived:
        raise ApplicationError("This project is archived and serves no new work.")
    turns_check_draft(turns=turns)
    with transaction.atomic():
        dialogue = Dialogue(project=project, author=author)
        dialogue.full_clean()
        dialogue.save()
        _turns_replace(dialogue=dialogue, turns=turns)
    return dialogue


def _lock_for_change(*, dialogue: Dialogue, expected_version: int | None) -> Dialogue:
    """Lock the dialogue's row and refuse a change based on an older version (409)."""
    locked = Dialogue.objects.select_for_update().select_related("project").get(pk=dialogue.pk)
    if expected_version is not None and expected_version != locked.version:
        raise ConflictError(
            f"This dialogue was changed elsewhere (another tab or window): it is at version {locked.version}, "
            f"your copy is version {expected_version}. Reload to get the latest text.",
            extra={"current_version": locked.version},
        )
    return locked


@transaction.atomic
def dialogue_update(
    *, dialogue: Dialogue, author: AbstractBaseUser, turns: list[TurnData], expected_version: int
) -> Dialogue:
    """Save the author's new turns over version ``expected_version``; a rejected dialogue becomes revised."""
    locked = _lock_for_change(dialogue=dialogue, expected_version=expected_version)
    if locked.author_id != author.pk:
        raise ApplicationError("Only the author can change a dialogue.")
    if locked.status not in DialogueStatus.editable():
        raise ConflictError(f"This dialogue is {locked.status} and can no longer be edited.")
    turns_check_draft(turns=turns)
    now = timezone.now()
    update_fields = ["version", "updated_at"]
    if locked.status == DialogueStatus.REJECTED:
        locked.status = DialogueStatus.REVISED
        update_fields.append("status")
    old_expiry = locked.lease_expires_at
    _lease_renew(dialogue=locked, now=now)
    if locked.lease_expires_at != old_expiry:
        update_fields.append("lease_expires_at")
    if turns != _turns_of(locked):
        _turns_replace(dialogue=locked, turns=turns)
    locked.version += 1
    locked.save(update_fields=update_fields)
    return locked


@transaction.atomic
def dialogue_submit(
    *, dialogue: Dialogue, author: AbstractBaseUser, expected_version: int | None = None
) -> Dialogue:
    """Send a draft (or a revised dialogue) to review."""
    locked = _lock_for_change(dialogue=dialogue, expected_version=expected_version)
    if locked.author_id != author.pk:
        raise ApplicationError("Only the author can submit a dialogue.")
    if locked.status not in (DialogueStatus.DRAFT, DialogueStatus.REVISED, DialogueStatus.REJECTED):
        raise ConflictError(f"This dialogue is already {locked.status}.")
    turns_check_complete(turns=_turns_of(locked), prompt=locked.prompt)
    locked.status = DialogueStatus.SUBMITTED
    locked.round += 1
    locked.version += 1
    locked.submitted_at = timezone.now()
    locked.lease_expires_at = None  # it now takes its prompt's slot as a submitted dialogue
    locked.save(
        update_fields=["status", "round", "version", "submitted_at", "lease_expires_at", "updated_at"]
    )
    if locked.prompt_id is not None:
        prompt_demonstrations_recount(prompt_id=locked.prompt_id)
    return locked


@transaction.atomic
def dialogue_discard(*, dialogue: Dialogue, author: AbstractBaseUser) -> None:
    """Delete the author's draft and give its prompt back to the queue."""
    locked = _lock_for_change(dialogue=dialogue, expected_version=None)
    if locked.author_id != author.pk:
        raise ApplicationError("Only the author can discard a dialogue.")
    if locked.status != DialogueStatus.DRAFT:
        raise ConflictError("Only a draft that was never submitted can be discarded.")
    locked.delete()


@transaction.atomic
def dialogue_review(
    *, dialogue: Dialogue, reviewer: AbstractBaseUser, decision: str, comment: str = ""
) -> Review:
    """Record a reviewer's decision on a submitted dialogue and settle its status.

    ``project.accepts_required`` accepts in the current round accept it; one rejection rejects it.
    """
    locked = _lock_for_change(dialogue=dialogue, expected_version=None)
    if not user_has_role(user=reviewer, project=locked.project, role=Role.REVIEWER):
        raise ApplicationError("Only the project's reviewers and managers review dialogues.")
    return _review_record(dialogue=locked, reviewer=reviewer, decision=decision, comment=comment)


def _review_record(*, dialogue: Dialogue, reviewer: AbstractBaseUser, decision: str, comment: str) -> Review:
    if dialogue.author_id == reviewer.pk:
        raise ApplicationError("You can't review your own dialogue.")
    if dialogue.status != DialogueStatus.SUBMITTED:
        raise ConflictError(f"This dialogue is {dialogue.status}, not waiting for review.")
    if decision not in ReviewDecision.values:
        raise ApplicationError(f"decision must be one of {', '.join(ReviewDecision.values)}.")
    comment = comment.strip()
    if len(comment) > TURN_MAX_CHARS:
        raise ApplicationError(
            f"The comment has {len(comment):,} characters; a comment has at most {TURN_MAX_CHARS:,}."
        )
    if "\x00" in comment:
        raise ApplicationError("The comment holds a NUL character (\\u0000), which can't be stored.")
    if decision == ReviewDecision.REJECT and not comment:
        raise ApplicationError("Say why you reject it: the author needs the comment to revise it.")
    if Review.objects.filter(dialogue=dialogue, reviewer=reviewer, round=dialogue.round).exists():
        raise ConflictError("You already reviewed this submission.")
    review = Review(
        dialogue=dialogue, reviewer=reviewer, round=dialogue.round, decision=decision, comment=comment
    )
    review.full_clean()
    review.save()
    now = timezone.now()
    if decision == ReviewDecision.REJECT:
        dialogue.status, dialogue.rejected_at = DialogueStatus.REJECTED, now
        dialogue.version += 1
        dialogue.save(update_fields=["status", "rejected_at", "version", "updated_at"])
        if dialogue.prompt_id is not None:  # the prompt wants a demonstration again
            prompt_demonstrations_recount(prompt_id=dialogue.prompt_id)
    else:
        accepts = Review.objects.filter(
            dialogue=dialogue, round=dialogue.round, decision=ReviewDecision.ACCEPT
        ).count()
        if accepts >= dialogue.project.accepts_required:
            dialogue.status, dialogue.accepted_at = DialogueStatus.ACCEPTED, now
            dialogue.version += 1
            dialogue.save(update_fields=["status", "accepted_at", "version", "updated_at"])
    return review


def dialogue_decide_as_manager(
    *, dialogue: Dialogue, manager: AbstractBaseUser, decision: str, comment: str
) -> Dialogue:
    """Settle a submitted dialogue at once (admin bulk action): accept or reject, whatever the count."""
    with transaction.atomic():
        locked = _lock_for_change(dialogue=dialogue, expected_version=None)
        if not (
            manager.is_superuser or user_has_role(user=manager, project=locked.project, role=Role.MANAGER)
        ):
            raise ApplicationError("Only the project's managers settle dialogues.")
        _review_record(dialogue=locked, reviewer=manager, decision=decision, comment=comment)
        if decision == ReviewDecision.ACCEPT and locked.status != DialogueStatus.ACCEPTED:
            locked.status, locked.accepted_at = DialogueStatus.ACCEPTED, timezone.now()
            locked.version += 1
            locked.save(update_fields=["status", "accepted_at", "version", "updated_at"])
        return locked
