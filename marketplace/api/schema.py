"""OpenAPI descriptions shared by the partner API: problem details and the Idempotency-Key."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS

from marketplace.api.problems import PROBLEM_CONTENT_TYPE

PROBLEM_DESCRIPTIONS = {
    400: "Invalid input (`validation_failed`, with per-field `errors`) or a bad request.",
    401: "No, an unknown (`invalid_api_key`) or a revoked (`api_key_revoked`) credential.",
    403: "Not allowed, e.g. `insufficient_scope` for a read-only key.",
    404: "No such object among those the caller may see.",
    409: "Conflicts with the current state of the resource.",
    422: "`idempotency_key_reused`: the Idempotency-Key was sent before with another body.",
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
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Up to 255 characters chosen by the client. Repeating the request with the same key "
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


class PublicReadAutoSchema(AutoSchema):
    """Documents that views with ``public_read = True`` answer anonymous reads too."""

    def get_auth(self):
        auths = super().get_auth()
        if getattr(self.view, "public_read", False) and self.method in SAFE_METHODS:
            auths.append({})
        return auths
