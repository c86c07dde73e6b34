"""Pieces of hand-written SQL that differ between the databases the platform runs on.

PostgreSQL in production and tests; SQLite for a laptop and the tiny benches (bench/simulated_loop.py
--tiny), where ``transaction.atomic`` takes the write lock when it begins (config.settings.base), so
transactions run one at a time and row locks have nothing left to do.
"""

from django.db import connection


def for_update_clause(*, of: str = "", skip_locked: bool = False) -> str:
    """Return the row-locking clause that ends a SELECT (`` FOR UPDATE OF t SKIP LOCKED``), or "" where there is none."""
    features = connection.features
    if not features.has_select_for_update:
        return ""
    return " " + connection.ops.for_update_sql(
        of=(of,) if of and features.has_select_for_update_of else (),
        skip_locked=skip_locked and features.has_select_for_update_skip_locked,
    )
