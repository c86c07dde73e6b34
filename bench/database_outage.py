"""A 9-second database outage under load: what labelers' browsers and API clients get, and after it.

Creates a scratch PostgreSQL database, starts gunicorn (``--workers``, sync, persistent connections
as in production) whose database is reached through a TCP proxy in this process, and has
``--clients`` threads ask for a project page and the API's project list as fast as answers come.
Then the proxy is stopped for ``--outage`` seconds (connections cut, port closed: what clients see
while PostgreSQL restarts) and started again. It prints, per phase, the answers by status, whether
every 503 carried Retry-After and whether any body held a traceback; and, after a second outage
during which the workers sat idle, how many first requests failed on a connection that died.
A request counts in the phase it was sent in: one in flight when the connections are cut answers
503 in "before", one sent just before the database returns may be answered 200 in "outage".

    .venv/bin/python -m bench.database_outage                     # 4 workers, 8 clients, 9 s outage
    .venv/bin/python -m bench.database_outage --workers 2 --outage 5

The shared PostgreSQL keeps running; only the proxy stops. The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgres://postgres@127.0.0.1:5432"
DATABASE = "bench_rlhf_outage"


def _admin_sql(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{SERVER}/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def _prepare() -> tuple[int, str]:
    """Migrate the scratch database and make a manager of one project; return the project id and a session cookie."""
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_URL=f"{SERVER}/{DATABASE}")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from annotation.models import Membership, Project, Role
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    project = Project.objects.create(name="Outage", slug="outage")
    manager = UserFactory(username="outage-manager")
    Membership.objects.create(project=project, user=manager, role=Role.MANAGER)
    client = Client()
    client.force_login(manager)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return project.pk, cookie


def _get(url: str, cookie: str, accept: str) -> tuple[int, bool, bool]:
    """(status, has Retry-After, body holds a traceback)."""
    request = urllib.request.Request(url, headers={"Cookie": cookie, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, "Retry-After" in response.headers, False
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        return error.code, "Retry-After" in error.headers, "Traceback" in body
    except OSError:
        return 0, False, False  # no answer at all


def _start_server(port: int, proxy_port: int, workers: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{proxy_port}/{DATABASE}",
        DATABASE_CONN_MAX_AGE="60",
        PYTHONPATH=str(ROOT),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--timeout", "30", "--log-level", "error"],
        cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while _get(f"http://127.0.0.1:{port}/favicon.ico", "", "*/*")[0] == 0:
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("gunicorn did not start")
        time.sleep(0.2)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--outage", type=float, default=9.0, help="seconds the database is unreachable")
    args = parser.parse_args()

    from tests.tcp_proxy import TcpProxy, free_port

    _admin_sql(f"DROP DATABASE IF EXISTS {DATABASE}")
    _admin_sql(f"CREATE DATABASE {DATABASE}")
    server = proxy = None
    try:
        project_id, cookie = _prepare()
        proxy = TcpProxy(("127.0.0.1", 5432))
        proxy.start()
        port = free_port()
        server = _start_server(port, proxy.port, args.workers)
        base = f"http://127.0.0.1:{port}"
        targets = [(f"{base}/projects/{project_id}/", "text/html"), (f"{base}/api/projects/", "application/json")]

        phase = ["before"]
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        lock, stop = threading.Lock(), threading.Event()

        def client(index: int) -> None:
            n = index
            while not stop.is_set():
                url, accept = targets[n % 2]
                n += 1
                asked_in = phase[0]  # a request counts in the phase it was sent in
                status, retry_after, traceback = _get(url, cookie, accept)
                with lock:
                    tally = counts[asked_in]
                    tally[status] += 1
                    tally["503 without Retry-After"] += status == 503 and not retry_after
                    tally["tracebacks"] += traceback

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(6)  # the workers' first requests load templates and open their connections
        proxy.stop()
        phase[0] = "outage"  # requests in flight when the connections are cut count as "before"
        time.sleep(args.outage)
        proxy.start()
        phase[0] = "after"
        time.sleep(5)
        stop.set()
        for thread in threads:
            thread.join()

        # every worker idle while the database restarts: each holds a connection that died
        proxy.stop()
        time.sleep(1)
        proxy.start()
        first = collections.Counter(_get(*targets[i % 2][:1], cookie, targets[i % 2][1])[0]
                                    for i in range(4 * args.workers))

        print(f"\n{args.workers} gunicorn workers, {args.clients} clients, database unreachable for "
              f"{args.outage:g} s\n")
        print("| phase | answers | 200 | 503 | 500 | no answer | 503 without Retry-After | tracebacks |")
        print("|---|---|---|---|---|---|---|---|")
        for name in ("before", "outage", "after"):
            tally = counts[name]
            answered = sum(v for k, v in tally.items() if isinstance(k, int))
            print(f"| {name} | {answered} | {tally[200]} | {tally[503]} | {tally[500]} | {tally[0]} | "
                  f"{tally['503 without Retry-After']} | {tally['tracebacks']} |")
        print(f"\nAfter an outage the workers sat through idle: {sum(first.values())} requests, "
              f"{first[200]} answered 200, {sum(first.values()) - first[200]} failed.")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if proxy is not None:
            proxy.close()
        from django.db import connections

        connections.close_all()
        _admin_sql(f"DROP DATABASE IF EXISTS {DATABASE}")


if __name__ == "__main__":
    main()
