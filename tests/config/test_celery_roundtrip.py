import os

import pytest

from config.celery import ping


@pytest.mark.celery
def test_a_task_round_trips_through_redis_and_a_real_worker(celery_worker_process):
    result = ping.delay("hello")
    answer = result.get(timeout=30)
    assert answer["payload"] == "hello"
    # executed in the worker process, not in this one
    assert answer["worker_pid"] == celery_worker_process.pid
    assert answer["worker_pid"] != os.getpid()
