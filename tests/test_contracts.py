"""The wire contract: schema files match the models; bad requests are refused naming the field."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from contracts.models import SendRequest, SendResult, describe_validation_error
from contracts.schema_files import MODELS, SCHEMA_DIR, render, stale_files


def test_schema_files_match_the_models() -> None:
    assert stale_files() == [], "run: python -m contracts.schema_files --write"


def test_a_changed_model_makes_its_schema_file_stale(tmp_path, monkeypatch) -> None:
    # Given a copy of the schema files where one was edited by hand
    for name in MODELS:
        (tmp_path / name).write_text((SCHEMA_DIR / name).read_text())
    (tmp_path / "send_request.v1.json").write_text("{}\n")
    monkeypatch.setattr("contracts.schema_files.SCHEMA_DIR", tmp_path)
    # Then the check names exactly that file
    assert stale_files() == ["send_request.v1.json"]


def test_schema_file_accepts_what_the_model_accepts() -> None:
    schema = json.loads((SCHEMA_DIR / "send_request.v1.json").read_text())
    request = SendRequest(message="Your code is 1234", receivers=["+33612345678"], metadata={"order": 7})
    jsonschema.validate(request.model_dump(mode="json"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"message": "hi", "receivers": ["+33612345678"], "unknown": 1}, schema)
    assert render(SendRequest) == (SCHEMA_DIR / "send_request.v1.json").read_text()


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"message": "", "receivers": ["+33612345678"]}, "message", "at least 1 character"),
        ({"message": "   ", "receivers": ["+33612345678"]}, "message", "blank"),
        ({"message": "x" * 919, "receivers": ["+33612345678"]}, "message", "at most 918"),
        ({"message": "hi", "receivers": []}, "receivers", "at least 1"),
        ({"message": "hi", "receivers": ["+33612345678"] * 2}, "receivers", "listed twice"),
        ({"message": "hi", "receivers": [f"+3361234{i:04d}" for i in range(1001)]}, "receivers", "at most 1000"),
        ({"message": "hi", "receivers": ["+33612345678"], "priority": "urgent"}, "priority", "'high'"),
        ({"message": "hi", "receivers": ["+33612345678"], "colour": "red"}, "colour", "Extra inputs"),
        ({"message": "hi", "receivers": [33612345678]}, "receivers.0", "valid string"),
        ({"message": "hi", "receivers": ["+33612345678"], "sender": "WayTooLongSender"}, "sender", "pattern"),
        ({"message": "Hi #name#", "receivers": ["+33612345678"], "variables": {}}, "variables", "no value"),
    ],
)
def test_invalid_requests_name_the_field(data, field, words) -> None:
    with pytest.raises(ValidationError) as info:
        SendRequest.model_validate(data)
    got_field, message = describe_validation_error(info.value)
    assert got_field == field
    assert words in message


def test_mail_merge_needs_every_placeholder_for_every_receiver() -> None:
    ok = SendRequest(
        message="Hello #firstname#",
        receivers=["+33612345678", "+33612345679"],
        variables={"+33612345678": {"firstname": "Pierre"}, "+33612345679": {"firstname": "Jean"}},
    )
    assert ok.variables is not None
    with pytest.raises(ValidationError, match="'\\+33612345679' has no value for #firstname#"):
        SendRequest(
            message="Hello #firstname#",
            receivers=["+33612345678", "+33612345679"],
            variables={"+33612345678": {"firstname": "Pierre"}},
        )


def test_result_status_is_closed() -> None:
    with pytest.raises(ValidationError):
        SendResult(request_id="r1", status="maybe", finished_at=0.0)
