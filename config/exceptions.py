"""Turn domain errors into clear API answers, in one place.

Services raise ``ApplicationError`` (or Django's ``ValidationError`` from ``full_clean``);
views never catch them. The API answers 4xx with ``{"detail": ..., "errors": ...}``.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from config.database_outage import database_unavailable_response, is_database_unavailable


class ApplicationError(Exception):
    """A request the domain refuses: the message is shown to the user as is."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class ConflictError(ApplicationError):
    """The object changed under the caller (stale version, already taken): 409."""

    status_code = status.HTTP_409_CONFLICT


class NotFoundError(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND


def api_exception_handler(exc, context):
    if is_database_unavailable(exc):
        return database_unavailable_response(context["request"], exc)
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, **exc.extra}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            errors = exc.message_dict
            detail = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        else:
            errors = {"non_field_errors": exc.messages}
            detail = " ".join(exc.messages)
        return Response({"detail": detail, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        response.data = {"detail": _summarise(response.data), "errors": response.data}
    return response


def _summarise(errors: dict) -> str:
    """Flatten DRF's nested error structure into one readable line: "context.0.role: ...; responses: ..."."""
    return "; ".join(f"{path}: {message}" if path else message for path, message in _flatten(errors, ""))


def _flatten(errors, path: str):
    if isinstance(errors, dict):
        for key, value in errors.items():
            sub = "" if key == "non_field_errors" else str(key)
            yield from _flatten(value, f"{path}.{sub}" if path and sub else path or sub)
    elif isinstance(errors, list):
        if all(not isinstance(item, (dict, list)) for item in errors):
            if errors:
                yield path, " ".join(str(item) for item in errors)
        else:
            for index, item in enumerate(errors):
                if item:  # DRF puts {} for list items without errors
                    yield from _flatten(item, f"{path}.{index}" if path else str(index))
    else:
        yield path, str(errors)
