"""The training side of the loop: model versions, dataset snapshots, runs, their metrics, sampling jobs,
each project's loop policy and the GPU workers seen.

Django and the engine exchange only files (a run folder); these rows record what was asked of the
engine, who holds it, and what came back.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from annotation.models import Project, Prompt
from ranking.models import RankingTask


class ModelKind(models.TextChoices):
    BASE = "base", "Base model"
    SFT = "sft", "SFT policy"
    REWARD = "reward", "Reward model"
    POLICY = "policy", "RL policy (PPO or DPO)"


class SnapshotKind(models.TextChoices):
    SFT = "sft", "SFT dialogues"
    PREFERENCES = "preferences", "Preference pairs"
    PROMPTS = "prompts", "Prompts"


class SnapshotState(models.TextChoices):
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class RunKind(models.TextChoices):
    SFT = "sft", "SFT"
    REWARD = "reward", "Reward model"
    PPO = "ppo", "PPO"
    DPO = "dpo", "DPO"
    SAMPLE = "sample", "Sampling"
    IMPORT_GGUF = "import-gguf", "Import a GGUF model"
    MAKE_TINY = "make-tiny", "Build a tiny model"
    SCORE = "score", "Reward model check"


class RunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def active(cls) -> list[str]:
        return [cls.QUEUED, cls.RUNNING]

    @classmethod
    def finished(cls) -> list[str]:
        return [cls.SUCCEEDED, cls.FAILED, cls.CANCELLED]


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Started by a person"
    LOOP = "loop", "Started by the loop"


class PreferenceMethod(models.TextChoices):
    REWARD_PPO = "reward_ppo", "Reward model, then PPO"
    DPO = "dpo", "DPO"


class DatasetSnapshot(models.Model):
    """A frozen JSONL file of a project's labels: written once, never rewritten; runs read only these."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dataset_snapshots")
    kind = models.CharField(max_length=16, choices=SnapshotKind.choices)
    state = models.CharField(max_length=16, choices=SnapshotState.choices, default=SnapshotState.BUILDING)
    options = models.JSONField(default=dict, blank=True, help_text="The export options it was built with.")
    labels_until = models.DateTimeField(help_text="Labels made up to this instant are in the file, later ones not.")
    file_path = models.CharField(max_length=500, blank=True, help_text="Relative to RLHF_DATA_ROOT.")
    sha256 = models.CharField(max_length=64, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "kind", "-id"], name="snapshot_project_kind_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=SnapshotKind.values), name="snapshot_kind_is_known"),
            models.CheckConstraint(
                condition=~Q(state="ready") | ~Q(sha256=""), name="ready_snapshot_has_sha256"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} snapshot {self.pk} ({self.project})"


