"""OpenAPI descriptions shared by the partner API: problem details and the Idempotency-Key."""

from drf_spectacular.drainage import has_override
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance, is_serializer
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS

from marketplace.api.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE, TITLES

PROBLEM_DESCRIPTIONS = {
    400: "Invalid input (`validation_failed`, with per-field `errors`) or a bad request.",
    401: "No, an unknown (`invalid_api_key`) or a revoked (`api_key_revoked`) credential.",
    403: "Not allowed, e.g. `insufficient_scope` for a read-only key.",
    404: "No such object among those the caller may see.",
    409: "Conflicts with the current state of the resource.",
    422: "`validation_failed`: well formed, but against a rule (see `errors`), e.g. an id that "
    "names nothing of yours; `idempotency_key_reused`: the Idempotency-Key was sent before "
    "with another body.",
}


class ProblemSerializer(serializers.Serializer):
    """An error as RFC 9457 problem details (documentation only)."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable machine-readable error code.")
    instance = serializers.CharField(required=False, help_text="The path that failed.")
    errors = serializers.DictField(
        required=False, help_text="Messages per input field, for `validation_failed`."
    )


def problem_example(
    status: int,
    code: str,
    detail: str,
    *,
    name: str | None = None,
    instance: str = "/api/v1/networks/",
    **extra,
) -> OpenApiExample:
    """An OpenAPI example of a problem response (RFC 9457), shaped as problems.py answers one:
    named `name` (else its code), at the path `instance`, with any extra members."""
    return OpenApiExample(
        name or code,
        response_only=True,
        status_codes=[str(status)],
        media_type=PROBLEM_CONTENT_TYPE,
        value={
            "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
            "title": TITLES[status],
            "status": status,
            "detail": detail,
            "code": code,
            "instance": instance,
            **extra,
        },
    )


# One example of each problem status: what every error of the API looks like.
PROBLEM_EXAMPLES = {
    400: problem_example(
        400,
        "validation_failed",
        "capacity_mbps: Ensure this value is greater than or equal to 1.",
        errors={"capacity_mbps": ["Ensure this value is greater than or equal to 1."]},
    ),
    401: problem_example(401, "invalid_api_key", "The API key is not valid."),
    403: problem_example(
        403,
        "insufficient_scope",
        "This API key may only read; writing needs a key with the write scope.",
    ),
    404: problem_example(404, "not_found", "Not found."),
    409: problem_example(
        409,
        "already_exists",
        "This provider already has a network with this name.",
        errors={"non_field_errors": ["This provider already has a network with this name."]},
    ),
    413: problem_example(413, "upload_too_large", "The upload is larger than 2.0 GiB."),
    415: problem_example(
        415, "unsupported_media_type", 'Unsupported media type "text/plain" in request.'
    ),
    422: problem_example(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was already used for a different request; use a new key for a "
        "new request.",
    ),
    503: problem_example(
        503,
        "payments_unavailable",
        "The payment provider cannot be reached; nothing was changed. Retry later.",
    ),
    429: problem_example(
        429,
        "throttled",
        "Request was throttled. Expected available in 12 seconds.",
        retry_after_seconds=12,
    ),
}


def problem_responses(*statuses: int, **descriptions: str) -> dict:
    """Problem-details responses for ``extend_schema(responses=...)``.

    ``descriptions`` override the default text per status, keyed ``s409="..."``.
    """
    return {
        (status, PROBLEM_CONTENT_TYPE): OpenApiResponse(
            ProblemSerializer,
            description=descriptions.get(f"s{status}", PROBLEM_DESCRIPTIONS.get(status, "")),
        )
        for status in statuses
    }


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name="Idempotency-Key",
    type={"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "1 to 255 visible ASCII characters without spaces, chosen by the client (a UUID is a "
        "good key). Repeating the request with the same key "
        "and body returns the first response again (header `Idempotent-Replayed: true`) "
        "without creating anything; the same key with another body is a 422 "
        "`idempotency_key_reused`, and while the first request is still running a 409 "
        "`idempotency_in_progress`. Keys are kept per organization."
    ),
)

IDEMPOTENT_REPLAYED_HEADER = OpenApiParameter(
    name="Idempotent-Replayed",
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    response=[201],
    enum=["true"],
    description="Present when this response is the stored answer to an earlier request.",
)

IDEMPOTENCY_PARAMETERS = [IDEMPOTENCY_KEY_PARAMETER, IDEMPOTENT_REPLAYED_HEADER]


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes ``Authorization: Bearer <key>`` (registered when this module is imported)."""

    target_class = "marketplace.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API key of your organization, created by an owner or admin on the "
                "organization page. Read-scoped keys may only use GET."
            ),
        }


