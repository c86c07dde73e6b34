"""A database outage answers 503 with Retry-After, and the first request after it comes back succeeds.

A real gunicorn worker (persistent connection, health checks as in production) reaches the test
database through a TCP proxy that the test stops and starts: the shared PostgreSQL keeps running.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.test import Client, RequestFactory

from annotation.models import Role
from config.database_outage import DatabaseUnavailableMiddleware, is_database_unavailable, server_error
from tests.tcp_proxy import TcpProxy, free_port

ROOT = Path(__file__).resolve().parent.parent.parent


def _get(url: str, *, cookie: str, accept: str = "text/html") -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers={"Cookie": cookie, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


@pytest.fixture
def proxy():
    db = settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    proxy.start()
    yield proxy
    proxy.close()


@pytest.fixture
def web_server(transactional_db, proxy):
    """One gunicorn worker on the test database through the proxy, keeping its connection between requests."""
    db = settings.DATABASES["default"]
    port = free_port()
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}",
        DATABASE_CONN_MAX_AGE="600",
        REDIS_URL=settings.CELERY_BROKER_URL,
        TEST_CACHE_URL=settings.CACHES["default"]["LOCATION"],
        PYTHONPATH=str(ROOT),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--timeout", "60", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/favicon.ico", timeout=2)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("the test web server did not start") from None
            time.sleep(0.2)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_an_outage_answers_503_with_retry_after_and_the_first_request_after_it_succeeds(
    web_server, proxy, project, make_member
):
    cookie = _session_cookie(make_member(project, Role.MANAGER))
    api, page = f"{web_server}/api/projects/", f"{web_server}/projects/{project.pk}/"
    status, _, body = _get(api, cookie=cookie, accept="application/json")
    assert status == 200 and project.name in body

    proxy.stop()  # PostgreSQL is gone: its connections cut, its port closed
    status, headers, body = _get(api, cookie=cookie, accept="application/json")
    assert status == 503 and int(headers["Retry-After"]) > 0
    assert headers["Content-Type"].startswith("application/json") and "unavailable" in json.loads(body)["detail"]
    status, headers, body = _get(page, cookie=cookie)
    assert status == 503 and int(headers["Retry-After"]) > 0 and headers["Content-Type"].startswith("text/html")
    assert "Back in a moment" in body and "Traceback" not in body and "OperationalError" not in body

    proxy.start()
    assert _get(api, cookie=cookie, accept="application/json")[0] == 200
    assert _get(page, cookie=cookie)[0] == 200

    # a worker that was idle through a restart holds a connection that died meanwhile: the health
    # check replaces it, so its first request afterwards does not fail
    proxy.stop()
    proxy.start()
    assert _get(api, cookie=cookie, accept="application/json")[0] == 200
    proxy.stop()
    proxy.start()
    assert _get(page, cookie=cookie)[0] == 200


@pytest.mark.parametrize("error", [OperationalError("server closed the connection unexpectedly"),
                                   InterfaceError("connection already closed")])
def test_every_place_a_database_error_surfaces_answers_503(error):
    request = RequestFactory().get("/api/projects/")
    response = DatabaseUnavailableMiddleware(lambda r: None).process_exception(request, error)
    assert response.status_code == 503 and response["Retry-After"]
    try:
        raise error  # handler500 reads the error being handled, as Django calls it from inside its except
    except type(error):
        response = server_error(RequestFactory().get("/projects/1/", HTTP_ACCEPT="text/html"))
    assert response.status_code == 503 and b"Back in a moment" in response.content


def test_other_errors_still_answer_500():
    try:
        raise ValueError("a bug")
    except ValueError:
        response = server_error(RequestFactory().get("/projects/1/"))
    assert response.status_code == 500
    assert DatabaseUnavailableMiddleware(lambda r: None).process_exception(None, ValueError("x")) is None


def test_persistent_connections_check_their_health():
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


def _sqlite_error(message: str) -> OperationalError:
    """A Django OperationalError wrapping SQLite's own, as Django's error wrapper raises it."""
    import sqlite3

    try:
        try:
            raise sqlite3.OperationalError(message)
        except sqlite3.OperationalError as cause:
            raise OperationalError(message) from cause
    except OperationalError as error:
        return error


def test_sqlite_busy_is_an_outage_but_sqlite_rejecting_the_sql_is_a_bug():
    assert is_database_unavailable(_sqlite_error("database is locked"))
    assert is_database_unavailable(_sqlite_error("unable to open database file"))
    # SQLite says OperationalError for SQL it can't read: a 503 "try again shortly" would hide the bug
    assert not is_database_unavailable(_sqlite_error('near "FOR": syntax error'))
    assert not is_database_unavailable(_sqlite_error("no such column: ranking_rankingtask.foo"))
    assert is_database_unavailable(OperationalError("server closed the connection unexpectedly"))  # PostgreSQL
