"""scripts/ensure_services.sh on a machine without PostgreSQL or Redis: it installs, configures and starts
them. apt-get, pg_ctlcluster, redis-server (and id) are stubs on a PATH that holds nothing else but a
few coreutils; each stub records its command line, and "starting" a server opens a real listening
socket on the port the script waits for. The script itself runs for real."""

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ensure_services.sh"
TOOLS = ["ls", "sort", "tail", "seq", "sleep", "grep", "sed", "id", "mkdir", "chmod", "cp", "cat"]
DEBIAN_HBA = "local   all   postgres   peer\nhost    all   all   127.0.0.1/32   scram-sha-256\n"

# a listener the stubs start in place of a server, gone by itself after a minute
LISTEN = (
    f"{sys.executable} -c 'import socket,sys,time; s=socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", int(sys.argv[1]))); "
    "s.listen(); s.settimeout(0.5); end=time.time()+60\n"
    "while time.time() < end:\n"
    "    try: s.accept()[0].close()\n"
    "    except OSError: pass' \"$port\" >/dev/null 2>&1 </dev/null &\n"
    'echo $! >> "$PIDS"\n'
)
STUBS = {
    "apt-get": (
        'echo "apt-get $*" >> "$CALLS"\n'
        'case "$*" in\n'
        '  *"install"*postgresql*) mkdir -p "$PG_CONF_ROOT/15/main"; printf "$DEBIAN_HBA" > "$PG_CONF_ROOT/15/main/pg_hba.conf"\n'
        '     cp "$TEMPLATES/pg_ctlcluster" "$STUB_BIN/" ;;\n'
        '  *"install"*redis-server*) cp "$TEMPLATES/redis-server" "$STUB_BIN/" ;;\n'
        "esac\n"
    ),
    "pg_ctlcluster": 'echo "pg_ctlcluster $*" >> "$CALLS"\nport=$PGPORT\n' + LISTEN,
    "redis-server": (
        'echo "redis-server $*" >> "$CALLS"\n'
        'while [ $# -gt 0 ]; do [ "$1" = --port ] && port=$2; shift; done\n' + LISTEN
    ),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{shutil.which('bash')}\n{body}")
    path.chmod(0o755)


@pytest.fixture
def machine(tmp_path):
    """A bare machine: coreutils and apt-get, no PostgreSQL, no Redis, nothing listening on their ports."""
    tools, stub_bin, templates = tmp_path / "tools", tmp_path / "stubs", tmp_path / "templates"
    for folder in (tools, stub_bin, templates):
        folder.mkdir()
    for tool in TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    _write_stub(stub_bin, "apt-get", STUBS["apt-get"])
    for name in ("pg_ctlcluster", "redis-server"):
        _write_stub(templates, name, STUBS[name])
    env = {
        "PATH": f"{stub_bin}:{tools}", "CALLS": str(tmp_path / "calls"), "PIDS": str(tmp_path / "pids"),
        "PG_CONF_ROOT": str(tmp_path / "etc-postgresql"), "STUB_BIN": str(stub_bin),
        "TEMPLATES": str(templates), "DEBIAN_HBA": DEBIAN_HBA,
        "PGPORT": str(_free_port()), "REDIS_PORT": str(_free_port()),
    }

    class Machine:
        def __init__(self):
            self.env, self.stub_bin, self.templates = env, stub_bin, templates

        def run(self, **extra: str) -> subprocess.CompletedProcess:
            return subprocess.run([shutil.which("bash"), str(SCRIPT)], env={**env, **extra},
                                  capture_output=True, text=True, timeout=60)

        def calls(self) -> list[str]:
            path = tmp_path / "calls"
            return path.read_text().splitlines() if path.exists() else []

        def hba(self) -> Path:
            return tmp_path / "etc-postgresql" / "15" / "main" / "pg_hba.conf"

    yield Machine()
    pids = tmp_path / "pids"
    for pid in pids.read_text().split() if pids.exists() else []:
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


def _redis_command(port: str) -> str:
    return (f"redis-server --daemonize yes --bind 127.0.0.1 -::1 --port {port} --save  --appendonly no "
            "--dir /var/lib/redis --logfile /var/log/redis/ci.log")


def test_a_bare_machine_gets_both_installed_configured_and_started(machine):
    result = machine.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert machine.calls() == [
        "apt-get update -qq",
        "apt-get install -y -qq postgresql",
        "pg_ctlcluster --skip-systemctl-redirect 15 main restart",
        "apt-get install -y -qq redis-server",
        _redis_command(machine.env["REDIS_PORT"]),
    ]
    rules = [line for line in machine.hba().read_text().splitlines() if not line.startswith("#")]
    assert rules[0] == "host all postgres 127.0.0.1/32 trust"  # first match wins: ours comes first
    assert rules[1:] == DEBIAN_HBA.splitlines()  # nothing else is loosened
    for said in ("done: installed postgresql", "done: trust auth for postgres from 127.0.0.1",
                 "done: started PostgreSQL 15/main", "done: installed redis-server",
                 "PostgreSQL and Redis are up."):
        assert said in result.stdout


def test_a_second_run_finds_both_up_and_changes_nothing(machine):
    assert machine.run().returncode == 0
    calls, hba = machine.calls(), machine.hba().read_text()

    again = machine.run()

    assert again.returncode == 0
    assert machine.calls() == calls and machine.hba().read_text() == hba
    assert "done:" not in again.stdout and "PostgreSQL and Redis are up." in again.stdout


def test_a_dry_run_lists_the_commands_and_runs_none(machine):
    result = machine.run(DRY_RUN="1")

    assert result.returncode == 0, result.stderr
    assert machine.calls() == [] and not machine.hba().exists()
    planned = [line.removeprefix("would run: ") for line in result.stdout.splitlines()
               if line.startswith("would run: ")]
    assert planned[:2] == ["apt-get update -qq", "apt-get install -y -qq postgresql"]
    assert planned[2].startswith("sed -i 1i ") and planned[2].endswith("/VERSION/main/pg_hba.conf")
    assert planned[3:] == [
        "pg_ctlcluster --skip-systemctl-redirect VERSION main restart",
        "apt-get install -y -qq redis-server",
        "mkdir -p /var/lib/redis /var/log/redis",
        _redis_command(machine.env["REDIS_PORT"]),
    ]
    assert "(dry run: nothing was changed)" in result.stdout


def test_installed_but_stopped_servers_are_started_without_touching_their_config(machine):
    for name in ("pg_ctlcluster", "redis-server"):
        shutil.copy(machine.templates / name, machine.stub_bin / name)
    machine.hba().parent.mkdir(parents=True)
    machine.hba().write_text(DEBIAN_HBA)

    result = machine.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert machine.calls() == [
        "pg_ctlcluster --skip-systemctl-redirect 15 main start",
        _redis_command(machine.env["REDIS_PORT"]),
    ]
    assert machine.hba().read_text() == DEBIAN_HBA


def test_without_root_it_says_how_to_install_and_installs_nothing(machine):
    _write_stub(machine.stub_bin, "id", "echo 1000\n")

    result = machine.run()

    assert result.returncode == 1
    assert machine.calls() == []
    assert "sudo apt-get install postgresql" in result.stderr and "DATABASE_URL=" in result.stderr
