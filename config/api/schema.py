"""OpenAPI post-processing: the error envelope on every operation, and the links
between operations (the id one answer names, the operations that take it)."""

from __future__ import annotations

import re
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


_TENANTS = "/api/v1/tenants/"
_TENANT = "/api/v1/tenants/{uid}/"


def _named(name: str, pointer: str) -> dict[str, str]:
    return {name: f"$response.body#{pointer}"}


def _in_tenant(name: str, pointer: str) -> dict[str, str]:
    return {**_named(name, pointer), "uid": "$request.path.uid"}


# (method, path, status codes) of an answer -> the path parameters it names, as
# runtime expressions; the first one is the id the answer itself introduces.
_LINK_SOURCES: list[tuple[str, str, tuple[str, ...], dict[str, str]]] = [
    ("post", _TENANTS, ("201",), _named("uid", "/uid")),
    ("get", _TENANTS, ("200",), _named("uid", "/data/0/uid")),
    ("post", "/api/v1/event-types/", ("201",), _named("name", "/name")),
    ("get", "/api/v1/event-types/", ("200",), _named("name", "/data/0/name")),
    ("post", f"{_TENANT}endpoints/", ("201",), _in_tenant("endpoint_id", "/id")),
    ("get", f"{_TENANT}endpoints/", ("200",), _in_tenant("endpoint_id", "/data/0/id")),
    ("post", f"{_TENANT}messages/", ("202", "200"), _in_tenant("message_id", "/id")),
    ("get", f"{_TENANT}messages/", ("200",), _in_tenant("message_id", "/data/0/id")),
    ("get", f"{_TENANT}messages/{{message_id}}/", ("200",), _in_tenant("delivery_id", "/deliveries/0/id")),
    ("get", f"{_TENANT}deliveries/", ("200",), _in_tenant("delivery_id", "/data/0/id")),
    ("post", f"{_TENANT}deliveries/{{delivery_id}}/replay/", ("202",), _in_tenant("delivery_id", "/id")),
]
_PATH_PARAMETER = re.compile(r"{(\w+)}")


def add_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """OpenAPI links from each answer that names an id to every operation taking that id.

    A target takes the id the answer introduces and no path parameter the
    answer does not name, so ``POST /tenants/`` links to the tenant's own
    operations and its endpoints' list, not to one endpoint.
    """
    paths: dict[str, dict[str, Any]] = result.get("paths", {})
    for method, path, statuses, named in _LINK_SOURCES:
        source = paths.get(path, {}).get(method)
        if source is None:
            continue
        introduced = next(iter(named))
        links = {}
        for target_path, item in paths.items():
            wanted = set(_PATH_PARAMETER.findall(target_path))
            if introduced not in wanted or not wanted <= named.keys():
                continue
            for target in item.values():
                if not isinstance(target, dict) or "operationId" not in target:
                    continue
                links[target["operationId"]] = {
                    "operationId": target["operationId"],
                    "parameters": {name: named[name] for name in sorted(wanted)},
                }
        for status in statuses:
            response = source.get("responses", {}).get(status)
            if response is not None and links:
                response["links"] = dict(sorted(links.items()))
    return result
