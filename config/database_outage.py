"""While the database is unreachable, answer 503 with Retry-After instead of a 500 per request.

PostgreSQL restarting (or a failover) makes every query raise ``OperationalError`` or
``InterfaceError`` for a few seconds. People get a calm page rendered without the database, API
clients a JSON body; both carry ``Retry-After`` so a client (the labeling page, a script) waits and
tries again, and no traceback is shown or logged per request. Three places see such an error:

- ``DatabaseUnavailableMiddleware.process_exception``: raised by a view;
- ``config.exceptions.api_exception_handler``: raised inside a DRF view (its authentication too);
- ``server_error`` (``handler500``): raised in a middleware, e.g. saving the session.

A worker's persistent connection that died meanwhile is replaced on the first request afterwards by
Django's connection health checks (``CONN_HEALTH_CHECKS`` in config/settings/base.py).
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views.defaults import server_error as django_server_error

logger = logging.getLogger(__name__)

UNAVAILABLE_DETAIL = "The database is unavailable for a moment. Your saved work is safe; try again shortly."


# SQLite raises OperationalError for mistakes in the SQL too ("near \"FOR\": syntax error", "no such
# column"); only these messages mean the database itself is busy or out of reach
SQLITE_UNAVAILABLE_MESSAGES = ("database is locked", "database table is locked", "unable to open database",
                               "disk i/o error", "database or disk is full")


def is_database_unavailable(exc: BaseException | None) -> bool:
    """True for an error that means the database is out of reach for now, not that the query is wrong."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    cause = exc.__cause__
    if type(cause).__module__ == "sqlite3":
        message = str(cause).lower()
        return any(text in message for text in SQLITE_UNAVAILABLE_MESSAGES)
    return True


def retry_after_seconds() -> int:
    return settings.RLHF_DB_RETRY_AFTER_SECONDS


def wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or ("application/json" in accept and "text/html" not in accept)


def database_unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 answer for ``request``: JSON for the API, the calm page for people; never a traceback."""
    # one line per request: the outage is the news, not 169 identical tracebacks
    logger.warning("database unavailable: %s %s answered 503 (%s: %s)", request.method, request.path,
                   type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    retry_after = retry_after_seconds()
    if wants_json(request):
        response: HttpResponse = JsonResponse(
            {"detail": UNAVAILABLE_DETAIL, "retry_after": retry_after}, status=503
        )
    else:
        # rendered with no request and no context: nothing in it may query (no user, no session, no menu)
        body = loader.get_template("503.html").render({"retry_after": retry_after})
        response = HttpResponse(body, status=503)
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """Turn a database that can't be reached into a 503 for any view (see the module's docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_database_unavailable(exception):
            return database_unavailable_response(request, exception)
        return None


def server_error(request, template_name: str = "500.html"):
    """handler500: Django's 500 page, unless the error was the database being unreachable (then 503)."""
    exc = sys.exc_info()[1]
    if is_database_unavailable(exc):
        return database_unavailable_response(request, exc)
    return django_server_error(request, template_name=template_name)
