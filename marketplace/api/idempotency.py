"""``Idempotency-Key`` on creating POSTs (SPEC §7).

The first request with a key stores its response in an ``IdempotencyRecord`` inside the same
transaction as the objects it creates, so either both exist or neither does. A repeat with the
same key and the same request (method, path, body) gets the stored response back, marked
``Idempotent-Replayed: true``, and creates nothing. A failed request stores nothing, so the
client may fix the body and retry with the same key.
"""

import functools
import hashlib
import json
import re
from collections.abc import Callable

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.http.request import RawPostDataException
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from marketplace.api.organization import api_organization
from marketplace.api.problems import Problem
from marketplace.models import IdempotencyRecord, Organization

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = IdempotencyRecord._meta.get_field("key").max_length
PATH_MAX_LENGTH = IdempotencyRecord._meta.get_field("path").max_length


# Visible ASCII without spaces (a UUID, a hash, "order-17-bid-3"): nothing a proxy could
# re-encode or trim into another key.
KEY_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{KEY_MAX_LENGTH}}}")


def idempotency_key_of(request) -> str | None:
    """The request's Idempotency-Key, None without one; a 400 problem when it is unusable."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    key = key.strip()
    if not KEY_PATTERN.fullmatch(key):
        raise Problem(
            f"An Idempotency-Key has 1 to {KEY_MAX_LENGTH} visible ASCII characters, "
            "without spaces.",
            code="invalid_idempotency_key",
            status_code=400,
        )
    return key


def _uploaded_file_digest(value) -> str:
    """An uploaded file as its name, size and SHA-256 (read in chunks, then rewound)."""
    if not isinstance(value, UploadedFile):
        return str(value)
    digest = hashlib.sha256()
    for chunk in value.chunks():
        digest.update(chunk)
    value.seek(0)
    return f"file:{value.name}:{value.size}:{digest.hexdigest()}"


def request_fingerprint(request) -> str:
    """SHA-256 of the method, path and raw body: what makes two requests "the same"."""
    try:
        body = request.body
    except RawPostDataException:
        # Something (a multipart parse) consumed the stream already; hash the parsed data,
        # uploaded files by their content (two files of one name are different requests).
        body = json.dumps(
            request.data, sort_keys=True, cls=JSONEncoder, default=_uploaded_file_digest
        ).encode()
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _stored_response(*, organization: Organization, key: str, fingerprint: str) -> Response | None:
    """The replay of an earlier request with this key, None when there is none."""
    record = IdempotencyRecord.objects.filter(organization=organization, key=key).first()
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise Problem(
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request.",
            code="idempotency_key_reused",
            status_code=422,
        )
    if record.response_status is None:
        raise Problem(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            code="idempotency_in_progress",
            status_code=409,
        )
    return Response(
        record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"}
    )


def _as_json(data):
    """Response data as plain JSON values, ready for a JSONField."""
    return json.loads(json.dumps(data, cls=JSONEncoder))


def idempotent_create(request, *, create: Callable[[], Response]) -> Response:
    """Run ``create`` at most once per Idempotency-Key of the acting organization.

    Without the header ``create`` simply runs.
    """
    key = idempotency_key_of(request)
    if key is None:
        return create()
    organization = api_organization(request)
    if organization is None:
        raise Problem(
            "An Idempotency-Key needs an organization to act for.",
            code="organization_required",
            status_code=403,
        )
    fingerprint = request_fingerprint(request)
    replay = _stored_response(organization=organization, key=key, fingerprint=fingerprint)
    if replay is not None:
        return replay

    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    organization=organization,
                    key=key,
                    method=request.method,
                    path=request.path[:PATH_MAX_LENGTH],
                    request_hash=fingerprint,
                )
        except IntegrityError:
            # A concurrent request with the same key got the row first. On PostgreSQL the
            # insert waited for it to commit, so its answer can be replayed now.
            replay = _stored_response(organization=organization, key=key, fingerprint=fingerprint)
            if replay is None:
                raise Problem(
                    "A request with this Idempotency-Key is still being processed; retry shortly.",
                    code="idempotency_in_progress",
                    status_code=409,
                ) from None
            return replay
        response = create()
        record.response_status = response.status_code
        record.response_body = _as_json(response.data)
        record.save(update_fields=["response_status", "response_body"])
    return response


def idempotent(view_method):
    """Decorate a view(set) method that creates something to honour the Idempotency-Key."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        return idempotent_create(
            request, create=lambda: view_method(self, request, *args, **kwargs)
        )

    return wrapper


class IdempotentCreateMixin:
    """For ViewSets: ``create`` honours the Idempotency-Key. Document it in the schema with
    ``marketplace.api.schema.IDEMPOTENCY_PARAMETERS``."""

    @idempotent
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)
