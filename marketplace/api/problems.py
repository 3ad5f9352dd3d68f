"""Errors as RFC 9457 problem details with a stable machine-readable ``code``."""

import functools
import json
import logging

from django.apps import apps
from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import UniqueConstraint
from django.http import Http404, HttpResponse, HttpResponsePermanentRedirect
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)
# The detail of a 404 for a row deleted by another request while this one ran.
GONE_DETAIL = "It no longer exists: it was deleted while this request ran."

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
    503: "Service unavailable",
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


# Which status a refused input gets (SPEC §7: problem details with a stable code):
#   400 validation_failed: the request's shape is wrong (a type, a format, a range, a missing
#       field), everything the OpenAPI schema describes;
#   409 already_exists: it is well formed but collides with an existing object (a name or an
#       identifier that must be unique);
#   422 validation_failed: it is well formed but breaks a rule the schema cannot express (a
#       time that must be in the future, fields that exclude each other, an id naming nothing
#       of yours). Services raise Django's ValidationError for these; serializers mark theirs
#       with the code RULE.
RULE = "rule"
RULE_CODES = {RULE, "does_not_exist"}
UNIQUE_CODES = {"unique", "unique_together"}


@functools.cache
def unique_violation_messages() -> frozenset[str]:
    """The messages of every model's unique constraints (how a duplicate is recognised)."""
    messages = set()
    for model in apps.get_models():
        for constraint in model._meta.constraints:
            if isinstance(constraint, UniqueConstraint) and constraint.violation_error_message:
                messages.add(str(constraint.violation_error_message))
    return frozenset(messages)


def _leaves(detail) -> list:
    if isinstance(detail, dict):
        return [leaf for value in detail.values() for leaf in _leaves(value)]
    if isinstance(detail, list):
        return [leaf for value in detail for leaf in _leaves(value)]
    return [detail]


def validation_status(exc: exceptions.ValidationError, *, from_service: bool) -> tuple[int, str]:
    """The status and code of a refused input (see above)."""
    leaves = _leaves(exc.detail)
    if leaves and all(
        getattr(leaf, "code", None) in UNIQUE_CODES or str(leaf) in unique_violation_messages()
        for leaf in leaves
    ):
        return 409, "already_exists"
    if from_service or (
        leaves and all(getattr(leaf, "code", None) in RULE_CODES for leaf in leaves)
    ):
        return 422, "validation_failed"
    return 400, "validation_failed"


def problem_exception_handler(exc, context):
    from_service = False
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            errors = dict(exc.message_dict)
            if NON_FIELD_ERRORS in errors:
                errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
        else:
            errors = {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(errors)
        from_service = True
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, ObjectDoesNotExist):
        # A row that went while the request ran (another request deleted it after this one
        # had read it): now, as far as this request can tell, it does not exist.
        logger.warning("API %s: %s", type(exc).__name__, exc)
        exc = exceptions.NotFound(GONE_DETAIL)

    response = exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    instance = request.get_full_path() if request is not None else ""
    extra = {}
    if isinstance(exc, exceptions.ValidationError):
        status_code, code = validation_status(exc, from_service=from_service)
        response.status_code = status_code
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


__all__ = [
    "Problem",
    "api_not_found",
    "problem_exception_handler",
    "problem_response",
    "status",
]


@csrf_exempt  # answers any method with a 404: there is nothing to protect
def api_not_found(request, *args, **kwargs):
    """The answer to a path under /api/v1/ that no route matches: a 404 problem, like any other
    missing object. A GET of a collection or object path without its final slash is redirected
    to it, as Django's APPEND_SLASH does for the rest of the site."""
    path = request.path_info
    if (
        request.method in ("GET", "HEAD")
        and not path.endswith("/")
        and _resolves_to_a_route(path + "/")
    ):
        return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    body = {
        "type": PROBLEM_TYPE_BASE + "not-found",
        "title": TITLES[404],
        "status": 404,
        "detail": "There is no such resource in the API.",
        "code": "not_found",
        "instance": request.get_full_path(),
    }
    return HttpResponse(json.dumps(body), status=404, content_type=PROBLEM_CONTENT_TYPE)


def _resolves_to_a_route(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return match.func is not api_not_found
