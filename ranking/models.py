"""Ranking tasks (a conversation and its K answers), labelers' rankings of them, leases and skips.

An ordering is always a list of groups of response ids, best first: ``[[a], [b, c], [d]]`` means
a is best, b and c tie, d is worst. The same shape is used for rankings, consensus and gold.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

from annotation.models import ImportJobProgress, ImportJobState, Membership, Project, Prompt  # noqa: F401 (ImportJobState: ranking.models exports it too)

MIN_RESPONSES = 2
MAX_RESPONSES = 9
MAX_MESSAGE_CHARS = 100_000
MESSAGE_ROLES = ("system", "user", "assistant")


class Flag(models.TextChoices):
    """Per-answer flags, from InstructGPT's labeling interface (Ouyang et al. 2022, appendix B)."""

    FAILS_INSTRUCTION = "fails_instruction", "Fails to follow the instruction"
    HALLUCINATION = "hallucination", "Hallucination / makes things up"
    HARMFUL = "harmful", "Harmful"
    INAPPROPRIATE = "inappropriate", "Inappropriate for a customer assistant"
    SEXUAL = "sexual", "Sexual content"
    VIOLENT = "violent", "Violent content"
    ENCOURAGES_VIOLENCE = "encourages_violence", "Encourages violence or abuse"
    DENIGRATES_PROTECTED_CLASS = "denigrates_protected_class", "Denigrates a protected class"
    HARMFUL_ADVICE = "harmful_advice", "Gives harmful advice"
    OPINION = "opinion", "Expresses an opinion"
    MORAL_JUDGMENT = "moral_judgment", "Expresses a moral judgment"


SCORE_MIN, SCORE_MAX = 1, 7


def context_validate(context) -> None:
    """Raise ValidationError unless ``context`` is a non-empty list of messages ending on a user or system turn.

    The last turn can't be the assistant's: the answers being ranked are the assistant's next turn
    (and the training engine refuses such prompts).
    """
    if not isinstance(context, list) or not context:
        raise ValidationError("context must be a non-empty list of {role, content} messages.")
    for index, message in enumerate(context):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise ValidationError(f"context[{index}] must be an object with exactly role and content.")
        role, content = message.get("role"), message.get("content")
        if role not in MESSAGE_ROLES:
            raise ValidationError(f"context[{index}].role must be one of {', '.join(MESSAGE_ROLES)}; got {role!r}.")
        if not isinstance(content, str) or not content.strip():
            raise ValidationError(f"context[{index}].content must be a non-empty string.")
        if len(content) > MAX_MESSAGE_CHARS:
            raise ValidationError(f"context[{index}].content is longer than {MAX_MESSAGE_CHARS} characters.")
        if "\x00" in content:
            raise ValidationError(f"context[{index}].content holds a NUL character (\\u0000), which can't be stored.")
    if context[-1]["role"] == "assistant":
        raise ValidationError("context must end with a user (or system) turn: the answers are the assistant's reply.")


class TaskIsFixedOnceSaved:
    """A row saved under a task stays with it: a ranking's order and a response's place name that task's answers.

    The task id read from the database is kept (``from_db``, as Django's documentation shows for
    fields that must not change), and ``clean`` and ``save`` refuse another one.
    """

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._saved_task_id = instance.__dict__.get("task_id")
        return instance

    def task_check_unchanged(self) -> None:
        saved = getattr(self, "_saved_task_id", None)
        if saved is not None and self.task_id != saved:
            noun = self._meta.verbose_name
            raise ValidationError({"task": f"A {noun} can't move to another task (it was saved under task {saved})."})


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"  # collecting rankings
    COMPLETE = "complete", "Complete"  # has its rankings; consensus computed
    DISABLED = "disabled", "Disabled"  # taken out of the queue by a manager


class TaskSource(models.TextChoices):
    API = "api", "API"
    RANKING_JSONL = "ranking-jsonl", "ranking-jsonl import"
    HH_RLHF = "hh-rlhf", "hh-rlhf import"
    ADMIN = "admin", "Admin"
    SAMPLING = "sampling", "Sampling job"
    EVALUATION = "evaluation", "Evaluation"


class TaskPurpose(models.TextChoices):
    """What a task's rankings are for: training the reward model, or judging model versions against each other."""

    RANKING = "ranking", "Ranking (its pairs train the reward model)"
    # one answer per model version: pick the best or call a tie; never exported, never trains anything
    EVALUATION = "evaluation", "Evaluation (pick one or tie)"