class ModelVersion(models.Model):
    """A model folder (Hugging Face save_pretrained) the project can train from, sample or score with."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=16, choices=ModelKind.choices)
    name = models.CharField(max_length=200)
    storage_path = models.CharField(
        max_length=1000, help_text="The save_pretrained folder: relative to RLHF_DATA_ROOT, or absolute."
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children",
        help_text="The model it was trained from.",
    )
    run = models.OneToOneField(
        "TrainingRun", null=True, blank=True, on_delete=models.PROTECT, related_name="output_model",
        help_text="The run that produced it (none for a registered folder).",
    )
    snapshot = models.ForeignKey(
        DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="model_versions",
        help_text="The labels it was trained on.",
    )
    metrics = models.JSONField(default=dict, blank=True, help_text="The run's final figures.")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="one_model_version_name_per_project"),
            models.CheckConstraint(condition=Q(kind__in=ModelKind.values), name="model_kind_is_known"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class TrainingRun(models.Model):
    """One engine command on a GPU worker: what it reads, its config, who holds it, where it stands.

    State: queued → running → succeeded | failed | cancelled. A running run whose holder stops
    heartbeating goes back to queued (a new attempt resumes from the newest checkpoint) until
    ``max_attempts`` is spent.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    snapshot = models.ForeignKey(
        DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    input_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="runs_as_input",
        help_text="The model trained (sft, reward, dpo, ppo's policy) or sampled from.",
    )
    reward_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="runs_as_reward",
        help_text="PPO: the reward model scoring the rollouts.",
    )
    config = models.JSONField(default=dict, help_text="config.json exactly as the engine reads it.")
    output_name = models.CharField(max_length=200, blank=True, help_text="Name of the model version it produces.")
    # Two identical triggers at the same instant (two beat ticks, two engineers) make one run: the
    # key is unique among active runs of a project.
    dedup_key = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    attempt = models.PositiveSmallIntegerField(default=0, help_text="Attempts started so far.")
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    worker = models.CharField(max_length=255, blank=True, help_text="The worker holding (or last holding) it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="When its last queue message was sent.")
    dispatch_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    engine_started_at = models.DateTimeField(null=True, blank=True, help_text="When this attempt's engine began.")
    finished_at = models.DateTimeField(null=True, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(null=True, blank=True)
    eta_seconds = models.PositiveIntegerField(null=True, blank=True)
    run_dir = models.CharField(max_length=500, blank=True, help_text="Relative to RLHF_DATA_ROOT.")
    result = models.JSONField(null=True, blank=True, help_text="The engine's result.json.")
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project", "-id"], name="run_project_idx"),
            models.Index(fields=["state", "heartbeat_at"], name="run_state_heartbeat_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "dedup_key"],
                condition=Q(state__in=["queued", "running"]),
                name="one_active_run_per_dedup_key",
            ),
            models.CheckConstraint(condition=Q(kind__in=RunKind.values), name="run_kind_is_known"),
            models.CheckConstraint(condition=Q(state__in=RunState.values), name="run_state_is_known"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.project})"

    @property
    def is_active(self) -> bool:
        return self.state in RunState.active()

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        from django.utils import timezone

        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    @property
    def progress(self) -> float | None:
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


class MetricPoint(models.Model):
    """One logged step of a run (the engine's metrics.jsonl line; two lines of one step are merged)."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metric_points")
    step = models.PositiveIntegerField()
    values = models.JSONField(default=dict)
    logged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="one_metric_point_per_run_step")]

    def __str__(self) -> str:
        return f"run {self.run_id} step {self.step}"


class SamplingJob(models.Model):
    """A model version answers prompts K times; the answers become the project's ranking tasks.

    It executes as a ``sample`` run (same claim, heartbeat, cancel and resume as training); when the
    run succeeds its answers are turned into ranking tasks in the same transaction.
    """

    class Source(models.TextChoices):
        QUEUE = "queue", "Prompts of the queue not yet sampled by this model"
        SNAPSHOT = "snapshot", "A prompts snapshot"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="sampling_jobs")
    model = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="sampling_jobs")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.QUEUE)
    num_prompts = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(100_000)])
    responses_per_prompt = models.PositiveSmallIntegerField(validators=[MinValueValidator(2), MaxValueValidator(9)])
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="sampling_job")
    tasks_created = models.PositiveIntegerField(default=0)
    tasks_skipped = models.PositiveIntegerField(default=0, help_text="Answers identical to a task already there.")
    ingested_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Sampling job {self.pk} ({self.model})"


class EvaluationState(models.TextChoices):
    """Where an evaluation stands; read from its runs and tasks, never stored."""

    SAMPLING = "sampling", "The models answer"
    JUDGING = "judging", "People judge"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class Evaluation(models.Model):
    """People judge model versions against each other on held-out prompts; the judgements never train anything.

    Each model answers every prompt once, in a ``sample`` run of its own; when the last of them succeeds,
    the answers become evaluation tasks (one per prompt, one answer per model) in the transaction that
    settles that run. Its state is read from its runs and tasks (``training.selectors.evaluations``).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="evaluations")
    prompts = models.ManyToManyField(Prompt, related_name="evaluations", help_text="The held-out prompts judged.")
    snapshot = models.ForeignKey(
        DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="evaluations",
        help_text="The prompts file every model answers.",
    )
    tasks = models.ManyToManyField(
        "ranking.RankingTask", blank=True, related_name="evaluations", help_text="Its evaluation tasks."
    )
    tasks_created = models.PositiveIntegerField(default=0)
    prompts_skipped = models.PositiveIntegerField(default=0, help_text="Prompts some model gave no answer to.")
    ingested_at = models.DateTimeField(null=True, blank=True, help_text="When its answers became tasks.")
    error = models.TextField(blank=True, help_text="Why it could not make its tasks, if it could not.")
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} ({self.project})"


