"""Import jobs: a ranking-task file imported by a real Celery worker, all or nothing, with its progress on the API
and a page whose progress bar polls it."""

import io
import json
import time

import pytest

from annotation.models import Role
from ranking.models import ImportJobState, RankingImportJob, RankingTask
from ranking.services.import_jobs import ranking_import_job_run
from ranking.services.imports import BATCH_LINES
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _line(n: int, k: int = 3) -> dict:
    return {"context": [{"role": "user", "content": f"Question {n}?"}],
            "responses": [{"content": f"Answer {i} to {n}", "generator": "m"} for i in range(k)]}


def _upload(lines, name="tasks.jsonl") -> io.BytesIO:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    upload = io.BytesIO(text.encode())
    upload.name = name
    return upload


def _wait(client, url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["state"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"the import job did not finish in {timeout} s: {body}")


def test_only_managers_start_and_see_import_jobs(api_client_for, project, make_member):
    manager = make_member(project, Role.MANAGER)
    response = api_client_for(manager).post(
        f"/api/projects/{project.pk}/ranking-imports/", {"file": _upload([_line(1)]), "format": "ranking-jsonl"},
        format="multipart",
    )
    assert response.status_code == 202 and response.json()["state"] == "queued"
    assert response.json()["lines_total"] == 1
    url = response.json()["url"]
    for outsider in (make_member(project), make_member(project, Role.REVIEWER), make_member(ProjectFactory(), Role.MANAGER)):
        client = api_client_for(outsider)
        assert client.get(url).status_code == 404
        assert client.get(f"/api/projects/{project.pk}/ranking-imports/").status_code == 404
        assert client.post(f"/api/projects/{project.pk}/ranking-imports/",
                           {"file": _upload([_line(2)]), "format": "ranking-jsonl"}, format="multipart").status_code == 404
    assert [job["id"] for job in api_client_for(manager).get(f"/api/projects/{project.pk}/ranking-imports/").json()] == [
        response.json()["id"]
    ]
    assert RankingImportJob.objects.count() == 1


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_worker_imports_a_file_all_or_nothing_and_reports_duplicates(
    celery_worker_process, api_client_for, project, make_member
):
    client = api_client_for(make_member(project, Role.MANAGER))
    count = BATCH_LINES + 500

    def start(lines):
        response = client.post(f"/api/projects/{project.pk}/ranking-imports/",
                               {"file": _upload(lines), "format": "ranking-jsonl"}, format="multipart")
        assert response.status_code == 202
        return _wait(client, response.json()["url"])

    job = start([_line(n) for n in range(count)])
    assert job["state"] == "done" and job["tasks_created"] == count
    assert job["lines_total"] == job["lines_done"] == count and job["progress"] == 1.0
    assert RankingTask.objects.filter(project=project).count() == count

    # a wrong line after a full batch: nothing of this file is kept, and the job names the line
    job = start([*(_line(n) for n in range(count, count + BATCH_LINES + 10)), {"context": [], "responses": ["a", "b"]}])
    assert job["state"] == "failed" and job["error_line"] == BATCH_LINES + 11
    assert job["errors"][0].startswith(f"line {BATCH_LINES + 11}: context must be a non-empty list")
    assert RankingTask.objects.filter(project=project).count() == count

    job = start([_line(0), _line(count + 1), _line(count + 1)])
    assert job["state"] == "done" and job["tasks_created"] == 1
    assert job["duplicates_count"] == 2 and job["report"]["duplicates"] == {"count": 2, "lines": [1, 3]}
    assert not list(RankingImportJob.objects.values_list("file_path", flat=True).exclude(file_path=""))


def test_the_page_sends_a_large_file_to_the_worker_and_shows_its_job(client, settings, project, make_member):
    settings.IMPORT_INLINE_MAX_BYTES = 10
    manager = make_member(project, Role.MANAGER)
    client.force_login(manager)
    response = client.post(f"/projects/{project.pk}/ranking/import/",
                           {"format": "ranking-jsonl", "file": _upload([_line(1), _line(2)])})
    job = RankingImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/ranking/import/{job.pk}/"
    html = client.get(response["Location"]).content.decode()
    assert 'id="import-job-progress"' in html and "0</span> of 2 lines read" in html
    ranking_import_job_run(job_id=job.pk)  # what the worker does (its own test above)
    html = client.get(response["Location"]).content.decode()
    assert "Imported 2 ranking task(s)" in html and "import-job-progress" not in html
    assert "tasks.jsonl" in client.get(f"/projects/{project.pk}/ranking/import/").content.decode()
    client.force_login(make_member(project))
    assert client.get(response["Location"]).status_code == 404


def test_a_refused_job_lists_its_lines_on_the_page(client, settings, project, make_member):
    settings.IMPORT_INLINE_MAX_BYTES = 10
    client.force_login(make_member(project, Role.MANAGER))
    client.post(f"/projects/{project.pk}/ranking/import/",
                {"format": "ranking-jsonl", "file": _upload([_line(1), "not json"])})
    job = ranking_import_job_run(job_id=RankingImportJob.objects.get().pk)
    assert job.state == ImportJobState.FAILED and job.error_line == 2
    html = client.get(f"/projects/{project.pk}/ranking/import/{job.pk}/").content.decode()
    assert "Nothing was imported" in html and "line 2: not valid JSON" in html
    assert not RankingTask.objects.exists()
