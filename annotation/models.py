"""Projects, who belongs to them and in which role, their guidelines, demonstrations, and API tokens."""

import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models


class Role(models.TextChoices):
    """Roles in a project. Each role includes the ones before it (a manager may also review and label)."""

    LABELER = "labeler", "Labeler"
    REVIEWER = "reviewer", "Reviewer"
    MANAGER = "manager", "Manager"

    @classmethod
    def rank(cls, role: str) -> int:
        return [cls.LABELER, cls.REVIEWER, cls.MANAGER].index(role)


class Project(models.Model):
    """A labeling and training effort: its people, guidelines, data and the rules of its loop."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    is_archived = models.BooleanField(default=False, help_text="Archived projects serve no new work.")
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    # Demonstrations
    demonstrations_per_prompt = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="How many demonstrations to collect for each prompt of the queue.",
    )
    accepts_required = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Accepting reviews a demonstration needs before it counts as accepted.",
    )
    # Ranking
    responses_per_task = models.PositiveSmallIntegerField(
        default=4,
        validators=[MinValueValidator(2), MaxValueValidator(9)],
        help_text="K: answers sampled for each ranking task.",
    )
    rankings_per_task = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Labelers who rank each task before consensus is computed.",
    )
    gold_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served ranking tasks that are gold tasks with a known ranking (0 to 1).",
    )
    # Work leases (prompts and ranking tasks)
    lease_minutes = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="How long a leased prompt or task stays reserved for its labeler.",
    )

    class Meta:
        ordering = ["name"]
        permissions = [("use_training_api", "Can register models and trigger training through the API")]

    def __str__(self) -> str:
        return self.name

    @property
    def current_guideline(self) -> "Guideline | None":
        return self.guidelines.order_by("-version").first()


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.LABELER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user_and_project")]
        ordering = ["project", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} · {self.role} · {self.project}"

    def has_role(self, role: str) -> bool:
        return Role.rank(self.role) >= Role.rank(role)


class Guideline(models.Model):
    """A version of a project's labeling guidelines (Markdown). The newest version is the one shown."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="guidelines")
    version = models.PositiveIntegerField()
    title = models.CharField(max_length=200, default="Guidelines")
    body = models.TextField(help_text="Markdown. Rendered sanitised: raw HTML and scripts are stripped.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="one_guideline_per_version")]
        ordering = ["project", "-version"]

    def __str__(self) -> str:
        return f"{self.project} guidelines v{self.version}"


# --- Demonstrations: prompts, dialogues written by labelers, and their reviews -----------------------------

TURN_MAX_CHARS = 8_000  # per turn, enforced by the services, the API and the editor's counter
TURNS_MAX = 40  # per dialogue, system turn included
PROMPT_MAX_CHARS = TURN_MAX_CHARS  # a prompt becomes the first user turn


class Source(models.TextChoices):
    WRITTEN = "written", "Written in the app"
    IMPORTED = "imported", "Imported"


class Prompt(models.Model):
    """A user message in a project's queue; labelers write demonstrations that answer it."""

    # indexed with id (Meta): a project's prompts in id order, for keyset pages and the foreign key alike
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts", db_index=False)
    text = models.TextField(validators=[MaxLengthValidator(PROMPT_MAX_CHARS)])
    # sha256 of the text with whitespace collapsed: the same prompt twice in a project is refused
    text_hash = models.CharField(max_length=64, editable=False)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WRITTEN)
    is_active = models.BooleanField(default=True, help_text="Inactive prompts are not served to labelers.")
    # a test set: what the models are judged on must never be what they were trained on
    held_out = models.BooleanField(
        default=False,
        help_text="Kept for evaluations: never served for demonstrations, sampled into ranking tasks or used by PPO.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    # submitted and accepted dialogues when last counted (under this row's lock, by submit and review),
    # so `next-prompt` walks only prompts still short of demonstrations (see docs/ranking.md)
    demonstrations_count = models.PositiveIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "text_hash"], name="one_prompt_per_text_and_project")]
        # the queue `next-prompt` walks (annotation.services.dialogues._candidate_prompt_ids): nearest
        # to its demonstrations first, then oldest; prompts that have them all are outside the walk
        indexes = [
            models.Index(
                fields=["project", "-demonstrations_count", "id"],
                condition=models.Q(is_active=True, held_out=False),
                name="prompt_next_idx",
            ),
            # keyset pages of one project's prompts (GET /api/prompts/) walk it from the cursor
            models.Index(fields=["project", "id"], name="prompt_project_id_idx"),
        ]
        ordering = ["project", "id"]

    def __str__(self) -> str:
        return self.text[:80]


class DialogueStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    REVISED = "revised", "Being revised"

    @classmethod
    def editable(cls) -> list[str]:
        """Statuses in which the author may change the turns (a rejected one becomes revised)."""
        return [cls.DRAFT, cls.REVISED, cls.REJECTED]


class Dialogue(models.Model):
    """A demonstration: a conversation a labeler wrote, playing both the user and the assistant.

    A draft created from the prompt queue holds a lease on its prompt until ``lease_expires_at``;
    the lease keeps other labelers off the prompt once it has enough demonstrations.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dialogues")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dialogues")
    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="dialogues")
    status = models.CharField(max_length=16, choices=DialogueStatus.choices, default=DialogueStatus.DRAFT)
    # bumped by every change; a save based on an older version is refused (two tabs never overwrite)
    version = models.PositiveIntegerField(default=1)
    # how many times it was submitted; reviews count only for the current round
    round = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WRITTEN)
    # sha256 of an imported conversation, so importing a file twice skips what is already there
    import_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "author"],
                condition=models.Q(prompt__isnull=False),
                name="one_dialogue_per_prompt_and_author",
            ),
            models.UniqueConstraint(
                fields=["project", "import_hash"],
                condition=~models.Q(import_hash=""),
                name="one_imported_dialogue_per_content",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=DialogueStatus.values), name="dialogue_status_is_known"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="accepted") | models.Q(accepted_at__isnull=False),
                name="accepted_dialogue_has_accepted_at",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status", "accepted_at"], name="dialogue_export_idx"),
            models.Index(fields=["author", "status"], name="dialogue_author_status_idx"),
            # My work and the API's list of my dialogues: newest change first, a page at a time
            models.Index(fields=["author", "-updated_at", "-id"], name="dialogue_author_recent_idx"),
            # the review queue: submitted dialogues, oldest submission first
            models.Index(
                fields=["submitted_at", "id"], condition=models.Q(status="submitted"), name="dialogue_review_queue_idx"
            ),
        ]
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"Dialogue {self.pk} · {self.author} · {self.status}"

    def clean(self) -> None:
        # admin's raw-id field accepts any prompt id: a dialogue must stay inside its own project
        if self.prompt_id and self.project_id and self.prompt.project_id != self.project_id:
            raise ValidationError({"prompt": "This prompt belongs to another project."})


class TurnRole(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class Turn(models.Model):
    dialogue = models.ForeignKey(Dialogue, on_delete=models.CASCADE, related_name="turns")
    position = models.PositiveSmallIntegerField()
    role = models.CharField(max_length=16, choices=TurnRole.choices)
    content = models.TextField(blank=True, validators=[MaxLengthValidator(TURN_MAX_CHARS)])

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dialogue", "position"], name="one_turn_per_position"),
            models.CheckConstraint(condition=models.Q(role__in=TurnRole.values), name="turn_role_is_known"),
        ]
        ordering = ["dialogue", "position"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class ReviewDecision(models.TextChoices):
    ACCEPT = "accept", "Accept"
    REJECT = "reject", "Reject"


class Review(models.Model):
    """A reviewer's decision on one submission (round) of a dialogue."""

    dialogue = models.ForeignKey(Dialogue, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    round = models.PositiveIntegerField()
    decision = models.CharField(max_length=8, choices=ReviewDecision.choices)
    comment = models.TextField(blank=True, validators=[MaxLengthValidator(TURN_MAX_CHARS)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dialogue", "reviewer", "round"], name="one_review_per_reviewer_and_round"),
            models.CheckConstraint(condition=models.Q(decision__in=ReviewDecision.values), name="review_decision_is_known"),
        ]
        ordering = ["dialogue", "-created_at"]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.decision}s dialogue {self.dialogue_id} (round {self.round})"


class ApiTokenRevocation(models.TextChoices):
    OWNER = "owner", "Revoked by its owner"
    LOGOUT = "logout", "Logged out through the API"
    PASSWORD = "password", "Password changed"
    ADMIN = "admin", "Revoked by an administrator"


class ApiToken(models.Model):
    """A secret for ``Authorization: Token <secret>``. Only its SHA-256 is stored: the secret is
    shown once, when the token is created (annotation/services/api_tokens.py)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # sha256 of a 256-bit random secret: no salt or slow hash needed, and a unique index finds it
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="The secret's first characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=20, choices=ApiTokenRevocation.choices, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def digest_of(secret: str) -> str:
        """Return the stored form of a secret."""
        return hashlib.sha256(secret.encode()).hexdigest()


class ImportJobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"  # nothing was imported: ``error`` says why (``errors``: the wrong lines)


class ImportJobProgress:
    """What an import job's page and API show of its state (ProjectImportJob here, ranking.RankingImportJob)."""

    state: str
    lines_done: int
    lines_total: int

    @property
    def is_finished(self) -> bool:
        return self.state in (ImportJobState.DONE, ImportJobState.FAILED)

    @property
    def progress(self) -> float:
        """Share of the file's lines read, 0 to 1 (1 once finished)."""
        if self.is_finished:
            return 1.0
        return min(1.0, self.lines_done / self.lines_total) if self.lines_total else 0.0


class ProjectImportJob(ImportJobProgress, models.Model):
    """A prompt or demonstration file imported by the worker, all or nothing: its progress, then what it created or why not.

    The same design as ranking's ``RankingImportJob``: the upload waits under the data root, the
    worker imports it in one transaction and writes its progress on a second connection.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    format = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, help_text="What the format holds: prompts or dialogues.")
    skip_invalid = models.BooleanField(default=False)
    dialogue_status = models.CharField(
        max_length=16, choices=DialogueStatus.choices, default=DialogueStatus.ACCEPTED,
        help_text="Imported demonstrations are accepted, or submitted for review.",
    )
    file_name = models.CharField(max_length=255, blank=True, help_text="The uploaded file's name.")
    file_path = models.CharField(
        max_length=500, blank=True, help_text="Where the upload waits, under the data root; emptied once it is read."
    )
    size_bytes = models.BigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=ImportJobState.choices, default=ImportJobState.QUEUED)
    lines_total = models.PositiveIntegerField(default=0, help_text="Lines in the file.")
    lines_done = models.PositiveIntegerField(default=0, help_text="Lines read so far.")
    rows = models.PositiveIntegerField(default=0, help_text="Non-blank lines (CSV: rows) read.")
    created = models.PositiveIntegerField(default=0, help_text="Prompts or dialogues created.")
    duplicates_count = models.PositiveIntegerField(default=0)
    invalid_count = models.PositiveIntegerField(default=0, help_text="Lines skipped as invalid (skip_invalid only).")
    report = models.JSONField(default=dict, blank=True, help_text="duplicates, skipped: counts and the first lines.")
    error = models.TextField(blank=True)
    error_line = models.PositiveIntegerField(null=True, blank=True, help_text="The wrong line, when one is.")
    errors = models.JSONField(default=list, blank=True, help_text='The wrong lines: ["line N: why", …].')
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="project_import_job_recent_idx")]

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.file_name or 'a file'} into {self.project} ({self.state})"
