"""The embedded SQLite database (`make run` without DATABASE_URL) serves the labelers' whole path.

The suite runs on PostgreSQL, so hand-written SQL that only PostgreSQL reads (`FOR UPDATE SKIP LOCKED`,
row comparisons, `unnest`) would pass every other test and break the first command a newcomer runs.
This runs the labeling flow through the REST API and the labelers' pages on SQLite, in a process of
its own with the settings `make run` uses.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FLOW = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
call_command("collectstatic", "--noinput", verbosity=0)  # as make run does: the pages use the manifest
from django.db import connection
assert connection.vendor == "sqlite", connection.vendor
from django.test import Client
from rest_framework.test import APIClient
from annotation.models import Role
from tests.factories import MembershipFactory, ProjectFactory

project = ProjectFactory(rankings_per_task=2)
people = {role: MembershipFactory(project=project, role=role).user for role in (Role.LABELER, Role.REVIEWER, Role.MANAGER)}
colleague = MembershipFactory(project=project).user


def api(user):
    client = APIClient(HTTP_HOST="localhost")
    client.force_authenticate(user)
    return client


def expect(response, status):
    assert response.status_code == status, (response.status_code, response.content[:500])
    return response.json() if response.content and response["Content-Type"].startswith("application/json") else None


labeler, reviewer, manager = (api(people[role]) for role in (Role.LABELER, Role.REVIEWER, Role.MANAGER))
p = project.pk

# demonstrations: a prompt from the queue, written, submitted, reviewed
for text in ("Say hi.", "Define entropy."):
    expect(manager.post("/api/prompts/", {"project": p, "text": text}, format="json"), 201)
draft = expect(labeler.post(f"/api/dialogues/next-prompt/?project={p}"), 201)
assert expect(labeler.post(f"/api/dialogues/next-prompt/?project={p}"), 200)["id"] == draft["id"]  # same draft
turns = [{"role": "user", "content": draft["prompt"]["text"]}, {"role": "assistant", "content": "Hello!"}]
url = f"/api/dialogues/{draft['id']}/"
saved = expect(labeler.patch(url, {"version": draft["version"], "turns": turns}, format="json"), 200)
expect(labeler.post(f"{url}submit/", {"version": saved["version"]}, format="json"), 200)
queue = expect(reviewer.get(f"/api/dialogues/review-queue/?project={p}"), 200)
assert [d["id"] for d in queue["results"]] == [draft["id"]]
expect(reviewer.post(f"{url}review/", {"decision": "accept"}, format="json"), 200)
second = expect(api(colleague).post(f"/api/dialogues/next-prompt/?project={p}"), 201)
assert second["prompt"]["id"] != draft["prompt"]["id"]

# ranking: two labelers rank the same task, a third task is skipped, the queue runs dry
for n in range(2):
    expect(manager.post("/api/ranking-tasks/", {"project": p, "context": [{"role": "user", "content": f"Prime {n}?"}],
                                                 "responses": [{"content": "7"}, {"content": "9"}, {"content": "4"}]},
                        format="json"), 201)
ranked = []
for user in (people[Role.LABELER], colleague):
    client = api(user)
    task = expect(client.post(f"/api/ranking-tasks/next/?project={p}"), 200)
    again = expect(client.post(f"/api/ranking-tasks/next/?project={p}"), 200)
    assert again["id"] == task["id"]  # my held lease comes back
    ids = [r["id"] for r in task["responses"]]
    expect(client.post(f"/api/ranking-tasks/{task['id']}/rankings/", {"order": [[i] for i in ids]}, format="json"), 201)
    ranked.append(task["id"])
    other = expect(client.post(f"/api/ranking-tasks/next/?project={p}"), 200)
    assert other["id"] != task["id"]
    expect(client.post(f"/api/ranking-tasks/{other['id']}/skip/", {}, format="json"), 204)
    assert client.post(f"/api/ranking-tasks/next/?project={p}").status_code == 204
assert ranked[0] == ranked[1]  # nearest completion first: the second labeler completes the first's task

tasks = expect(manager.get(f"/api/ranking-tasks/?project={p}&limit=1"), 200)
assert tasks["count"] == 2 and len(tasks["results"]) == 1 and tasks["next"]
assert len(expect(manager.get(tasks["next"]), 200)["results"]) == 1
quality = expect(manager.get(f"/api/projects/{p}/ranking-quality/"), 200)
assert quality
expect(labeler.get(f"/api/projects/{p}/ranking-stats/me/"), 200)
export = manager.get(f"/api/projects/{p}/export/preferences.jsonl")
assert export.status_code == 200 and len(b"".join(export.streaming_content).splitlines()) == 6  # 2 rankings x C(3,2)

# the pages a labeler and a manager open
browser = Client(HTTP_HOST="localhost")
browser.force_login(people[Role.MANAGER])
for page in (f"/projects/{p}/", f"/projects/{p}/rank/", f"/projects/{p}/ranking/stats/",
             f"/projects/{p}/ranking/quality/", f"/projects/{p}/demonstrations/", "/review/", "/my-work/"):
    response = browser.get(page, follow=True)
    assert response.status_code == 200, (page, response.status_code)
writer = Client(HTTP_HOST="localhost")
writer.force_login(people[Role.MANAGER])
editor = writer.post(f"/projects/{p}/demonstrations/next/", follow=True)  # the next prompt's editor, or "all done"
assert editor.status_code == 200, editor.status_code
print("flow ok")
"""


def test_the_labeling_flow_runs_on_the_embedded_sqlite_database(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", RLHF_VAR_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", FLOW], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "flow ok"
