"""Keyset ("cursor") pages for the API lists that grow with a project: each page starts where the last ended.

``?offset=N`` makes PostgreSQL read and throw away N rows before the page: page 5,000 of a million
ranking tasks reads 250,000 rows. A keyset page instead filters on the last row's sort key
(``WHERE (updated_at, id) < (t, i)``) and walks the list's index from there, so page 5,000 costs
what page 1 costs.

The response keeps the shape of ``EstimatedCountPagination``: ``count`` (estimated past
EXACT_COUNT_LIMIT, ``count_is_estimate`` says so), ``next``, ``previous`` and ``results``; ``next`` and
``previous`` carry an opaque ``cursor``. ``limit`` still sets the page size. ``offset`` is still
accepted up to MAX_OFFSET (old clients' first pages); past it the API answers 400 and names the
``next`` link.

The order is the queryset's own ``order_by`` (the selector's): one or more fields of the model, all
ascending or all descending, ending with the primary key so that the key is unique.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import F, Q, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param

from config.counting import EXACT_COUNT_LIMIT, count_or_estimate
from config.exceptions import ApplicationError

MAX_OFFSET = 10_000  # ?offset= past this is refused: follow the next link's cursor instead

# for an APIView that pages by hand (drf-spectacular reads a generic view's paginator by itself)
KEYSET_PARAMETERS = [
    OpenApiParameter("cursor", str, description="Opaque: take it from a next or previous link."),
    OpenApiParameter("limit", int, description="Rows per page (at most 500; 50 by default)."),
    OpenApiParameter("offset", int, description=f"Rows to skip, at most {MAX_OFFSET} (deprecated: follow next)."),
]


def keyset_page_schema(item_serializer: type[serializers.Serializer], *, name: str) -> serializers.Serializer:
    """The OpenAPI shape of a KeysetPagination page of `item_serializer` rows, for an APIView that pages by hand."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "count_is_estimate": serializers.BooleanField(
                help_text=f"count is PostgreSQL's estimate (more than {EXACT_COUNT_LIMIT} rows), not an exact count."
            ),
            "next": serializers.URLField(allow_null=True, help_text="The next page: its cursor starts where this ended."),
            "previous": serializers.URLField(allow_null=True),
            "results": item_serializer(many=True),
        },
    )


def _key_filter(fields: list[str], values: list, *, after: bool):
    """Rows strictly after (or before) ``values`` in ascending order of ``fields``: ``(f1, f2) > (v1, v2)``.

    A row comparison, which PostgreSQL takes as one index condition on an index of those columns (in
    either direction), so the walk starts at the cursor even when many rows tie on the first field.
    (Django's tuple lookups, which composite primary keys use; other databases get its fallback SQL.)
    """
    if len(fields) == 1:
        return Q(**{f"{fields[0]}__{'gt' if after else 'lt'}": values[0]})
    lookup = TupleGreaterThan if after else TupleLessThan
    return lookup(Tuple(*(F(name) for name in fields)), list(values))


