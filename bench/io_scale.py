"""Exports and imports at a million tasks: preference pairs streamed per second and peak memory, tasks imported per second.

    .venv/bin/python bench/io_scale.py [--tasks 1000000] [--rankings 100000] [--import-lines 1000000]
                                       [--old-size 20000] [--out bench/results/io-scale.json] [--db rlhf_bench_io]
    .venv/bin/python bench/io_scale.py --import-only [--import-runs 3] [--compare-lines 100000]
                                       [--compare-commit d3b153d] [--db NAME]

In a scratch PostgreSQL database (``--db``, `rlhf_bench_io` by default, dropped and made again; the schema by `migrate`)
it builds one project of ``--tasks`` ranking tasks (K = 4 answers, SQL `generate_series`), first
with 1,000 of them ranked (the issue's case: 321 s and 1 GB before), then with ``--rankings`` ranked
(6 pairs each), and times the preference export each time through the real HTTP view (Django's
test client: URL routing, middleware, authentication, the streamed body consumed block by block,
no socket). Each export runs in a child process, so its peak RSS (`ru_maxrss`) is the export's own.
Then it writes a ``--import-lines`` ranking-jsonl file (K = 4) and imports it as the worker does
(`ranking_import_job_run`, in a child process), polling the job's `lines_done` from this process
as the page does, and checks the task count. ``--old-size`` runs the code before issue 11 (the
export and import modules of commit f5ce176, loaded from git) and the new code on a project of
that size in the same run, for the ratio. ``--import-repeats N`` runs the big import N times (each into a fresh project; the median run is
kept, with every run's tasks/s). ``--import-only`` skips the exports and, with
``--import-runs N``, imports a ``--compare-lines`` file N times with the import module of
``--compare-commit`` and N times with today's, alternating, each into a fresh project, for the
median tasks/s of each and their ratio on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = os.environ.get("BENCH_IO_DB", "rlhf_bench_io")  # --db sets it, for the child processes too
OLD_COMMIT = "f5ce176"  # the last commit with the export and import of before issue 11
K = 4
DATA_ROOT = Path("/tmp/rlhf-bench-io")


def _env() -> dict:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "BENCH_IO_DB": DB_NAME,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"),
        "TEST_CACHE_URL": os.environ.get("TEST_CACHE_URL", "redis://127.0.0.1:6379/4"),
        "RLHF_DATA_ROOT": str(DATA_ROOT),
        "PYTHONPATH": str(ROOT),
    })
    return env


def _django() -> None:
    os.environ.update(_env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()


def _sql(statement: str, params: list) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def build_project(*, slug: str, tasks: int) -> int:
    """A project of ``tasks`` K=4 ranking tasks (a few hundred characters of text each); return its id."""
    from annotation.models import Project

    project = Project.objects.create(name=slug, slug=slug, rankings_per_task=3)
    _sql(
        """
        INSERT INTO ranking_rankingtask (project_id, context, status, source, purpose, is_gold, import_hash,
                                         created_at, rankings_count, leases_count)
        SELECT %s, jsonb_build_array(jsonb_build_object('role', 'user', 'content',
                   'Question number ' || g || ': how should a careful assistant answer a question like this one?')),
               'open', 'api', 'ranking', false, '', now(), 0, 0
        FROM generate_series(1, %s) AS g
        """,
        [project.pk, tasks],
    )
    _sql(
        """
        INSERT INTO ranking_response (task_id, content, generator, position)
        SELECT t.id, 'Answer ' || p || ' to question ' || t.id || '. ' || repeat('It explains the point in plain words. ', 5),
               'bench-model', p
        FROM ranking_rankingtask t CROSS JOIN generate_series(0, %s) AS p
        WHERE t.project_id = %s
        """,
        [K - 1, project.pk],
    )
    return project.pk


def rank(*, project_id: int, count: int, labeler_id: int) -> None:
    """Rank ``count`` more tasks of the project (spread over the table), one labeler, one tie in each ranking."""
    _sql(
        """
        INSERT INTO ranking_ranking (task_id, labeler_id, is_imported, "order", flags, scores, all_bad,
                                     time_spent_ms, idempotency_key, created_at)
        SELECT t.id, %s, false,
               (SELECT jsonb_build_array(jsonb_build_array(a[1]), jsonb_build_array(a[2]), jsonb_build_array(a[3]),
                                         jsonb_build_array(a[4]))
                FROM (SELECT array_agg(r.id ORDER BY r.position DESC) AS a FROM ranking_response r
                      WHERE r.task_id = t.id) answers),
               '{}', '{}', false, 20000, '', now()
        FROM (SELECT id FROM ranking_rankingtask WHERE project_id = %s
              AND NOT EXISTS (SELECT 1 FROM ranking_ranking x WHERE x.task_id = ranking_rankingtask.id)
              ORDER BY (id * 7919) %% 1000003 LIMIT %s) t
        """,
        [labeler_id, project_id, count],
    )
    _sql("UPDATE ranking_rankingtask t SET rankings_count = 1 WHERE project_id = %s AND rankings_count = 0 "
         "AND EXISTS (SELECT 1 FROM ranking_ranking r WHERE r.task_id = t.id)", [project_id])
    _sql("ANALYZE", [])


def _old_module(name: str, commit: str = OLD_COMMIT):
    """The module ``ranking/services/<name>.py`` as it was at ``commit``."""
    import importlib.util
    import tempfile

    source = subprocess.run(["git", "show", f"{commit}:ranking/services/{name}.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"old_{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"old_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---- child processes: one measured operation each, its figures as JSON on the last line ----


def child_export(project_id: int, code: str) -> dict:
    """Stream the preference export through the HTTP view (new) or the old generator (old); count pairs and bytes."""
    from django.test import Client

    from annotation.models import Membership, Project, Role
    from ranking.services import exports

    project = Project.objects.get(pk=project_id)
    started = time.perf_counter()
    lines = size = 0
    if code == "new":
        from django.contrib.auth import get_user_model

        manager, _ = get_user_model().objects.get_or_create(username=f"bench-manager-{project_id}")
        Membership.objects.get_or_create(project=project, user=manager, defaults={"role": Role.MANAGER})
        client = Client()
        client.force_login(manager)
        started = time.perf_counter()
        response = client.get(f"/api/projects/{project_id}/export/preferences.jsonl")
        assert response.status_code == 200, response.status_code
        last = b""
        for block in response.streaming_content:
            lines += block.count(b"\n")
            size += len(block)
            last = block
        assert b"export_error" not in last.splitlines()[-1] if last else True
    else:
        old = _old_module("exports")
        for line in old.jsonl_lines(old.preference_pairs(project=project)):
            lines += 1
            size += len(line.encode())
    seconds = time.perf_counter() - started
    assert exports  # the new module is the one the view streamed
    return {"code": code, "pairs": lines, "bytes": size, "seconds": round(seconds, 2),
            "pairs_per_s": round(lines / seconds) if seconds else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_average_1m": round(os.getloadavg()[0], 1)}  # the machine is shared: how busy it was


def child_import(project_id: int, path: str, code: str) -> dict:
    """Import the file as the worker does (new: an import job) or with the old service; time it."""
    from annotation.models import Project
    from ranking.models import RankingImportJob, RankingTask

    project = Project.objects.get(pk=project_id)
    started = time.perf_counter()
    if code == "new":
        relative = str(Path(path).relative_to(DATA_ROOT))
        lines = sum(1 for _ in open(path, "rb"))
        job = RankingImportJob.objects.create(project=project, format="ranking-jsonl", file_name=Path(path).name,
                                              file_path=relative, size_bytes=Path(path).stat().st_size,
                                              lines_total=lines)
        print(json.dumps({"job": job.pk}), flush=True)
        from ranking.services.import_jobs import ranking_import_job_run

        started = time.perf_counter()
        job = ranking_import_job_run(job_id=job.pk)
        assert job.state == "done", (job.state, job.error)
        created = job.tasks_created
    else:
        old = _old_module("imports", code.partition("@")[2] or OLD_COMMIT)  # "old" or "old@COMMIT"
        with open(path, "rb") as handle:
            created = old.ranking_tasks_import(project=project, file=handle, format="ranking-jsonl",
                                               created_by=None).tasks_created
    seconds = time.perf_counter() - started
    assert RankingTask.objects.filter(project=project).count() == created
    return {"code": code, "tasks": created, "seconds": round(seconds, 2),
            "tasks_per_s": round(created / seconds) if seconds else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_average_1m": round(os.getloadavg()[0], 1)}


def _run_child(*args: str, poll_job=None) -> dict:
    process = subprocess.Popen([sys.executable, __file__, "--child", *args], cwd=ROOT, env=_env(),
                               stdout=subprocess.PIPE, text=True)
    samples = []
    output: list[str] = []
    if poll_job is not None:
        first = process.stdout.readline()
        output.append(first)
        job_id = json.loads(first)["job"]
        started = time.perf_counter()
        while process.poll() is None:
            samples.append((round(time.perf_counter() - started, 1), poll_job(job_id)))
            time.sleep(2)
    rest, _ = process.communicate()
    output.append(rest)
    assert process.returncode == 0, process.returncode
    figures = json.loads("".join(output).strip().splitlines()[-1])
    if samples:
        figures["lines_done_seen"] = samples[:: max(1, len(samples) // 12)]
    return figures


def write_jsonl(path: Path, lines: int, *, offset: int = 0) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for n in range(offset, offset + lines):
            handle.write(json.dumps({
                "context": [{"role": "user", "content": f"Imported question {n}: what would a careful assistant say?"}],
                "responses": [{"content": f"Imported answer {p} to {n}. It explains the point in plain words.",
                               "generator": "policy-v1"} for p in range(K)],
            }) + "\n")
    return path.stat().st_size


def _import_compare(*, runs: int, lines: int, commit: str) -> dict:
    """Import one file with the code of ``commit`` and with today's, alternating; medians and their ratio."""
    import statistics

    from annotation.models import Project

    path = DATA_ROOT / "imports/bench-compare.jsonl"
    figures: dict[str, list] = {"old": [], "new": []}
    for run in range(runs):
        for code in ("old", "new"):
            write_jsonl(path, lines, offset=20_000_000)  # the job deletes the file it read
            project = Project.objects.create(name=f"io-compare-{code}-{run}", slug=f"io-compare-{code}-{run}")
            figures[code].append(_run_child("import", str(project.pk), str(path),
                                            "new" if code == "new" else f"old@{commit}"))
    medians = {code: statistics.median(run["tasks_per_s"] for run in runs_) for code, runs_ in figures.items()}
    return {"lines": lines, "old_commit": commit, "runs": figures,
            "median_tasks_per_s": medians, "ratio_new_over_old": round(medians["new"] / medians["old"], 2)}


