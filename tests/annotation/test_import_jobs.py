"""Prompt and demonstration import jobs: a file imported by a real Celery worker, all or nothing, with its progress
on the API and a page whose progress bar polls it; the request-sized endpoints send larger files there."""

import io
import json
import time

import pytest

from annotation.models import Dialogue, ImportJobState, ProjectImportJob, Prompt, Role
from annotation.services.import_jobs import project_import_job_run
from annotation.services.imports import PROGRESS_EVERY_LINES
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _upload(lines, name="prompts.jsonl") -> io.BytesIO:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    upload = io.BytesIO(text.encode())
    upload.name = name
    return upload


def _dialogue(n: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Question {n}?"}, {"role": "assistant", "content": f"Answer {n}."}]}


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
    start = f"/api/projects/{project.pk}/import-jobs/"
    response = api_client_for(manager).post(start, {"file": _upload([{"prompt": "p"}]), "format": "prompts-jsonl"},
                                            format="multipart")
    assert response.status_code == 202 and response.json()["state"] == "queued"
    assert response.json()["lines_total"] == 1 and response.json()["kind"] == "prompts"
    url = response.json()["url"]
    assert url == f"/api/import-jobs/{response.json()['id']}/"
    for outsider in (make_member(project), make_member(project, Role.REVIEWER), make_member(ProjectFactory(), Role.MANAGER)):
        client = api_client_for(outsider)
        assert client.get(url).status_code == 404
        assert client.get(start).status_code == 404
        assert client.post(start, {"file": _upload([{"prompt": "q"}]), "format": "prompts-jsonl"},
                           format="multipart").status_code == 404
    assert [job["id"] for job in api_client_for(manager).get(start).json()] == [response.json()["id"]]
    assert ProjectImportJob.objects.count() == 1


def test_a_job_refuses_what_it_cannot_take_with_a_clear_4xx(api_client_for, project, make_member, settings):
    client = api_client_for(make_member(project, Role.MANAGER))
    start = f"/api/projects/{project.pk}/import-jobs/"
    response = client.post(start, {"file": _upload([{"prompt": "p"}]), "format": "tasks"}, format="multipart")
    assert response.status_code == 400 and "format" in response.json()["errors"]
    settings.IMPORT_JOB_MAX_BYTES = 10
    response = client.post(start, {"file": _upload([{"prompt": "a longer prompt"}]), "format": "prompts-jsonl"},
                           format="multipart")
    assert response.status_code == 413 and "limited to 10 bytes" in response.json()["detail"]
    assert not ProjectImportJob.objects.exists()


@pytest.mark.parametrize(("url", "jobs"), [
    ("/api/projects/{project}/import/", "/api/projects/{project}/import-jobs/"),
    ("/api/ranking-tasks/import/", "/api/projects/{project}/ranking-imports/"),
])
def test_the_request_sized_imports_send_a_larger_file_to_the_job_endpoint(
    api_client_for, project, make_member, settings, url, jobs
):
    settings.IMPORT_INLINE_MAX_BYTES = 50
    client = api_client_for(make_member(project, Role.MANAGER))
    lines = [{"prompt": f"prompt {n}"} for n in range(10)]
    fmt = "prompts-jsonl" if "ranking" not in url else "ranking-jsonl"
    response = client.post(url.format(project=project.pk), {"file": _upload(lines), "format": fmt,
                                                             "project": project.pk}, format="multipart")
    assert response.status_code == 413
    assert response.json()["import_jobs_url"] == jobs.format(project=project.pk)
    assert "up to 50 bytes within the request" in response.json()["detail"]
    assert jobs.format(project=project.pk) in response.json()["detail"]
    assert not Prompt.objects.exists()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_the_worker_imports_prompts_and_dialogues_all_or_nothing_and_reports_duplicates(
    celery_worker_process, api_client_for, project, make_member
):
    client = api_client_for(make_member(project, Role.MANAGER))
    count = PROGRESS_EVERY_LINES + 500

    def start(lines, fmt, **extra):
        response = client.post(f"/api/projects/{project.pk}/import-jobs/",
                               {"file": _upload(lines), "format": fmt, **extra}, format="multipart")
        assert response.status_code == 202
        return _wait(client, response.json()["url"])

    job = start([{"prompt": f"Prompt {n}"} for n in range(count)], "prompts-jsonl")
    assert job["state"] == "done" and job["created"] == count and job["rows"] == count
    assert job["lines_total"] == job["lines_done"] == count and job["progress"] == 1.0
    assert Prompt.objects.filter(project=project).count() == count

    # a wrong line after many good ones: nothing of this file is kept, and the job names the line
    job = start([*({"prompt": f"Prompt {n}"} for n in range(count, count + PROGRESS_EVERY_LINES + 10)), "not json"],
                "prompts-jsonl")
    assert job["state"] == "failed" and job["error_line"] == PROGRESS_EVERY_LINES + 11
    assert job["errors"] == [f"line {PROGRESS_EVERY_LINES + 11}: not valid JSON (Expecting value at column 1)."]
    assert job["error"].startswith("Nothing was imported: line")
    assert Prompt.objects.filter(project=project).count() == count

    # demonstrations, to review: repeats within the file and of the project are skipped and listed
    job = start([_dialogue(1), _dialogue(2), _dialogue(1)], "messages-jsonl", dialogue_status="submitted")
    assert job["state"] == "done" and job["kind"] == "dialogues" and job["created"] == 2
    job = start([_dialogue(2), _dialogue(3)], "messages-jsonl", dialogue_status="submitted")
    assert job["created"] == 1 and job["duplicates_count"] == 1 and job["report"]["duplicates"] == {"count": 1, "lines": [1]}
    assert Dialogue.objects.filter(project=project, status="submitted").count() == 3
    assert not list(ProjectImportJob.objects.values_list("file_path", flat=True).exclude(file_path=""))


def test_the_page_sends_a_large_file_to_the_worker_and_shows_its_job(client, settings, project, make_member):
    settings.IMPORT_INLINE_MAX_BYTES = 10
    manager = make_member(project, Role.MANAGER)
    client.force_login(manager)
    response = client.post(f"/projects/{project.pk}/data/",
                           {"format": "prompts-jsonl", "file": _upload([{"prompt": "a"}, {"prompt": "b"}])})
    job = ProjectImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/data/imports/{job.pk}/"
    html = client.get(response["Location"]).content.decode()
    assert 'id="import-job-progress"' in html and "0</span> of 2 lines read" in html
    project_import_job_run(job_id=job.pk)  # what the worker does (its own test above)
    html = client.get(response["Location"]).content.decode()
    assert "Imported 2 prompts from 2 rows" in html and "import-job-progress" not in html
    assert "prompts.jsonl" in client.get(f"/projects/{project.pk}/data/").content.decode()
    client.force_login(make_member(project))
    assert client.get(response["Location"]).status_code == 404


def test_a_refused_job_names_its_line_on_the_page(client, settings, project, make_member):
    settings.IMPORT_INLINE_MAX_BYTES = 10
    client.force_login(make_member(project, Role.MANAGER))
    client.post(f"/projects/{project.pk}/data/",
                {"format": "prompts-jsonl", "file": _upload([{"prompt": "a"}, "not json"])})
    job = project_import_job_run(job_id=ProjectImportJob.objects.get().pk)
    assert job.state == ImportJobState.FAILED and job.error_line == 2
    html = client.get(f"/projects/{project.pk}/data/imports/{job.pk}/").content.decode()
    assert "Nothing was imported" in html and "line 2: not valid JSON" in html
    assert not Prompt.objects.exists()
