"""Counting big tables without reading them: the planner's estimate past a threshold, exact below it.

``COUNT(*)`` reads every matching row (or index entry): a million-task project costs a second per
count, and a paginated list or the admin asks for one on every view. Above ``EXACT_COUNT_LIMIT``
rows we take PostgreSQL's estimate (from ``EXPLAIN``: table statistics, no scan) and say it is one;
below it we count exactly, which is cheap there. Other databases always count exactly.

Used by the API's pagination (``EstimatedCountPagination``), the admin's paginator
(``EstimatedCountPaginator``) and pages that show how many tasks a project holds.
"""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

EXACT_COUNT_LIMIT = 20_000


def planner_estimate(queryset: QuerySet) -> int | None:
    """Return PostgreSQL's row estimate for ``queryset`` (no rows read), or None on other databases."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def count_or_estimate(queryset: QuerySet, *, limit: int | None = None) -> tuple[int, bool]:
    """Return (count, is_estimate): exact when at most ``limit`` rows match (EXACT_COUNT_LIMIT by default),
    else the planner's estimate.

    Exactness is decided by counting at most ``limit + 1`` rows (in no order, so that whatever scan
    the planner picks stops there), so it never reads more than that.
    """
    limit = EXACT_COUNT_LIMIT if limit is None else limit
    # only the ids: a list's annotations (per-row subqueries) would run for every row counted
    exact = queryset.order_by().values("pk")[: limit + 1].count()
    if exact <= limit:
        return exact, False
    estimate = planner_estimate(queryset)
    if estimate is None:
        return queryset.count(), False
    return max(estimate, exact), True


class EstimatedCountPaginator(Paginator):
    """The admin's paginator for big tables: page links from an estimated count (see module docstring).

    ``count_is_estimate`` says which, once ``count`` was read (templates/admin/pagination.html shows "≈").
    """

    count_is_estimate = False

    @cached_property
    def count(self) -> int:
        if not isinstance(self.object_list, QuerySet):
            return super().count
        count, self.count_is_estimate = count_or_estimate(self.object_list)
        return count


class EstimatedCountPagination(LimitOffsetPagination):
    """Limit/offset pages whose ``count`` is exact up to EXACT_COUNT_LIMIT and estimated above
    (``count_is_estimate`` says which); ``next`` is decided by reading one row past the page."""

    max_limit = 500

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        rows = list(queryset[self.offset : self.offset + self.limit + 1])
        self.has_next = len(rows) > self.limit
        if isinstance(queryset, QuerySet):
            self.count, self.count_is_estimate = count_or_estimate(queryset)
        else:
            self.count, self.count_is_estimate = len(queryset), False
        self.count = max(self.count, self.offset + len(rows))
        if not self.has_next and (rows or self.offset == 0):
            self.count, self.count_is_estimate = self.offset + len(rows), False
        return rows[: self.limit]

    def get_next_link(self):
        if not self.has_next:
            return None
        return super().get_next_link()

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.count,
                "count_is_estimate": self.count_is_estimate,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["properties"]["count_is_estimate"] = {
            "type": "boolean",
            "description": f"count is PostgreSQL's estimate (more than {EXACT_COUNT_LIMIT} rows), not an exact count.",
        }
        return response
