"""The site's error answers: RFC 9457 problem details under /api/ (also for what never reaches
a DRF view: an unknown path, a body over the size limit, a server error), pages elsewhere."""

import sys

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader

from marketplace.api.problems import GONE_DETAIL, PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE, TITLES

API_PREFIX = "/api/"
# A database restart or fail-over takes seconds; clients retry after this.
DATABASE_RETRY_AFTER_SECONDS = 5
# Titles of the answers the API's own problem titles do not cover.
EXTRA_TITLES = {500: "Server error", 503: "Service unavailable"}


def _title(status: int) -> str:
    return TITLES.get(status) or EXTRA_TITLES.get(status, "Error")


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def _answer(request, *, status: int, code: str, detail: str):
    if _is_api(request):
        body = {
            "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
            "title": _title(status),
            "status": status,
            "detail": detail,
            "code": code,
            "instance": request.path,
        }
        return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)
    context = {"status": status, "title": _title(status), "detail": detail}
    return render(request, "error.html", context, status=status)


def bad_request(request, exception=None):
    """Django's 400 (a SuspiciousOperation): a body over the limits is 413 with the limit."""
    if isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _answer(
            request,
            status=413,
            code="payload_too_large",
            detail=(
                f"The request body is over the limit of {limit:,} bytes; nothing was saved. "
                "Captures are uploaded as files (multipart), whose own limit is larger."
            ),
        )
    if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        return _answer(
            request,
            status=413,
            code="too_many_fields",
            detail="The request has too many fields or files; nothing was saved.",
        )
    return _answer(request, status=400, code="bad_request", detail="The request could not be read.")


def not_found(request, exception=None):
    return _answer(
        request, status=404, code="not_found", detail="There is nothing at this address."
    )


def gone(request):
    """What was asked for existed when the request began and was deleted while it ran."""
    return _answer(request, status=404, code="not_found", detail=GONE_DETAIL)


def _database_reachable() -> bool:
    """Whether the default database answers now: a database error while it does (a deadlock,
    a bug in a query) stays a 500 that monitoring sees, not a 503 clients retry forever."""
    try:
        if connection.connection is None:
            connection.ensure_connection()
        return connection.is_usable()
    except Exception:
        return False


def server_error(request):
    """Django's 500, called while the exception is being handled: a database that cannot be
    reached (restarting, failing over) is a 503 with Retry-After, so clients retry."""
    if isinstance(sys.exception(), OperationalError | InterfaceError) and not _database_reachable():
        status, code = 503, "database_unavailable"
        detail = (
            "The exchange's database is unavailable for a moment. Retry in a few seconds; "
            "a request retried with the same Idempotency-Key is done at most once."
        )
    else:
        status, code = 500, "server_error"
        detail = "Something went wrong on our side; it has been logged."
    if _is_api(request):
        response = _answer(request, status=status, code=code, detail=detail)
    else:
        # No request context and no base template: whatever failed (the database, say) must
        # not fail this page too.
        page = loader.get_template("500.html").render(
            {"status": status, "title": _title(status), "detail": detail}
        )
        response = HttpResponse(page, status=status)
    if status == 503:
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response
