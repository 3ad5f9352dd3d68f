"""JSON bodies are read with JSON's types, as the OpenAPI schema describes them."""

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail


def _reads_like_drf(field, drf_class) -> bool:
    """The field is a `drf_class` that parses its input as DRF does (fields with their own
    parsing, e.g. StrictIntegerField, already refuse the wrong JSON types, in their words)."""
    return (
        isinstance(field, drf_class)
        and type(field).to_internal_value is drf_class.to_internal_value
    )


def _type_error(field, value) -> str | None:
    if _reads_like_drf(field, serializers.CharField) and not isinstance(value, str):
        return "Send text as a JSON string."
    if _reads_like_drf(field, serializers.BooleanField) and not isinstance(value, bool):
        return "Send true or false (a JSON boolean)."
    numeric = _reads_like_drf(field, serializers.IntegerField) or _reads_like_drf(
        field, serializers.FloatField
    )
    if numeric and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return "Send a JSON number."
    return None


class StrictJsonTypes:
    """For request serializers: in a JSON body, text fields take only JSON strings, yes/no
    fields only JSON booleans and number fields only JSON numbers. DRF would otherwise read
    12 as "12", "yes" or 1 as true and "1.5" as 1.5, none of which the schema allows. Form data
    (multipart uploads) has no JSON types and is read as DRF reads it."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping) and not hasattr(data, "getlist"):
            errors = {}
            for field in self._writable_fields:
                value = data.get(field.field_name)
                message = None if value is None else _type_error(field, value)
                if message:
                    errors[field.field_name] = [ErrorDetail(message, code="invalid")]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