# Problems any operation may answer with, documented on every operation that does not describe
# them itself (``ApiAutoSchema``): clients and contract tests (Schemathesis, tests/api) can rely
# on every status the API sends being in the schema.
IMPLICIT_PROBLEMS = {
    400: "`validation_failed`: the input does not have the documented shape (see `errors`); "
    "`parse_error` (a body that is not valid JSON or form data) or `invalid_idempotency_key`.",
    401: PROBLEM_DESCRIPTIONS[401],
    403: "`insufficient_scope` (a read-only key writing), `csrf_failed` (a browser session "
    "without its CSRF token), or a rule of the operation.",
    404: "`not_found`: no such object among those you may see, or a `page` past the last one.",
    409: "`already_exists` (a name or identifier that must be unique is taken) or "
    "`idempotency_in_progress` (the first request with this Idempotency-Key is still running).",
    415: "`unsupported_media_type`: send the body as JSON (or as the operation says).",
    422: "`validation_failed`: well formed, but against a rule (see `errors`), e.g. an id that "
    "names nothing of yours; `idempotency_key_reused`: the Idempotency-Key was sent before "
    "with another body.",
    429: "`throttled`: too many requests; retry after `Retry-After` seconds "
    "(`retry_after_seconds`).",
}
WRITE_METHODS = ("POST", "PUT", "PATCH")
# Text the API accepts: DRF's CharField refuses NUL characters, and, unless blank is allowed,
# text that is only whitespace (it trims it first).
TEXT_PATTERN = "^[^\\u0000]+$"  # blank allowed: the schema adds the empty string
NONBLANK_TEXT_PATTERN = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


def is_text_input(field) -> bool:
    return isinstance(field, serializers.CharField) and not field.read_only


def has_request_shape(field) -> bool:
    """A field a request describes otherwise than an answer: text (which text is accepted),
    an upload (a file, not its URL), a choice documented as a plain string."""
    if field.read_only:
        return False
    if isinstance(field, serializers.ChoiceField):
        return has_override(field, "field")
    return isinstance(field, (serializers.CharField, serializers.FileField))


