"""Production settings: `check --deploy` is clean with a real secret, and no secret means no start."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.production", **env}, timeout=120,
    )


def test_check_deploy_passes_with_production_settings_and_a_real_secret():
    result = _manage("check", "--deploy", "--fail-level", "DEBUG", DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret():
    result = _manage("check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_debug_is_off_unless_asked_for():
    probe = "from django.conf import settings; print(settings.DEBUG)"
    off = _manage("shell", "-c", probe, DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    on = _manage("shell", "-c", probe, DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_DEBUG="1")
    assert off.stdout.strip().splitlines()[-1] == "False", off.stderr
    assert on.stdout.strip().splitlines()[-1] == "True", on.stderr
