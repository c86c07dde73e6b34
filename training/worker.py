"""GPU worker presence: a worker that consumes the ``gpu`` queue registers itself and heartbeats from a
thread (so an idle worker is seen as idle), and on shutdown asks a running engine to checkpoint.

Connected from ``TrainingConfig.ready`` (Celery signals; nothing here runs in the web process).
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import DatabaseError, close_old_connections

logger = logging.getLogger(__name__)

_stop = threading.Event()


@worker_ready.connect
def _on_worker_ready(sender=None, **_kwargs) -> None:
    queues = set(sender.app.amqp.queues.consume_from or {}) if sender is not None else set()
    if "gpu" not in queues:
        return
    from training.services.execution import gpus_visible, worker_heartbeat, worker_name

    name, gpus = worker_name(), gpus_visible()
    pool = type(getattr(sender, "pool", None)).__module__
    if pool != "celery.concurrency.solo":
        # a prefork child never hears of a warm shutdown: its engine would train on until the
        # deploy's grace period ends in a kill, instead of checkpointing at once
        logger.error("gpu worker %s runs the %s pool: start it with --pool solo (docs/operations.md)", name, pool)
    try:  # idle: a run that an earlier life of this name held is not ours
        worker_heartbeat(name=name, gpu_names=gpus, current_run_id=None)
    except DatabaseError as error:
        logger.warning("gpu worker %s: not registered yet (%s); its heartbeat will", name, error)
    logger.info("gpu worker %s ready with %d GPU(s)", name, len(gpus))
    threading.Thread(target=_heartbeat_forever, args=(name, gpus), name="gpu-heartbeat", daemon=True).start()


def _heartbeat_forever(name: str, gpus: list[str]) -> None:
    from training.services.execution import worker_alive

    while not _stop.wait(settings.RLHF_RUN_HEARTBEAT_SECONDS):
        try:
            worker_alive(name=name, gpu_names=gpus)
        except DatabaseError as error:  # a database blip must not end the heartbeat: the next one retries
            logger.warning("gpu worker %s: heartbeat failed (%s); retrying", name, error)
        finally:
            close_old_connections()


@worker_shutting_down.connect
def _on_worker_shutting_down(**_kwargs) -> None:
    from training.services.execution import WorkerShutdown

    WorkerShutdown.requested = True
    _stop.set()