class RankingTask(models.Model):
    """A conversation context and K answers to rank, and the consensus once enough labelers ranked it."""

    # indexed with id (Meta): a project's tasks in id order, for keyset pages and the foreign key alike
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ranking_tasks", db_index=False)
    context = models.JSONField(help_text="The conversation so far: [{role, content}, …], ending on a user turn.")
    prompt = models.ForeignKey(
        Prompt,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ranking_tasks",
        help_text="The queue prompt the answers were sampled for, if any (sampling jobs set it).",
    )
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    source = models.CharField(max_length=16, choices=TaskSource.choices, default=TaskSource.API)
    purpose = models.CharField(
        max_length=16, choices=TaskPurpose.choices, default=TaskPurpose.RANKING,
        help_text="Evaluation tasks judge model versions: never exported as preference pairs, never gold.",
    )
    is_gold = models.BooleanField(
        default=False, help_text="Gold tasks have a known ranking; they measure labelers and are served to each once."
    )
    gold_order = models.JSONField(null=True, blank=True, help_text="The known ranking: groups of response ids, best first.")
    consensus_order = models.JSONField(null=True, blank=True, help_text="Ranked-pairs consensus of the task's rankings.")
    agreement = models.FloatField(
        null=True, blank=True, help_text="Mean Kendall tau-b between every two rankings of the task (-1 to 1)."
    )
    consensus_at = models.DateTimeField(null=True, blank=True)
    # sha256 of an imported task's context and answers, so importing a file twice skips what is
    # already there; empty for tasks made otherwise (and for those imported before it existed)
    import_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # kept on the row so `next` is an index walk, not a count over every open task (see docs/ranking.md):
    # set under the task's row lock by whoever adds or removes a ranking or lease
    rankings_count = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    leases_count = models.PositiveIntegerField(
        default=0, db_default=0, editable=False, help_text="Live leases when last counted (expired ones are reclaimed)."
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            # keyset pages of one project's tasks (GET /api/ranking-tasks/) walk it from the cursor, however
            # many other projects' tasks lie between; it serves the foreign key too, so no index of its own
            models.Index(fields=["project", "id"], name="ranking_task_project_id_idx"),
            models.Index(fields=["project", "status", "is_gold"]),
            # `next`: open, not gold; evaluation tasks first ("evaluation" sorts before "ranking", hence
            # ASC), then nearest to completion, then oldest
            models.Index(
                fields=["project", "purpose", "-rankings_count", "id"],
                condition=Q(status="open", is_gold=False),
                name="ranking_task_next_idx",
            ),
            models.Index(
                fields=["project", "rankings_count", "id"],
                condition=Q(status="open", is_gold=True),
                name="ranking_task_gold_next_idx",
            ),
            # the quality page: the most disputed tasks, and the mean agreement, without reading the others
            models.Index(
                fields=["project", "agreement", "id"], condition=Q(agreement__isnull=False),
                name="ranking_task_agreement_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "import_hash"],
                condition=~Q(import_hash=""),
                name="one_imported_ranking_task_per_content",
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False) | Q(gold_order__isnull=False), name="gold_task_has_gold_order"
            ),
            models.CheckConstraint(
                condition=Q(purpose="ranking") | Q(is_gold=False), name="evaluation_task_is_never_gold"
            ),
        ]

    def __str__(self) -> str:
        return f"Ranking task {self.pk} ({self.project})"

    def clean(self) -> None:
        context_validate(self.context)
        if self.prompt_id is not None and self.prompt.project_id != self.project_id:
            raise ValidationError({"prompt": "The prompt belongs to another project."})

    @property
    def prompt_preview(self) -> str:
        last = self.context[-1]["content"] if self.context else ""
        return last if len(last) <= 80 else last[:79] + "…"


class Response(TaskIsFixedOnceSaved, models.Model):
    """One of a task's K answers: sampled from a model (``generator`` names it) or written by a person."""

    # no index of its own: one_response_per_task_position (task, position) serves the foreign key
    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="responses", db_index=False)
    content = models.TextField()
    generator = models.CharField(max_length=200, blank=True, help_text="Model (version) or 'human' that wrote it.")
    position = models.PositiveSmallIntegerField(help_text="Order in which the answers were given (not shown order).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The person who wrote the answer; they are never asked to rank it.",
    )

    class Meta:
        ordering = ["task", "position"]
        constraints = [models.UniqueConstraint(fields=["task", "position"], name="one_response_per_task_position")]

    def __str__(self) -> str:
        return f"Response {self.pk} of task {self.task_id}"

    def save(self, *args, **kwargs):
        self.task_check_unchanged()
        super().save(*args, **kwargs)
        self._saved_task_id = self.task_id

    def clean(self) -> None:
        self.task_check_unchanged()
        if not self.content or not self.content.strip():
            raise ValidationError({"content": "An answer can't be empty."})
        if len(self.content) > MAX_MESSAGE_CHARS:
            raise ValidationError({"content": f"An answer can't be longer than {MAX_MESSAGE_CHARS} characters."})
        if "\x00" in self.content:
            raise ValidationError({"content": "An answer can't hold a NUL character (\\u0000): it can't be stored."})


