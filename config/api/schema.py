"""OpenAPI post-processing: document the error envelope on every operation."""
from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "validation_error"},
                "message": {"type": "string"},
                "details": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}

_ALWAYS = {
    "400": "Malformed request.",
    "401": "Missing or invalid API key.",
    "403": "The key may not do this.",
    "404": "Not found (or belongs to another tenant).",
    "405": "Method not allowed.",
    "422": "Validation failed; `details` maps fields to messages.",
}
_WITH_BODY = {"413": "Payload or request body too large.", "415": "Body is not JSON."}
# Error statuses a view declares itself (``responses={409: None}``) get the
# envelope too; drf-spectacular would document them without a body.
_DECLARED = {"409": "Conflicts with existing state.", "429": "Too many requests; see Retry-After."}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            extra = dict(_ALWAYS)
            if method in ("post", "put", "patch"):
                extra.update(_WITH_BODY)
            for code, description in extra.items():
                responses.setdefault(code, {"description": description, "content": ref})
            for code, response in responses.items():
                if str(code)[0] in "45" and "content" not in response:
                    response["content"] = ref
                    if response.get("description") in (None, "", "No response body"):
                        response["description"] = _DECLARED.get(str(code), "Error.")
    return result