def cursor_encode(key: list, *, backwards: bool = False) -> str:
    """Return the cursor of the page after (or, ``backwards``, before) the row whose sort key is ``key``."""
    payload = json.dumps({"k": [_encode_value(value) for value in key], "b": int(backwards)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _encode_value(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class KeysetPagination(BasePagination):
    """Cursor pages in the queryset's order; see the module docstring."""

    cursor_query_param = "cursor"
    limit_query_param = "limit"
    offset_query_param = "offset"
    max_limit = 500

    def paginate_queryset(self, queryset: QuerySet, request, view=None):
        self.request = request
        self.limit = self._limit(request)
        fields, descending = self._ordering(queryset)
        self.fields, self.descending = fields, descending
        model = queryset.model
        self.columns = [model._meta.pk if name == "pk" else model._meta.get_field(name) for name in fields]

        cursor = request.query_params.get(self.cursor_query_param)
        offset = request.query_params.get(self.offset_query_param)
        if cursor:
            key, backwards = self._decode(cursor)
            forwards_after = not backwards  # the page lies after the key (forwards) or before it (previous)
            # in ascending terms: a descending list's "after" is the keys below
            page_query = queryset.filter(_key_filter(fields, key, after=forwards_after != descending))
            if backwards:
                page_query = page_query.reverse()
            rows = list(page_query[: self.limit + 1])
            more = len(rows) > self.limit
            rows = rows[: self.limit]
            if backwards:
                rows.reverse()
                self.has_previous, self.has_next = more, True
            else:
                self.has_previous, self.has_next = True, more
            first_page = False
        else:
            start = self._offset(offset)
            rows = list(queryset[start : start + self.limit + 1])
            self.has_next = len(rows) > self.limit
            rows = rows[: self.limit]
            self.has_previous = start > 0
            first_page = start == 0
        self.rows = rows
        if first_page and not self.has_next:
            self.count, self.count_is_estimate = len(rows), False
        else:
            self.count, self.count_is_estimate = count_or_estimate(queryset)
            self.count = max(self.count, len(rows))
        return rows

    def _limit(self, request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        try:
            limit = int(raw) if raw not in (None, "") else api_settings.PAGE_SIZE
        except ValueError:
            limit = api_settings.PAGE_SIZE
        return min(max(limit, 1), self.max_limit)

    def _offset(self, raw) -> int:
        try:
            offset = max(int(raw), 0) if raw not in (None, "") else 0
        except ValueError:
            offset = 0
        if offset > MAX_OFFSET:
            raise ApplicationError(
                f"offset above {MAX_OFFSET} is not served (it reads every row before the page): "
                "follow the `next` link, whose cursor starts the page where the last one ended."
            )
        return offset

    @staticmethod
    def _ordering(queryset: QuerySet) -> tuple[list[str], bool]:
        ordering = list(queryset.query.order_by) or list(queryset.model._meta.ordering)
        if not ordering or not all(isinstance(name, str) for name in ordering):
            raise TypeError(f"KeysetPagination needs an ordering by field names; got {ordering!r}.")
        directions = {name.startswith("-") for name in ordering}
        fields = [name.lstrip("-") for name in ordering]
        if len(directions) != 1 or fields[-1] not in ("pk", "id") or any("__" in name for name in fields):
            raise TypeError(f"KeysetPagination needs fields of one direction ending with the primary key; got {ordering!r}.")
        return fields, directions.pop()

    def _key_of(self, row) -> list:
        return [getattr(row, "pk" if name == "pk" else column.attname)
                for name, column in zip(self.fields, self.columns, strict=True)]

    def _encode(self, row, *, backwards: bool) -> str:
        return cursor_encode(self._key_of(row), backwards=backwards)

    def _decode(self, cursor: str) -> tuple[list, bool]:
        try:
            payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            raw_key, backwards = payload["k"], bool(payload.get("b"))
            if not isinstance(raw_key, list) or len(raw_key) != len(self.columns):
                raise ValueError("wrong key length")
            key = [column.to_python(value) for column, value in zip(self.columns, raw_key, strict=True)]
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError, ValidationError) as exc:
            raise NotFound("Invalid cursor: use the next or previous link as given.") from exc
        return key, backwards

    def _link(self, row, *, backwards: bool) -> str:
        url = remove_query_param(self.request.build_absolute_uri(), self.offset_query_param)
        return replace_query_param(url, self.cursor_query_param, self._encode(row, backwards=backwards))

    def get_next_link(self):
        if not self.has_next or not self.rows:
            return None
        return self._link(self.rows[-1], backwards=False)

    def get_previous_link(self):
        if not self.has_previous:
            return None
        if not self.rows:  # an offset past the end: back to the first page
            return remove_query_param(
                remove_query_param(self.request.build_absolute_uri(), self.offset_query_param), self.cursor_query_param
            )
        return self._link(self.rows[0], backwards=True)

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
        return {
            "type": "object",
            "required": ["count", "count_is_estimate", "results"],
            "properties": {
                "count": {"type": "integer", "example": 123},
                "count_is_estimate": {
                    "type": "boolean",
                    "description": f"count is PostgreSQL's estimate (more than {EXACT_COUNT_LIMIT} rows), not an exact count.",
                },
                "next": {"type": "string", "nullable": True, "format": "uri",
                         "description": "The next page: its cursor starts where this page ended."},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "Opaque: take it from a next or previous link.", "schema": {"type": "string"}},
            {"name": self.limit_query_param, "required": False, "in": "query",
             "description": f"Rows per page (at most {self.max_limit}).", "schema": {"type": "integer"}},
            {"name": self.offset_query_param, "required": False, "in": "query",
             "description": f"Rows to skip, at most {MAX_OFFSET} (deprecated: follow next instead).",
             "schema": {"type": "integer"}},
        ]