class Ranking(TaskIsFixedOnceSaved, models.Model):
    """One labeler's ranking of a task's answers (or the human preference an import carried)."""

    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="rankings")
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="rankings"
    )
    is_imported = models.BooleanField(default=False, help_text="Came with an import (e.g. HH-RLHF), not a labeler.")
    order = models.JSONField(help_text="Groups of response ids, best first; a group of several is a tie.")
    flags = models.JSONField(default=dict, blank=True, help_text="{response id: [flag, …]}")
    scores = models.JSONField(default=dict, blank=True, help_text="{response id: 1..7}")
    all_bad = models.BooleanField(default=False, help_text="The labeler found every answer bad.")
    time_spent_ms = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(24 * 3600 * 1000)])
    idempotency_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["task", "labeler"], name="one_ranking_per_labeler_per_task"),
            models.UniqueConstraint(
                fields=["task"], condition=Q(is_imported=True), name="one_imported_ranking_per_task"
            ),
            models.UniqueConstraint(
                fields=["labeler", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="one_ranking_per_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(is_imported=True) | Q(labeler__isnull=False), name="ranking_has_labeler_unless_imported"
            ),
        ]

    def __str__(self) -> str:
        who = "import" if self.is_imported else self.labeler_id
        return f"Ranking {self.pk} of task {self.task_id} by {who}"

    def save(self, *args, **kwargs):
        # refused here as well as in clean: a ranking naming answers of another task breaks its
        # consensus and the preference export of every later reader
        update_fields = kwargs.get("update_fields")
        self.task_check_unchanged()
        if update_fields is None or {"task", "task_id", "order", "flags", "scores"} & set(update_fields):
            self.answers_check()
        super().save(*args, **kwargs)
        self._saved_task_id = self.task_id

    def clean(self) -> None:
        self.task_check_unchanged()
        self.answers_check()

    def answers_check(self) -> None:
        """Raise ValidationError unless the order ranks exactly the task's answers, and flags and scores name only them."""
        from ranking.services.orderings import OrderingError, ordering_check

        answer_ids = set(Response.objects.filter(task_id=self.task_id).values_list("pk", flat=True))
        try:
            ordering_check(self.order, item_ids=answer_ids)
        except OrderingError as error:
            raise ValidationError({"order": str(error)}) from None
        for field in ("flags", "scores"):
            keys = getattr(self, field) or {}
            if not isinstance(keys, dict):
                raise ValidationError({field: f"{field} must be an object keyed by answer id."})
            foreign = sorted(str(key) for key in keys if not str(key).isdigit() or int(key) not in answer_ids)
            if foreign:
                raise ValidationError({field: f"{field} name ids that are not answers of this task: {', '.join(foreign)}."})


def labeler_check_member(*, task_id: int | None, labeler_id: int | None) -> None:
    """Raise ValidationError unless the labeler belongs to the task's project (admin can pick anyone)."""
    if task_id is None or labeler_id is None:
        return
    if not Membership.objects.filter(project__ranking_tasks=task_id, user_id=labeler_id).exists():
        raise ValidationError({"labeler": "This person is not a member of the task's project."})


class Lease(models.Model):
    """A task reserved for a labeler until ``expires_at``: it counts toward the task's rankings meanwhile."""

    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="leases")
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ranking_leases")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "labeler"], name="one_lease_per_labeler_per_task")]
        indexes = [models.Index(fields=["task", "expires_at"])]

    def __str__(self) -> str:
        return f"Lease of task {self.task_id} to {self.labeler_id} until {self.expires_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        labeler_check_member(task_id=self.task_id, labeler_id=self.labeler_id)


class Skip(models.Model):
    """A labeler passed on a task; it is not served to them again."""

    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="skips")
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ranking_skips")
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "labeler"], name="one_skip_per_labeler_per_task")]

    def __str__(self) -> str:
        return f"Skip of task {self.task_id} by {self.labeler_id}"

    def clean(self) -> None:
        labeler_check_member(task_id=self.task_id, labeler_id=self.labeler_id)



