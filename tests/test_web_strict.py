"""Numbers must be numbers: every field of the API's models is validated strictly."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("delay_seconds", "10", "float_type"),
        ("delay_seconds", True, "float_type"),
        ("deadline_seconds", "2", "float_type"),
        ("deadline_seconds", False, "float_type"),
        ("type", 5, "string_type"),
        ("payload", [], "dict_type"),
    ],
)
def test_a_submission_field_of_the_wrong_json_type_is_a_422_naming_it(
    client: FlaskClient, field: str, value: Any, kind: str
) -> None:
    body = {"type": "demo.echo", "payload": {}, field: value}
    r = client.post("/jobs", json=body)
    assert r.status_code == 422, r.get_json()
    assert r.mimetype == "application/problem+json"
    errors = r.get_json()["errors"]
    assert {"loc": ["body", field], "type": kind} in [
        {"loc": e["loc"], "type": e["type"]} for e in errors
    ], errors
    assert "valid" in errors[0]["msg"]


def test_a_json_integer_is_a_number_of_seconds(client: FlaskClient) -> None:
    r = client.post("/jobs", json={"type": "demo.echo", "delay_seconds": 300})
    assert r.status_code == 202, r.get_json()
    assert client.delete(f"/jobs/{r.get_json()['id']}").status_code == 204


@pytest.mark.parametrize("value", ["1", True])
def test_a_payload_number_given_as_a_string_or_boolean_is_a_422(
    client: FlaskClient, value: Any
) -> None:
    r = client.post("/jobs", json={"type": "demo.sleep", "payload": {"seconds": value}})
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"] == ["body", "payload", "seconds"]


@pytest.mark.parametrize("query", ["limit=true", "limit=ten", "limit=2.5"])
def test_a_list_limit_that_is_not_an_integer_is_a_422(client: FlaskClient, query: str) -> None:
    r = client.get(f"/jobs?{query}")
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["loc"] == ["query", "limit"]


def test_a_list_limit_in_the_query_string_is_still_read_as_a_number(client: FlaskClient) -> None:
    assert client.get("/jobs?limit=3").status_code == 200


def test_an_integral_json_number_is_an_integer_as_json_schema_says(client: FlaskClient) -> None:
    body = '{"type": "demo.flaky", "payload": {"failures": 2.0}, "delay_seconds": 300.0}'
    r = client.post("/jobs", data=body, content_type="application/json")
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["payload"] == {"failures": 2}
    assert client.delete(f"/jobs/{r.get_json()['id']}").status_code == 204
    half = '{"type": "demo.flaky", "payload": {"failures": 2.5}}'
    assert client.post("/jobs", data=half, content_type="application/json").status_code == 422


def test_a_number_out_of_range_is_malformed_json(client: FlaskClient) -> None:
    body = '{"type": "demo.sleep", "payload": {"seconds": 1e400}}'
    assert client.post("/jobs", data=body, content_type="application/json").status_code == 400
