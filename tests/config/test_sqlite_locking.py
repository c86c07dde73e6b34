"""The embedded SQLite database: two processes writing at once wait for each other instead of failing."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Two threads, two connections (Django's are per thread): one holds a write transaction for a moment;
# the other, inside transaction.atomic, reads and then writes, as ranking_submit does.
PROBE = """
import threading, time
import django
django.setup()
from django.db import connection, transaction

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE probe (n integer)")
connection.close()
holding = threading.Event()

def writer():
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO probe VALUES (1)")
        holding.set()
        time.sleep(0.5)
    connection.close()

def reader_then_writer():
    holding.wait()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM probe")
            cursor.execute("INSERT INTO probe VALUES (2)")
    connection.close()

threads = [threading.Thread(target=writer), threading.Thread(target=reader_then_writer)]
errors = []
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM probe")
    print("rows", cursor.fetchone()[0])
"""


def test_a_transaction_that_reads_then_writes_waits_for_another_writer(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.local", RLHF_VAR_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]  # "database is locked" without IMMEDIATE transactions
    assert done.stdout.strip().splitlines()[-1] == "rows 2"
