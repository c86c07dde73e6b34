"""GET /healthz: is the database answering, and is the broker reachable? 200 when both, else 503."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

from config.celery import app as celery_app


def _database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the message says which
        return f"error: {exc.__class__.__name__}: {exc}".strip()
    return "ok"


def broker_url() -> str:
    return celery_app.conf.broker_url


def _broker_state() -> str:
    # a fresh connection each time (not the app's pool): the answer reflects the broker now
    connection = Connection(broker_url(), transport_options=celery_app.conf.broker_transport_options or {})
    try:
        with connection as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:
        return f"error: {exc.__class__.__name__}: {exc}".strip()
    return "ok"


@never_cache
@require_GET
def healthz(request):
    state = {"database": _database_state(), "broker": _broker_state()}
    healthy = all(value == "ok" for value in state.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", **state}, status=200 if healthy else 503)
