"""Fuzz the REST API with Schemathesis as every role; count server errors (target 0) and schema violations.

    TEST_DATABASE_NAME=test_rlhf_fuzz REDIS_URL=redis://127.0.0.1:6379/13 TEST_CACHE_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/fuzz.py --requests-per-role 10000 --out bench/results/fuzz.json

It creates its own database (TEST_DATABASE_NAME, dropped at the end) with one project holding a row
of every kind, a labeler, a reviewer, a manager, an ML engineer and an outsider (a manager of
another project), each with an API token; then, role by role, it walks every operation of the
OpenAPI schema the app serves gets generated requests (tests/api_fuzz.py: positive and negative, half
on existing ids) until there are --requests-per-role of them; then every role sends all of them, in
process through WSGI (generating costs more than sending, so the requests are generated once).
Each response is checked with Schemathesis' not_a_server_error and response_schema_conformance.
The JSON holds, per role, the requests, the status codes, the server errors and schema violations
per operation and the first failures as curl commands. Exit status 1 when any server error was seen.
Tasks that requests queue go to REDIS_URL's database (no worker runs); it is flushed at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ.setdefault("TEST_DATABASE_NAME", "test_rlhf_fuzz")
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "600")  # one connection for the run, not one per request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-per-role", type=int, default=10_000)
    parser.add_argument("--per-operation", type=int, default=160, help="generated requests per operation and round")
    parser.add_argument("--roles", default="labeler,reviewer,manager,engineer,outsider")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--operations", default="", help='only these, comma-separated: "POST /api/runs/,GET /api/runs/"')
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still drop the database on the way out

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()  # ALLOWED_HOSTS gets "testserver", mail stays in memory
    data_root = Path(tempfile.mkdtemp(prefix="fuzz-data-"))
    settings.DATA_ROOT, settings.RLHF_MODEL_IMPORT_ROOTS = data_root, [str(data_root)]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        from tests.api_fuzz import cases_generate, cases_send, schema_load, world_build

        # (importing the WSGI app set Django's logging up again) 4xx answers are the expected ones here
        logging.getLogger("django.request").setLevel(logging.ERROR)
        world = world_build()
        schema = schema_load(world.tokens["manager"])
        started, cases, seed = time.monotonic(), [], args.seed
        while len(cases) < args.requests_per_role:
            only = {label.strip() for label in args.operations.split(",") if label.strip()} or None
            cases += cases_generate(schema, ids=world.ids, per_operation=args.per_operation, seed=seed, only=only)
            seed += 1
            print(f"generated {len(cases)} requests", flush=True)
        report = {"generated_requests": len(cases), "generation_seconds": round(time.monotonic() - started, 1),
                  "per_operation": args.per_operation, "seed": args.seed, "operations": args.operations or "all",
                  "roles": {}}
        for role in args.roles.split(","):
            started = time.monotonic()

            def progress(result, role=role):
                print(f"  {role}: {result.requests} requests, {sum(result.server_errors.values())} server errors,"
                      f" {sum(result.schema_violations.values())} schema violations", flush=True)

            result = cases_send(cases, token=world.tokens[role], progress=progress)
            seconds = time.monotonic() - started
            report["roles"][role] = row = {
                "requests": result.requests,
                "seconds": round(seconds, 1),
                "requests_per_second": round(result.requests / seconds, 1),
                "server_errors": sum(result.server_errors.values()),
                "schema_violations": sum(result.schema_violations.values()),
                "statuses": {str(code): n for code, n in sorted(result.statuses.items())},
                "server_errors_by_operation": dict(result.server_errors.most_common()),
                "schema_violations_by_operation": dict(result.schema_violations.most_common()),
                "first_failures": result.examples,
            }
            print(f"{role}: {row['requests']} requests in {row['seconds']} s, {row['server_errors']} server errors, "
                  f"{row['schema_violations']} schema violations", flush=True)
            _write(args.out, report)  # after each role: a long run that is stopped still leaves its figures
    finally:
        connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)
        _flush_broker(settings.CELERY_BROKER_URL)
    print(f"written {args.out}")
    return 1 if any(row["server_errors"] for row in report["roles"].values()) else 0


def _write(path: str, report: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


def _flush_broker(url: str) -> None:
    if url.startswith("redis://"):
        import redis

        redis.Redis.from_url(url).flushdb()


if __name__ == "__main__":
    sys.exit(main())
