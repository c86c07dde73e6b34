"""The Celery app: settings come from Django's (CELERY_* names); tasks live in each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("rlhf_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="config.ping")
def ping(payload: str = "ping") -> dict:
    """Answer with the payload and the worker's pid: proves a worker consumed the queue."""
    return {"payload": payload, "worker_pid": os.getpid()}
