"""A project with a bit of everything, and a crawler that opens every page a role can reach from its menu.

The CSP and phone-width tests walk the site the way a person would (follow every same-origin link),
so a page added later is checked without anyone listing it here.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from annotation.models import ProjectImportJob, ReviewDecision, Role
from annotation.services.dialogues import dialogue_review, dialogue_submit
from annotation.services.projects import guideline_publish
from ranking.models import ImportJobState, RankingImportJob
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.ranking.factories import RankingFactory, RankingTaskFactory
from tests.training.evaluations import evaluation_answered
from tests.training.factories import TrainingRunFactory, metric_points_add, trained_model
from training.models import ModelKind, RunKind, RunState

# Links a crawler must not follow: they change state, download files or leave the pages.
SKIPPED_PATHS = re.compile(
    r"^/(logout/|api/(?!docs/)|static/|media/|healthz)|\.jsonl$|/download/|/delete/$|/history/$"
)
# Pages that differ only by an object id are one page for this purpose.
ID = re.compile(r"/\d+/")


@dataclass
class Site:
    project: object
    users: dict[str, object]
    run_url: str
    extra_urls: list[str] = field(default_factory=list)


def site_build() -> Site:
    """A project where every page has something to show: tasks, dialogues in every state, runs, models."""
    project = ProjectFactory(name="Everything project")
    guideline_publish(project=project, body="Rank **carefully**.")
    users = {}
    for role in (Role.LABELER, Role.REVIEWER, Role.MANAGER):
        users[role] = UserFactory(username=f"csp-{role}")
        MembershipFactory(project=project, user=users[role], role=role)
    users["admin"] = UserFactory(username="csp-admin", is_staff=True, is_superuser=True)
    MembershipFactory(project=project, user=users["admin"], role=Role.MANAGER)

    for _ in range(3):
        RankingTaskFactory(project=project)
    RankingFactory(task=RankingTaskFactory(project=project), labeler=users[Role.REVIEWER])
    PromptFactory(project=project)
    labeler = users[Role.LABELER]
    reviewer = users[Role.REVIEWER]
    DialogueFactory(project=project, author=labeler)  # a draft
    waiting, rejected, accepted = (DialogueFactory(project=project, author=labeler) for _ in range(3))
    for dialogue in (waiting, rejected, accepted):
        dialogue_submit(dialogue=dialogue, author=labeler)
    dialogue_review(dialogue=rejected, reviewer=reviewer, decision=ReviewDecision.REJECT, comment="Too short.")
    dialogue_review(dialogue=accepted, reviewer=reviewer, decision=ReviewDecision.ACCEPT)

    run = TrainingRunFactory(project=project, kind=RunKind.SFT, state=RunState.RUNNING, step=3, total_steps=12,
                             finished_at=None)
    metric_points_add(run, [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-4} for s in (1, 2, 3)])
    base = trained_model(project, kind=ModelKind.BASE, run_kind=RunKind.SFT, name="base")
    sft = trained_model(project, kind=ModelKind.SFT, run_kind=RunKind.SFT, name="sft-1", parent=base)
    evaluation_answered(project, [base, sft], prompts=1)
    RankingImportJob.objects.create(project=project, created_by=users[Role.MANAGER], format="ranking-jsonl",
                                    file_name="big.jsonl", state=ImportJobState.RUNNING, lines_total=100, lines_done=40)
    ProjectImportJob.objects.create(project=project, created_by=users[Role.MANAGER], format="prompts-jsonl",
                                    kind="prompts", file_name="prompts.jsonl", state=ImportJobState.RUNNING,
                                    lines_total=100, lines_done=40)
    return Site(project=project, users=users, run_url=f"/projects/{project.pk}/training/runs/{run.pk}/")


def page_key(url: str) -> str:
    """Pages that differ only by object ids or by the value of a query parameter count once."""
    parts = urlsplit(url)
    if parts.path.startswith("/admin/"):  # admin's filters and sort orders are the same changelist again
        return ID.sub("/N/", parts.path)
    query = sorted(key for key, _ in parse_qsl(parts.query) if key not in {"page", "o", "q", "p"})
    return ID.sub("/N/", parts.path) + ("?" + urlencode([(k, "") for k in query]) if query else "")


def crawl(page, base_url: str, start: list[str], *, visit, limit: int = 200) -> list[str]:
    """Open ``start`` and every same-origin page linked from the pages opened; call ``visit(page, url)``.

    Returns the URLs opened, in order.
    """
    queue, seen, opened = deque(start), {page_key(url) for url in start}, []
    while queue and len(opened) < limit:
        url = queue.popleft()
        response = page.goto(base_url + url)
        assert response is not None and response.status < 500, f"{url} answered {response and response.status}"
        page.wait_for_load_state("load")
        opened.append(url)
        visit(page, url)
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            if not href.startswith(base_url):
                continue
            path = href[len(base_url):].split("#")[0]
            if not path or SKIPPED_PATHS.search(urlsplit(path).path):
                continue
            key = page_key(path)
            if key not in seen:
                seen.add(key)
                queue.append(path)
    return opened