class ApiAutoSchema(AutoSchema):
    """The partner API's schema of an operation: the problems every operation may answer
    (IMPLICIT_PROBLEMS) are documented where the operation does not document them itself, and
    text fields say which text is accepted (no NUL; not blank where blank is refused)."""

    def implicit_problem_statuses(self) -> list[int]:
        statuses = [401, 403, 429]
        if "{" in self.path or self.method == "GET":
            statuses.append(404)  # an object that is not yours, or a page past the last
        if self.method in WRITE_METHODS:
            statuses += [400, 409, 415, 422]
        elif self.method == "GET" and self._is_list_view():
            statuses.append(400)  # a filter value that is not valid
        if any(
            getattr(parameter, "name", None) == IDEMPOTENCY_KEY_PARAMETER.name
            for parameter in self.get_override_parameters()
        ):
            statuses += [400, 409, 422]
        return sorted(set(statuses))

    def map_parsers(self):
        """JSON only, unless the operation uploads a file (then the multipart form too): the
        API speaks JSON, though DRF's form parsers would read a form as well."""
        media_types = super().map_parsers()
        if "application/json" in media_types and not self.uploads_files():
            return ["application/json"]
        return media_types

    def uploads_files(self) -> bool:
        serializer = force_instance(self.get_request_serializer())
        fields = getattr(serializer, "fields", None) if is_serializer(serializer) else None
        return any(isinstance(field, serializers.FileField) for field in (fields or {}).values())

    def _get_parameters(self):
        parameters = []
        for parameter in super()._get_parameters():
            if parameter.get("in") == "query" and not parameter.get("required"):
                # DRF reads an empty optional query parameter (`?status=`) as an absent one
                parameter = {**parameter, "allowEmptyValue": True}
                if parameter["name"] == "page":
                    parameter["schema"] = {**parameter["schema"], "minimum": 1}
            parameters.append(parameter)
        return parameters

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        if isinstance(serializer, dict) and serializer.get("oneOf"):
            # a raw schema of alternatives (e.g. auctions.api.groups.HOLDER_REQUEST_SCHEMA):
            # the body is required when every alternative requires fields
            required = all(branch.get("required") for branch in serializer["oneOf"])
        return schema, required

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status in self.implicit_problem_statuses():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    OpenApiResponse(ProblemSerializer, description=IMPLICIT_PROBLEMS[status]),
                    str(status),
                    [PROBLEM_CONTENT_TYPE],
                    direction,
                )
        return dict(sorted(responses.items()))

    def get_serializer_name(self, serializer, direction):
        # Text fields of a request say which text is accepted (below); answers may hold text
        # the exchange wrote itself (an empty digest, a message), so a serializer with text
        # input has a request component of its own, "<Name>Input".
        name = super().get_serializer_name(serializer, direction)
        if direction == "request" and any(
            has_request_shape(field) for field in getattr(serializer, "fields", {}).values()
        ):
            return f"{name.removesuffix('Serializer')}InputSerializer"
        return name

    def _get_response_for_code(
        self, serializer, status_code, media_types=None, direction="response"
    ):
        response = super()._get_response_for_code(serializer, status_code, media_types, direction)
        # a problem the operation gives no example of shows the general one of its status
        problem = response.get("content", {}).get(PROBLEM_CONTENT_TYPE)
        example = PROBLEM_EXAMPLES.get(int(status_code)) if str(status_code).isdigit() else None
        if problem is not None and "examples" not in problem and example is not None:
            problem["examples"] = {
                example.name: {"value": example.value, "summary": example.value["code"]}
            }
        return response

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction == "request" and not field.read_only and isinstance(schema, dict):
            if (
                isinstance(field, (serializers.ListField, serializers.ManyRelatedField))
                and not field.allow_empty
                and schema.get("type") == "array"
            ):
                schema["minItems"] = max(schema.get("minItems", 0), 1)
            if isinstance(field, serializers.JSONField) and field.default is list:
                # a list of JSON values; null is no list
                schema = {**schema, "type": "array", "items": {}}
                return schema
            if getattr(field, "json_text_pattern", None):
                # JSON text in a form field (segmentation.api.serializers.JsonListField)
                schema = {**schema, "pattern": field.json_text_pattern}
                schema.pop("nullable", None)
                return schema
            if isinstance(field, serializers.FileField):
                # an upload is a file part of a multipart form (drf-spectacular documents it
                # as binary only with COMPONENT_SPLIT_REQUEST)
                schema = {**schema, "type": "string", "format": "binary"}
                schema.pop("nullable", None)
                return schema
            if (
                isinstance(field, serializers.ChoiceField)
                and "enum" not in schema
                and not {"oneOf", "allOf", "anyOf"} & schema.keys()
                and all(isinstance(value, str) for value in field.choices)
            ):
                # a choice documented as a plain string (its enum would collide with another
                # of the same field name): a request still says which values it takes, nested
                # so that the enum post-processing leaves it alone
                values = [value for value in field.choices if value != ""]
                schema = {key: value for key, value in schema.items() if key != "type"}
                schema["allOf"] = [{"type": "string", "enum": values}]
                return schema
        if not (
            direction == "request"
            and is_text_input(field)
            and isinstance(schema, dict)
            and schema.get("type") == "string"
        ):
            return schema
        # a slug's or a regex field's own pattern (query parameters do not get it otherwise)
        self._insert_field_validators(field, schema)
        if not {"pattern", "format", "enum"} & schema.keys():
            if field.allow_blank:
                schema["pattern"] = TEXT_PATTERN
            else:
                schema["pattern"] = NONBLANK_TEXT_PATTERN
                schema["minLength"] = max(schema.get("minLength", 0), 1)
        return schema


class PublicReadAutoSchema(ApiAutoSchema):
    """Documents that views with ``public_read = True`` answer anonymous reads too."""

    def get_auth(self):
        auths = super().get_auth()
        if getattr(self.view, "public_read", False) and self.method in SAFE_METHODS:
            auths.append({})
        return auths
