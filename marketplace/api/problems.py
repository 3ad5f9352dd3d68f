"""Errors as RFC 9457 problem details with a stable machine-readable ``code``."""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://segment.exchange/problems/"

TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
}


class Problem(exceptions.APIException):
    """An API error with its own status and code, raised by views and services' callers."""

    def __init__(self, detail: str, *, code: str, status_code: int = 400, extra=None):
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.extra = extra or {}


def problem_response(*, status_code: int, code: str, detail: str, instance: str = "", **extra):
    body = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for field, value in detail.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _code_of(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    while isinstance(codes, (list, dict)):
        if not codes:
            return exc.default_code
        codes = codes[0] if isinstance(codes, list) else next(iter(codes.values()))
    return str(codes)


def problem_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            errors = dict(exc.message_dict)
            if NON_FIELD_ERRORS in errors:
                errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
        else:
            errors = {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(errors)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()

    response = exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    instance = request.get_full_path() if request is not None else ""
    extra = {}
    if isinstance(exc, exceptions.ValidationError):
        code = "validation_failed"
        extra["errors"] = exc.detail
        detail = _first_message(exc.detail)
    else:
        code = _code_of(exc)
        detail = _first_message(exc.detail)
        if code == "permission_denied" and detail.startswith("CSRF Failed"):
            # A browser session's unsafe request without the CSRF token.
            code = "csrf_failed"
        if isinstance(exc, Problem):
            extra.update(exc.extra)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        extra["retry_after_seconds"] = int(exc.wait)
    problem = problem_response(
        status_code=response.status_code, code=code, detail=detail, instance=instance, **extra
    )
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            problem[header] = response[header]
    return problem


__all__ = ["Problem", "problem_exception_handler", "problem_response", "status"]
