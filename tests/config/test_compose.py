"""docker-compose.yml can't run here (no Docker engine): check what can be checked without one."""

import importlib.util
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _settings_env_names() -> set[str]:
    names = set()
    for path in (ROOT / "config").rglob("*.py"):
        names |= set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', path.read_text()))
    return names


def test_compose_has_every_process():
    assert {"postgres", "redis", "web", "worker", "gpu-worker", "beat", "flower"} <= set(SERVICES)


def test_app_services_build_from_the_one_dockerfile():
    for name in ("web", "worker", "gpu-worker", "beat", "flower", "migrate"):
        assert SERVICES[name]["build"] == ".", name
    assert (ROOT / "Dockerfile").exists()


def test_every_command_names_a_module_that_exists():
    for name in ("web", "worker", "gpu-worker", "beat", "flower"):
        command = SERVICES[name]["command"]
        if command[0] == "gunicorn":
            module = command[1].split(":")[0]
        else:
            assert command[:3] == ["celery", "-A", "config"], name
            module = "config.celery"
        assert importlib.util.find_spec(module) is not None, f"{name}: {module} not importable"
    assert importlib.util.find_spec("flower") is not None


def test_gpu_worker_takes_the_gpu_queue_one_run_at_a_time_on_an_nvidia_device():
    service = SERVICES["gpu-worker"]
    command = service["command"]
    assert command[command.index("-Q") + 1] == "gpu"
    assert command[command.index("--concurrency") + 1] == "1"
    # the solo pool: the run's supervisor sees the worker's shutdown signal and checkpoints the engine
    assert command[command.index("--pool") + 1] == "solo"
    assert service["stop_grace_period"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_env_names_given_to_the_apps_are_read_by_settings():
    read = _settings_env_names() | {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}
    for name in ("web", "worker", "gpu-worker", "beat"):
        given = set(SERVICES[name]["environment"])
        assert given <= read, f"{name} sets variables nothing reads: {given - read}"
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(SERVICES["web"]["environment"])


def test_production_secret_is_never_defaulted_in_compose():
    assert "DJANGO_SECRET_KEY:?" in (ROOT / "docker-compose.yml").read_text()
