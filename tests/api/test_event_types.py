"""/api/v1/event-types/: read with any key, write with an operator key."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_error, snapshot
from tests.factories import EventTypeFactory
from webhooks.models import EventType

INVOICE_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "integer"}},
    "required": ["amount"],
}


def test_any_key_lists_event_types_with_their_archived_flag(api, event_type):
    # given one live and one archived event type
    EventTypeFactory.create(name="invoice.voided", archived=True)

    # when a tenant key lists them
    response = api.get("/api/v1/event-types/")

    # then both are there with their state
    assert response.status_code == 200
    by_name = {et["name"]: et for et in response.json()["data"]}
    assert set(by_name) == {"invoice.paid", "invoice.voided"}
    assert by_name["invoice.voided"]["archived"] is True
    assert by_name["invoice.paid"]["archived"] is False
    assert response.json()["next"] is None


def test_operator_creates_an_event_type_with_a_schema(operator_api):
    # when the operator creates an event type with a JSON Schema
    response = operator_api.post(
        "/api/v1/event-types/",
        {"name": "invoice.paid", "description": "An invoice was paid.", "schema": INVOICE_SCHEMA},
        format="json",
    )

    # then 201 and it is stored as sent
    assert response.status_code == 201, response.json()
    assert response.json()["name"] == "invoice.paid"
    stored = EventType.objects.get(name="invoice.paid")
    assert stored.description == "An invoice was paid."
    assert (stored.schema, stored.archived) == (INVOICE_SCHEMA, False)


def test_creating_a_taken_event_type_name_is_a_conflict(operator_api, event_type):
    before = snapshot()

    response = operator_api.post("/api/v1/event-types/", {"name": "invoice.paid"}, format="json")

    assert "name" in assert_error(response, 409, "conflict")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "has spaces"}, "name"),
        ({"name": ".starts.with.dot"}, "name"),
        ({}, "name"),
        ({"name": "ok.name", "schema": {"type": "not-a-type"}}, "schema"),
        ({"name": "ok.name", "schema": {"properties": {"a": {"minimum": "zero"}}}}, "schema"),
        ({"name": "ok.name", "schema": {"type": "string", "pattern": "("}}, "schema"),
        ({"name": "ok.name", "schema": [1, 2]}, "schema"),
    ],
)
def test_an_invalid_event_type_is_refused_with_field_details(operator_api, body, field):
    before = snapshot()

    response = operator_api.post("/api/v1/event-types/", body, format="json")

    details = assert_error(response, 422, "validation_error")
    assert details[field], details
    assert snapshot() == before


def test_any_key_retrieves_an_event_type(api, event_type):
    response = api.get("/api/v1/event-types/invoice.paid/")

    assert response.status_code == 200
    assert response.json()["name"] == "invoice.paid"


def test_an_unknown_event_type_is_404(api):
    assert_error(api.get("/api/v1/event-types/nope.nope/"), 404, "not_found")


def test_operator_archives_and_describes_an_event_type(operator_api, event_type):
    response = operator_api.patch(
        "/api/v1/event-types/invoice.paid/",
        {"archived": True, "description": "Retired.", "schema": INVOICE_SCHEMA},
        format="json",
    )

    assert response.status_code == 200, response.json()
    event_type.refresh_from_db()
    assert (event_type.archived, event_type.description) == (True, "Retired.")
    assert event_type.schema == INVOICE_SCHEMA


def test_patching_an_invalid_schema_changes_nothing(operator_api, event_type):
    before = snapshot()

    response = operator_api.patch(
        "/api/v1/event-types/invoice.paid/", {"schema": {"type": 12}, "archived": True}, format="json"
    )

    assert assert_error(response, 422, "validation_error")["schema"]
    assert snapshot() == before


def test_event_types_are_archived_never_deleted(operator_api, event_type):
    response = operator_api.delete("/api/v1/event-types/invoice.paid/")

    assert_error(response, 405, "method_not_allowed")
    assert EventType.objects.filter(name="invoice.paid").exists()


UNRESOLVABLE = {"$ref": "https://example.com/schemas/invoice.json"}
USABLE_SCHEMAS = {
    "local_ref": {
        "$defs": {"amount": {"type": "integer"}},
        "properties": {"amount": {"$ref": "#/$defs/amount"}},
    },
    "recursive": {"type": "object", "additionalProperties": {"$ref": "#"}},
    "metaschema_ref": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
    "nested_id": {
        "$id": "https://example.com/root.json",
        "$defs": {"code": {"$id": "code.json", "type": "string"}},
        "properties": {"code": {"$ref": "code.json"}},
    },
    "dynamic_anchor": {"$dynamicAnchor": "node", "properties": {"child": {"$dynamicRef": "#node"}}},
}


@pytest.mark.parametrize(
    "schema",
    [
        UNRESOLVABLE,
        {"properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"$dynamicRef": "#nowhere"},
        {"$ref": "#"},
        {"allOf": [{"$ref": "#"}]},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    ],
    ids=["remote", "missing_def", "dynamic_nowhere", "self", "all_of_self", "cycle"],
)
def test_a_schema_that_could_never_be_applied_is_422(operator_api, event_type, schema):
    # a schema can pass the metaschema and still fail every publish (a reference
    # that cannot be resolved, or one that applies the schema to itself forever)
    before = snapshot()

    body = {"name": "broken.schema", "schema": schema}
    created = operator_api.post("/api/v1/event-types/", body, format="json")
    patched = operator_api.patch("/api/v1/event-types/invoice.paid/", {"schema": schema}, format="json")

    assert assert_error(created, 422, "validation_error")["schema"]
    assert assert_error(patched, 422, "validation_error")["schema"]
    assert snapshot() == before


@pytest.mark.parametrize("name", list(USABLE_SCHEMAS))
def test_schemas_with_references_that_resolve_are_accepted(operator_api, name):
    response = operator_api.post(
        "/api/v1/event-types/", {"name": f"ok.{name}", "schema": USABLE_SCHEMAS[name]}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert EventType.objects.get(name=f"ok.{name}").schema == USABLE_SCHEMAS[name]