# ---- running figures: kept by the services that write rankings, skips and tasks (ranking.services.stats),
# so the quality page and "My stats" read a few rows instead of recomputing the whole project per view


class LabelerStats(models.Model):
    """One labeler's running figures in a project ("My stats", a row of the quality page)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    labeler = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    ranked = models.PositiveIntegerField(default=0)
    ranked_today = models.PositiveIntegerField(default=0, help_text="Rankings made on ``today`` (local date).")
    today = models.DateField(null=True, blank=True)
    skipped = models.PositiveIntegerField(default=0)
    all_bad = models.PositiveIntegerField(default=0)
    agreement_sum = models.FloatField(default=0.0, help_text="Sum of leave-one-out Kendall tau-b over complete tasks.")
    agreement_tasks = models.PositiveIntegerField(default=0)
    # with the sum, the spread of the per-task agreements: how sure the quality page's low-agreement test can be
    agreement_sq_sum = models.FloatField(default=0.0, help_text="Sum of the squares of those tau-b values.")
    gold_hits = models.PositiveIntegerField(default=0)
    gold_pairs = models.PositiveIntegerField(default=0)
    gold_tasks = models.PositiveIntegerField(default=0)
    # {time spent in tenths of a second: rankings}: the median without reading every ranking
    times = models.JSONField(default=dict, blank=True)
    flags = models.JSONField(default=dict, blank=True, help_text="{flag: answers flagged}")

    class Meta:
        verbose_name_plural = "labeler stats"
        constraints = [models.UniqueConstraint(fields=["project", "labeler"], name="one_stats_row_per_labeler")]

    def __str__(self) -> str:
        return f"Ranking figures of {self.labeler_id} in {self.project_id}"


class ProjectRankingStats(models.Model):
    """A project's running ranking figures: rankings counted, and Krippendorff's alpha as its coincidence matrix."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="+")
    rankings = models.PositiveIntegerField(default=0, help_text="Labelers' rankings of tasks that are not disabled.")
    # added by imports in their transaction (an import writes them around the services, in bulk)
    imported_rankings = models.PositiveIntegerField(default=0, help_text="Preferences imports carried.")
    # {"c|k": weight} over every answer of every task with two or more rankings (fractional ranks):
    # additive over tasks, so a task's change adds its new units and takes its old ones back
    coincidences = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "project ranking stats"

    def __str__(self) -> str:
        return f"Ranking figures of {self.project_id}"


class CountedRanking(models.Model):
    """What one ranking adds to the figures now, so a later change to its task takes exactly that back."""

    ranking = models.OneToOneField(Ranking, on_delete=models.CASCADE, primary_key=True, related_name="counted")
    agreement = models.FloatField(null=True, blank=True, help_text="Leave-one-out tau-b with the others' consensus.")
    gold_hits = models.PositiveSmallIntegerField(null=True, blank=True)
    gold_pairs = models.PositiveSmallIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Counted ranking {self.ranking_id}"


class RankingImportJob(ImportJobProgress, models.Model):
    """A ranking-task file imported by the worker, all or nothing: its progress, then what it created or why not."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ranking_import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    format = models.CharField(max_length=32)
    skip_invalid = models.BooleanField(default=False)
    file_name = models.CharField(max_length=255, blank=True, help_text="The uploaded file's name.")
    file_path = models.CharField(
        max_length=500, blank=True, help_text="Where the upload waits, under the data root; emptied once it is read."
    )
    size_bytes = models.BigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=ImportJobState.choices, default=ImportJobState.QUEUED)
    lines_total = models.PositiveIntegerField(default=0, help_text="Lines in the file.")
    lines_done = models.PositiveIntegerField(default=0, help_text="Lines read so far.")
    tasks_created = models.PositiveIntegerField(default=0)
    rankings_imported = models.PositiveIntegerField(default=0)
    duplicates_count = models.PositiveIntegerField(default=0)
    invalid_count = models.PositiveIntegerField(default=0, help_text="Lines skipped as invalid (skip_invalid only).")
    report = models.JSONField(
        default=dict, blank=True, help_text="duplicates, skipped_lines, skipped_invalid: counts and the first lines."
    )
    error = models.TextField(blank=True)
    error_line = models.PositiveIntegerField(null=True, blank=True, help_text="The first wrong line, when one is.")
    errors = models.JSONField(default=list, blank=True, help_text='The first wrong lines: ["line N: why", …].')
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="ranking_import_job_recent_idx")]

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.file_name or 'a file'} into {self.project} ({self.state})"