def main() -> None:
    global DB_NAME
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--rankings", type=int, default=100_000)
    parser.add_argument("--import-lines", type=int, default=1_000_000)
    parser.add_argument("--old-size", type=int, default=20_000)
    parser.add_argument("--out", default="bench/results/io-scale.json")
    parser.add_argument("--import-only", action="store_true", help="skip the exports (and the million-task build)")
    parser.add_argument("--import-runs", type=int, default=0, help="old-vs-new import pairs (with --import-only)")
    parser.add_argument("--compare-lines", type=int, default=100_000)
    parser.add_argument("--import-repeats", type=int, default=1, help="big imports, one after another; the median")
    parser.add_argument("--compare-commit", default="d3b153d", help="the import code to compare with")
    parser.add_argument("--db", default=DB_NAME, help="the scratch database (dropped and made again)")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    DB_NAME = args.db
    if args.child:
        _django()
        kind, *rest = args.child
        figures = child_export(int(rest[0]), rest[1]) if kind == "export" else child_import(int(rest[0]), rest[1], rest[2])
        print(json.dumps(figures), flush=True)
        return

    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB_NAME], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=_env(), check=True)
    _django()
    from django.contrib.auth import get_user_model

    from annotation.models import Project
    from ranking.models import RankingImportJob

    labeler = get_user_model().objects.create_user(username="bench-labeler", password="x")
    results: dict = {"tasks": args.tasks, "k": K, "cpu_count": os.cpu_count()}
    out = ROOT / args.out
    if args.import_only and out.exists():
        results = json.loads(out.read_text())  # keep the export figures of an earlier run
        earlier = results.pop("import", None)
        if earlier is not None and "import_earlier_run" not in results:  # the first run's figures stay
            results["import_earlier_run"] = earlier

    if args.old_size and not args.import_only:
        started = time.perf_counter()
        small = build_project(slug="io-small", tasks=args.old_size)
        rank(project_id=small, count=1_000, labeler_id=labeler.pk)
        print(f"built the {args.old_size:,}-task project in {time.perf_counter() - started:.0f} s", flush=True)
        results["old_vs_new_export"] = {code: _run_child("export", str(small), code) for code in ("old", "new")}
        print("export, old vs new:", results["old_vs_new_export"], flush=True)
        old_lines = min(args.old_size // 2, 10_000)
        path = DATA_ROOT / "imports/bench-old.jsonl"
        write_jsonl(path, old_lines, offset=10_000_000)
        old_import = {}
        for code in ("old", "new"):
            project = Project.objects.create(name=f"io-import-{code}", slug=f"io-import-{code}")
            old_import[code] = _run_child("import", str(project.pk), str(path), code)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(path, old_lines, offset=10_000_000)  # the job deletes the file it read
        results["old_vs_new_import"] = old_import
        print("import, old vs new:", old_import, flush=True)

    if not args.import_only:
        started = time.perf_counter()
        big = build_project(slug="io-big", tasks=args.tasks)
        rank(project_id=big, count=1_000, labeler_id=labeler.pk)
        results["build_seconds"] = round(time.perf_counter() - started)
        print(f"built {args.tasks:,} tasks ({args.tasks * K:,} answers) in {results['build_seconds']} s", flush=True)
        results["export_1000_rankings"] = _run_child("export", str(big), "new")
        print("export of 1,000 rankings:", results["export_1000_rankings"], flush=True)
        rank(project_id=big, count=args.rankings - 1_000, labeler_id=labeler.pk)
        results[f"export_{args.rankings}_rankings"] = _run_child("export", str(big), "new")
        print(f"export of {args.rankings:,} rankings:", results[f"export_{args.rankings}_rankings"], flush=True)

    if args.import_only and args.import_runs:
        results["old_vs_new_import_same_file"] = _import_compare(
            runs=args.import_runs, lines=args.compare_lines, commit=args.compare_commit)
        print("import, old vs new:", results["old_vs_new_import_same_file"], flush=True)

    path = DATA_ROOT / "imports/bench-million.jsonl"
    runs = []
    for run in range(args.import_repeats):  # each into a fresh project of the same database
        size = write_jsonl(path, args.import_lines)  # the job deletes the file it read
        target = Project.objects.create(name=f"io-import-{run}", slug=f"io-import-{run}")
        figures = _run_child("import", str(target.pk), str(path), "new",
                             poll_job=lambda pk: RankingImportJob.objects.values_list("lines_done", flat=True).get(pk=pk))
        figures["file_mb"] = round(size / 1e6, 1)
        runs.append(figures)
        print("import:", figures, flush=True)
    median = sorted(runs, key=lambda figures: figures["tasks_per_s"])[len(runs) // 2]
    results["import"] = {**median, "runs_tasks_per_s": [figures["tasks_per_s"] for figures in runs],
                         "runs_load_average_1m": [figures["load_average_1m"] for figures in runs]}

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    from django.db import connections

    connections.close_all()
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB_NAME], check=False,
                   env={**os.environ, "PGCONNECT_TIMEOUT": "5"})


if __name__ == "__main__":
    main()
