"""Logs: one record per line, ids as fields, never a credential, a message text or a full number."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys

import dramatiq
import pytest

from contracts import SmsProducer
from worker.ops.logs import RepeatFilter, configure_logging, redact
from worker.phones import mask_number


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+33612345678", "+33*******78"),
        ("+14155552671", "+1********71"),
        ("+447911123456", "+44********56"),
        ("0612345678", "********78"),
    ],
)
def test_mask_phone_keeps_the_country_code_and_two_digits(number, masked) -> None:
    assert mask_number(number) == masked


def test_redact_masks_numbers_but_not_ids() -> None:
    text = "OVH refused +33612345678 for request order-20240101123456 at 1763870000.1"
    assert redact(text) == "OVH refused +33*******78 for request order-20240101123456 at 1763870000.1"


@pytest.fixture
def stream():
    """A root handler writing to a string; the previous handlers are put back after the test."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    out = io.StringIO()
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


def test_text_lines_fold_tracebacks_and_append_fields(stream) -> None:
    configure_logging(fmt="text", stream=stream)
    log = logging.getLogger("test.text")
    try:
        raise ValueError("OVH said:\nline two")
    except ValueError:
        log.exception("call failed", extra={"call_id": "c1", "lane": "high"})
    [line] = stream.getvalue().splitlines()
    assert "ERROR test.text: call failed call_id=c1 lane=high | Traceback" in line
    assert line.endswith("ValueError: OVH said: | line two")


def test_json_lines_carry_fields_and_one_record_per_line(stream) -> None:
    configure_logging(fmt="json", stream=stream)
    logging.getLogger("test.json").warning("OVH says:\nno for %s", "+33612345678", extra={"request_id": "r-1"})
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "test.json" and record["request_id"] == "r-1"
    assert record["message"] == "OVH says:\nno for +33*******78"


def test_a_repeated_error_line_is_logged_once_per_interval_with_a_count(stream) -> None:
    handler = configure_logging(fmt="json", stream=stream)
    [repeats] = [f for f in handler.filters if isinstance(f, RepeatFilter)]
    repeats.interval_s = 3600.0
    log = logging.getLogger("test.repeat")
    for _ in range(50):
        log.error("dispatcher lost Redis: %s", "Connection refused")
    log.error("jobs call %s did not succeed", "c2")  # another event: let through
    repeats.interval_s = 0.0  # as if the interval had passed
    log.error("dispatcher lost Redis: %s", "Connection refused")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["message"], r.get("repeated")) for r in records] == [
        ("dispatcher lost Redis: Connection refused", None),
        ("jobs call c2 did not succeed", None),
        ("dispatcher lost Redis: Connection refused", 49),
    ]


def test_dramatiq_lines_name_a_message_without_its_arguments(stream) -> None:
    configure_logging(fmt="text", stream=stream)
    message = dramatiq.Message(
        queue_name="sms.high", actor_name="sms_accept_high", args=("Secret text",), kwargs={}, options={}
    )
    logging.getLogger("dramatiq.worker").error("Failed to process message %s with unhandled exception.", message)
    line = stream.getvalue()
    assert f"sms_accept_high[{message.message_id}]" in line and "Secret text" not in line


def test_a_json_worker_logs_one_object_per_line_with_ids_and_no_texts_or_numbers(
    sandbox_env, redis_client, sandbox, tmp_path
) -> None:
    # Given a worker process logging JSON
    log_file = (tmp_path / "worker.log").open("w+")
    env = {**sandbox_env, "SMS_WORKER_SENDER": "SANDBOX", "SMS_WORKER_LOG_FORMAT": "json", "SMS_WORKER_POLL_MS": "20"}
    worker = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=env, stderr=log_file)
    try:
        # When it sends a code, a request with an invalid number, and rejects one
        producer = SmsProducer(client=redis_client)
        sent = producer.send("+33612345678", "Secret code 918273", priority="high", no_stop_clause=True)
        mixed = producer.send(["+33612345679", "0000"], "Other secret words", priority="medium")
        rejected = producer.send(["not-a-number"], "Rejected secret words", priority="medium")
        results = {rid: producer.wait(rid, timeout=30).status for rid in (sent, mixed, rejected)}
        assert results == {sent: "sent", mixed: "sent", rejected: "rejected"}
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    log_file.seek(0)
    lines = log_file.read().splitlines()
    # Then every line is one JSON object
    records = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) and record["level"] for record in records)
    # with one INFO line per jobs call, carrying its id and figures as fields
    calls = [r for r in records if r["message"] == "jobs call"]
    assert len(calls) == len(sandbox.control.calls()) == 2
    assert all(r["level"] == "INFO" and r["call_id"] and r["outcome"] == "sent" and "duration_ms" in r for r in calls)
    assert sorted(r["lane"] for r in calls) == ["high", "medium"]
    # and one per rejected request
    [rejection] = [r for r in records if r["message"] == "request rejected"]
    assert (rejection["request_id"], rejection["reason"], rejection["lane"]) == (
        rejected,
        "no_valid_receivers",
        "medium",
    )
    # and nowhere a message text, a full number or a credential
    text = "\n".join(lines)
    for secret in ["Secret code", "secret words", "+33612345678", "+33612345679", *sandbox.credentials.values()]:
        assert secret not in text
