"""Projects, who belongs to them and in which role, and their guidelines."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
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
