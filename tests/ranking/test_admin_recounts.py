"""Rows deleted (or added) in Django admin keep the counts `next` walks by: a task or prompt is never hidden."""

import pytest
from django.utils import timezone

from annotation.models import DialogueStatus, Prompt, Role
from annotation.services.dialogues import prompt_demonstrations_recount
from ranking.models import Lease, RankingTask, TaskStatus
from ranking.services.leasing import ranking_task_lease_next
from ranking.services.rankings import ranking_submit
from tests.annotation.factories import DialogueFactory, PromptFactory
from tests.factories import ProjectFactory
from tests.ranking.factories import RankingTaskFactory, response_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = ProjectFactory()
    project.rankings_per_task = 1
    project.save(update_fields=["rankings_per_task"])
    return project


def test_a_ranking_deleted_in_admin_reopens_its_task_for_next(admin_client, project, make_member):
    first, second = make_member(project, Role.LABELER), make_member(project, Role.LABELER)
    task = RankingTaskFactory(project=project, answers=2)
    ranking = ranking_submit(task=task, labeler=first, order=[[i] for i in response_ids(task)]).ranking
    task.refresh_from_db()
    assert (task.status, task.rankings_count) == (TaskStatus.COMPLETE, 1)

    response = admin_client.post(f"/admin/ranking/ranking/{ranking.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    task.refresh_from_db()
    assert (task.status, task.rankings_count) == (TaskStatus.OPEN, 0)
    assert ranking_task_lease_next(project=project, labeler=second).task == task


def test_a_lease_deleted_in_admin_gives_its_slot_back(admin_client, project, make_member):
    holder, other = make_member(project, Role.LABELER), make_member(project, Role.LABELER)
    task = RankingTaskFactory(project=project, answers=2)
    lease = ranking_task_lease_next(project=project, labeler=holder)
    assert RankingTask.objects.get(pk=task.pk).leases_count == 1
    assert ranking_task_lease_next(project=project, labeler=other) is None  # its one slot is taken

    response = admin_client.post(
        "/admin/ranking/lease/", {"action": "delete_selected", "_selected_action": [lease.pk], "post": "yes"}
    )
    assert response.status_code == 302 and not Lease.objects.filter(pk=lease.pk).exists()
    assert RankingTask.objects.get(pk=task.pk).leases_count == 0
    assert ranking_task_lease_next(project=project, labeler=other).task == task


def test_a_submitted_dialogue_deleted_in_admin_no_longer_counts_for_its_prompt(admin_client, project, make_member):
    author = make_member(project, Role.LABELER)
    prompt = PromptFactory(project=project)
    dialogue = DialogueFactory(project=project, author=author, prompt=prompt, status=DialogueStatus.SUBMITTED,
                               submitted_at=timezone.now())
    prompt_demonstrations_recount(prompt_id=prompt.pk)
    assert Prompt.objects.get(pk=prompt.pk).demonstrations_count == 1

    response = admin_client.post(f"/admin/annotation/dialogue/{dialogue.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Prompt.objects.get(pk=prompt.pk).demonstrations_count == 0
