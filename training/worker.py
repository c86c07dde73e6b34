"""GPU worker presence: a worker that consumes the ``gpu`` queue registers itself and heartbeats from a
thread (so an idle worker is seen as idle), and on shutdown asks a running engine to checkpoint.

Connected from ``TrainingConfig.ready`` (Celery signals; nothing here runs in the web process).
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_stop = threading.Event()


@worker_ready.connect
def _on_worker_ready(sender=None, **_kwargs) -> None:
    queues = set(sender.app.amqp.queues.consume_from or {}) if sender is not None else set()
    if "gpu" not in queues:
        return
    from training.services.execution import gpus_visible, worker_heartbeat, worker_name

    name, gpus = worker_name(), gpus_visible()
    worker_heartbeat(name=name, gpu_names=gpus, current_run_id=None)
    logger.info("gpu worker %s ready with %d GPU(s)", name, len(gpus))
    threading.Thread(target=_heartbeat_forever, args=(name, gpus), name="gpu-heartbeat", daemon=True).start()


def _heartbeat_forever(name: str, gpus: list[str]) -> None:
    from training.models import GpuWorker

    while not _stop.wait(settings.RLHF_RUN_HEARTBEAT_SECONDS):
        try:
            from django.utils import timezone

            GpuWorker.objects.filter(hostname=name).update(last_heartbeat=timezone.now())
        except Exception:  # noqa: BLE001 - a database blip must not kill the heartbeat thread; it retries
            logger.exception("gpu worker heartbeat failed; retrying")
        finally:
            close_old_connections()


@worker_shutting_down.connect
def _on_worker_shutting_down(**_kwargs) -> None:
    from training.services.execution import WorkerShutdown

    WorkerShutdown.requested = True
    _stop.set()