class EvaluationEntry(models.Model):
    """One model version of an evaluation and the sample run that writes its answers."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="entries")
    model = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="evaluation_entries")
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="evaluation_entry")
    position = models.PositiveSmallIntegerField(help_text="Order given (labelers see the answers shuffled).")

    class Meta:
        ordering = ["evaluation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "model"], name="one_entry_per_model_per_evaluation"),
            models.UniqueConstraint(fields=["evaluation", "position"], name="one_entry_per_position_per_evaluation"),
        ]

    def __str__(self) -> str:
        return f"{self.model} in evaluation {self.evaluation_id}"


class LoopPolicy(models.Model):
    """How a project's loop runs itself: thresholds, what follows what, templates, promotion."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="loop_policy")
    enabled = models.BooleanField(default=False, help_text="Beat starts each step once its threshold is met.")
    base_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Where SFT starts; sampled before any SFT policy exists.",
    )
    sft_min_new_demonstrations = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1)],
        help_text="New accepted demonstrations (since the last SFT snapshot) before an SFT run.",
    )
    reward_min_new_rankings = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1)],
        help_text="New rankings (since the last reward or DPO snapshot) before a reward (or DPO) run.",
    )
    prompts_per_sampling_job = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Prompts a sampling job answers (each K times).",
    )
    queue_low_water = models.PositiveIntegerField(
        default=10,
        help_text="Sample again from the current policy when fewer open ranking tasks than this are left (0: never).",
    )
    preference_method = models.CharField(
        max_length=16, choices=PreferenceMethod.choices, default=PreferenceMethod.REWARD_PPO,
        help_text="After rankings: a reward model then PPO, or DPO instead of both.",
    )
    auto_promote = models.BooleanField(
        default=True, help_text="A new policy becomes current by itself; off: it waits for a person to promote it."
    )
    min_win_rate_to_promote = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Before a new policy is promoted automatically, people judge it against the current policy on "
                  "held-out prompts; it is promoted only if the lower end of the 95 % interval of its win rate "
                  "(ties count half) reaches this. Empty: no evaluation.",
    )
    evaluation_prompts = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Held-out prompts an evaluation started by the loop judges.",
    )
    config_templates = models.JSONField(
        default=dict, blank=True,
        help_text='Engine config per run kind, e.g. {"sft": {"num_epochs": 2}, "sample": {"max_new_tokens": 128}}.',
    )
    current_policy = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The policy sampled for new ranking tasks (set by promotion).",
    )
    current_reward_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The reward model PPO uses (set by promotion).",
    )
    last_tick_at = models.DateTimeField(null=True, blank=True, help_text="When the loop last looked for work.")
    last_tick_note = models.TextField(blank=True, help_text="What the loop's last look found in the way, if anything.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "loop policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(preference_method__in=PreferenceMethod.values), name="loop_preference_method_is_known"
            )
        ]

    def __str__(self) -> str:
        return f"Loop of {self.project}"


class Promotion(models.Model):
    """A record that a model version became the project's current policy or reward model."""

    class Role(models.TextChoices):
        POLICY = "policy", "Current policy"
        REWARD = "reward", "Current reward model"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="promotions")
    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="promotions")
    role = models.CharField(max_length=16, choices=Role.choices)
    previous = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    automatic = models.BooleanField(default=False)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.model} → {self.role}"


class GpuWorker(models.Model):
    """A Celery worker consuming the gpu queue, as it last reported itself."""

    hostname = models.CharField(max_length=255, unique=True)
    gpu_count = models.PositiveSmallIntegerField(default=0)
    gpu_names = models.JSONField(default=list, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    current_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField()
    last_heartbeat = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname


class RewardCheck(models.Model):
    """A completed ranking task scored by a reward model that never trained on it.

    Of the task's human preference pairs (every ranking's own pairs, ties left out), how many the model
    scores the same way. Made once per (model, task) from a ``score`` run's scores.jsonl, inside the
    transaction that settles the run. Checks measure; they never feed training.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="reward_checks")
    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="reward_checks")
    task = models.ForeignKey(RankingTask, on_delete=models.CASCADE, related_name="reward_checks")
    run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="reward_checks",
        help_text="The score run that scored it.",
    )
    pairs = models.PositiveIntegerField(help_text="The task's human preference pairs the model scored.")
    pairs_agreed = models.PositiveIntegerField(help_text="Pairs whose chosen answer the model scored higher.")
    mean_margin = models.FloatField(
        null=True, blank=True, help_text="Mean of chosen score minus rejected score over the pairs."
    )
    task_completed_at = models.DateTimeField(help_text="When the task's consensus was computed.")
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["-task_completed_at", "-id"]
        indexes = [models.Index(fields=["project", "task_completed_at"], name="reward_check_project_time_idx")]
        constraints = [
            models.UniqueConstraint(fields=["model", "task"], name="one_reward_check_per_model_task"),
            models.CheckConstraint(
                condition=Q(pairs_agreed__lte=models.F("pairs")), name="reward_check_agreed_within_pairs"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} on task {self.task_id}: {self.pairs_agreed}/{self.pairs}"
