"""Fixtures shared by the whole suite: users in roles, API clients, a real Celery worker, a browser."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from annotation.models import Role
from annotation.services.api_tokens import api_token_create, api_token_mark_used
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent
# Playwright's sync API runs an event loop in the test thread; the ORM calls made by
# tests around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Start every test with an empty cache (login-failure counters, leases' hints)."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def make_member(db):
    """make_member(project, role="labeler", username=None) -> User with that role in project."""

    def make(project, role: str = Role.LABELER, username: str | None = None):
        user = UserFactory(**({"username": username} if username else {}))
        MembershipFactory(project=project, user=user, role=role)
        return user

    return make


@pytest.fixture
def api_client_for():
    """api_client_for(user) -> APIClient sending a new API token of that user."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, secret = api_token_create(user=user, name="test client")
            # marked used now, so the once-a-minute "last used" write doesn't add a query to a test's
            # first request (tests compare query counts between requests)
            api_token_mark_used(token=token)
            client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
        return client

    return make


def celery_worker_env(**extra: str) -> dict:
    """The environment of a worker process: the test database, the test Redis, and ``extra``."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        REDIS_URL=settings.CELERY_BROKER_URL,
        PYTHONPATH=str(ROOT),
        RLHF_DATA_ROOT=str(settings.DATA_ROOT),
        RLHF_MODEL_IMPORT_ROOTS=",".join(settings.RLHF_MODEL_IMPORT_ROOTS),
    )
    env.update(extra)
    return env


def celery_worker_start(*, name: str, queues: str = "default,gpu", env: dict | None = None) -> subprocess.Popen:
    """Start a real Celery worker (solo pool) and wait until it answers a ping; return the Popen."""
    from config.celery import app

    hostname = f"{name}-{os.getpid()}@%h"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "--pool", "solo",
         "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle",
         "--hostname", hostname],
        cwd=ROOT, env=env or celery_worker_env(), start_new_session=True,
    )
    try:
        _wait_until_worker_answers(app, worker, name_prefix=hostname.split("@")[0] + "@")
    except BaseException:
        worker.kill()
        raise
    return worker


def celery_worker_stop(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


@pytest.fixture
def celery_worker_process(transactional_db):
    """Start a real Celery worker (separate process) on the test Redis broker and the test database.

    Yields the Popen. Tests enqueue with `.delay()` and wait on the result through Redis.
    """
    worker = celery_worker_start(name="test")
    try:
        yield worker
    finally:
        celery_worker_stop(worker)


def _wait_until_worker_answers(app, worker, *, name_prefix: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"celery worker exited early with {worker.returncode}")
        replies = app.control.ping(timeout=1.0) or []
        if any(name.startswith(name_prefix) for reply in replies for name in reply):
            return
    raise RuntimeError(f"celery worker did not answer pings within {timeout:.0f} s")


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    """A headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cookies) whose page fails the test on any JavaScript error."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def login(live_server):
    """login(page, username, password) through the real login form."""

    def do_login(page, username: str, password: str = PASSWORD):
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)

    return do_login
