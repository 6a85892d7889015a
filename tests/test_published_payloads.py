"""What the worker publishes is the contract: every payload against the JSON Schema files in
``contracts/schemas/``, every envelope through dramatiq's own decoder.

The payloads are the real worker's (in-process, against the sandbox and a real Redis), driven
into each status a ``SendResult`` can have and each error code it can carry, a ``CreditUsage``, a
``QuotaAlert`` and the alert SMS request it queues, delivery reports, a reply and a STOP: the
JSON the Lua scripts splice or encode (``settle.lua``, ``stage.lua``, ``reject.lua``,
``report.lua``, ``reply.lua`` and the envelope of ``_common.lua``). None is built here.
"""

from __future__ import annotations

import json
import time
from typing import Any, get_args

import dramatiq
import jsonschema
import pytest
import redis

from contracts import SendResult, SmsProducer
from contracts.models import ERROR_CODES
from contracts.schema_files import MODELS, SCHEMA_DIR
from contracts.wire import (
    DRAMATIQ_NAMESPACE,
    LANES,
    RESULT_ACTOR_NAME,
    accept_actor_name,
    dead_letter_queue,
    lane_queue,
    messages_key,
    queue_key,
    result_key,
)
from tests.helpers import enqueue_raw
from tests.quota_fixtures import create_user
from tests.waiting import wait_until
from worker.accounting.credits import RateTable
from worker.store import keys

pytestmark = pytest.mark.timeout(180)

#: kind -> a validator of its schema file, as a consumer in any language would use it.
VALIDATORS = {
    model.model_fields["kind"].default: jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / name).read_text()))
    for name, model in MODELS.items()
}
STATUSES = set(get_args(SendResult.model_fields["status"].annotation))

FR, FR2, FR3, FR4, FR5 = (f"+3361234567{n}" for n in range(5))
#: Receivers whose SMS fail at delivery, and how (ptt): expired, unknown, failed for good, for now.
FAILING = {"+33600000003": 8, "+33600000006": 6, "+33600000009": 23, "+33600000012": 24}
ALERT_NUMBER = "+33612340000"


@pytest.fixture
def sandbox():
    """Receipts final within half a second; SMS fail only when told."""
    from ovh_sandbox import Sandbox

    with Sandbox(port=0, seed=1, delivery_delay_s=(0.05, 0.4), failure_rate=0.0) as sb:
        yield sb


def schema_errors(payload: dict[str, Any]) -> list[str]:
    """Every way ``payload`` breaks the schema file of its ``kind`` (a field not allowed, one
    missing, a wrong type or value), as ``path: message``."""
    validator = VALIDATORS.get(payload.get("kind"))  # type: ignore[arg-type]
    if validator is None:
        return [f"kind {payload.get('kind')!r} has no schema file"]
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(payload)]


def published(client: redis.Redis) -> list[dict[str, Any]]:
    """The payload of every message on every queue, each envelope checked on the way: dramatiq's
    decoder reads it, it holds nothing dramatiq does not write, its id is the one in the hash and
    on the list, its actor is the one its queue's consumers run; then every result kept for
    ``SmsProducer.wait``."""
    payloads = []
    now_ms = time.time() * 1000
    for key in client.scan_iter(match=messages_key("*")):
        queue = key.decode().removeprefix(f"{DRAMATIQ_NAMESPACE}:").removesuffix(".msgs")
        if queue == dead_letter_queue(queue):
            continue  # dead letters are bodies moved as they were, not published
        with client.pipeline(transaction=True) as pipe:  # one snapshot: the worker may still be publishing
            ids, bodies = pipe.lrange(queue_key(queue), 0, -1).hgetall(key).execute()
        listed = {i.decode() for i in ids}
        lane = queue.removeprefix("sms.") if queue.startswith("sms.") else None
        for message_id, body in bodies.items():
            message = dramatiq.Message.decode(body)
            where = f"message {message_id.decode()} on {queue}"
            assert json.loads(body) == json.loads(message.encode()), f"{where}: fields dramatiq does not write"
            assert message.message_id == message.options["redis_message_id"] == message_id.decode(), where
            assert message.message_id in listed, f"{where}: not on the queue's list"
            assert message.queue_name == queue, where
            assert message.actor_name == (accept_actor_name(lane) if lane in LANES else RESULT_ACTOR_NAME), where
            assert (len(message.args), message.kwargs) == (1, {}), where
            assert abs(message.message_timestamp - now_ms) < 600_000, f"{where}: timestamp not in unix ms"
            payloads.append(message.args[0])
    for key in client.scan_iter(match=result_key("*")):
        payloads.append(json.loads(client.get(key)))
    return payloads


def cancel_a_bulk_campaign(client: redis.Redis, settings: Any, tmp_path: Any) -> None:
    """``campaign send --via bulk --at <in an hour>``, then ``campaign cancel``, in-process."""
    from datetime import UTC, datetime, timedelta

    from worker.campaigns import control
    from worker.campaigns.bulk import BulkRun
    from worker.campaigns.contacts import ContactsFile
    from worker.campaigns.outcomes import CampaignRecord, RowResults
    from worker.campaigns.pricing import Pricing
    from worker.campaigns.progress import CampaignProgress
    from worker.campaigns.rejects import RejectsFile
    from worker.campaigns.rows import Campaign

    path = tmp_path / "contacts.csv"
    path.write_text("number;name\n+33612345670;Ann\n", encoding="utf-8")
    campaign = Campaign(
        campaign_id="payloads",
        message="Hi #name#",
        tag="payloads",
        default_region="FR",
        no_stop_clause=True,
        start_at=datetime.now(UTC) + timedelta(hours=1),
    )
    with (
        ContactsFile(path) as contacts,
        RejectsFile(tmp_path / "rejects.csv", contacts.header, contacts.delimiter, contacts.number_index) as rejects,
        CampaignProgress(enabled=False) as progress,
    ):
        BulkRun(
            campaign,
            contacts,
            client=client,
            pricing=Pricing(client, None, ttl_s=3600),
            rejects=rejects,
            progress=progress,
            numbers_ttl_s=3600,
            settings=settings.model_copy(update={"inbound_public_url": "http://127.0.0.1:9", "inbound_token": "t"}),
            check_url=False,
        ).queue()
    record = CampaignRecord.read(client, "payloads")
    assert record is not None
    results = RowResults(client, result_ttl_s=3600, queue_cap=0, tracking_ttl_s=3600, stats_ttl_s=3600)
    assert control.cancel(client, record, results, None).rows_cancelled == 1


def test_every_payload_the_worker_publishes_matches_its_schema_file(make_app, redis_client, sandbox, tmp_path) -> None:
    # Given a worker in pull mode (receipts and replies polled) that does not consume the high
    # lane (the alert SMS request a quota crossing queues there stays readable), OVH refusals not
    # retried, an ambiguous call given up after 2 s, an account of 100 credits, two API users with
    # quotas (alice's alert fires on her first credit), and numbers whose SMS fail at delivery
    sn = sandbox.service_name
    create_user(sandbox, "alice")
    create_user(sandbox, "bob")
    sandbox.control.set_credits(sn, 100)
    sandbox.control.set_failing_receivers(FAILING)
    app = make_app(
        lanes=["medium", "low", "veryLow"],
        delivery_mode="pull",
        pull_spacing_s=0.3,
        pull_incoming_s=0.5,
        pull_calls_per_min=10_000,
        retry_attempts=1,
        rate_wait_s=0.001,  # a destination's rate unknown is refused (rate_unknown) without waiting for it
        reconcile_grace_s=5.0,
        reconcile_deadline_s=2.0,
        quotas={"alice": {"quota": 10, "alert_threshold": 9, "alert_number": ALERT_NUMBER}, "bob": {"quota": 1}},
    )
    wait_until(lambda: redis_client.exists(keys.PULL), what="the receipt poller to run")
    wait_until(lambda: redis_client.hget(keys.senders(sn), "*"), what="the worker to read the senders")
    producer = SmsProducer(client=redis_client)

    def send(to: str | list[str], message: str, **fields: Any) -> SendResult:
        return producer.wait(producer.send(to, message, **fields), timeout=30)

    def finals() -> list[dict[str, Any]]:
        return [p for p in published(redis_client) if p["kind"] == "delivery_report" and p["final"]]

    # When SMS are sent, and delivered or not (delivery reports), and two numbers answer (a reply, a STOP)
    sent = send([FR, FR2, *FAILING], "Your parcel is on its way", tag="parcel", no_stop_clause=True)
    assert sent.status == "sent"
    wait_until(lambda: len(finals()) == 6, what="a final delivery report for each of the 6 SMS")
    sandbox.control.reply(sn, FR, "Thanks!")
    sandbox.control.reply(sn, FR2, "STOP")
    wait_until(lambda: any(p["kind"] == "opt_out" for p in published(redis_client)), what="the STOP's opt-out")
    # and requests are refused for each of their own faults
    enqueue_raw(redis_client, "medium", {"request_id": "bad-type", "receivers": [FR], "message": 42})
    assert producer.wait("bad-type", timeout=30).status == "rejected"
    assert send(["12"], "Hi").status == "rejected"  # no_valid_receivers
    assert send(FR, "€" * 460, no_stop_clause=True).status == "rejected"  # message_too_long
    assert send(FR, "x" * 200, user="bob", no_stop_clause=True).status == "rejected"  # quota_exceeded
    assert send(FR, "Hi", user="alice", no_stop_clause=True).status == "sent"  # and alice's alert
    assert send([f"+336000001{n:02d}" for n in range(20)], "x" * 918, no_stop_clause=True).status == "rejected"
    assert send("+32470123456", "Hi", no_stop_clause=True).status == "rejected"  # rate_unknown
    assert send(FR, "Hi", sender="PENDINGSNDR", no_stop_clause=True).status == "rejected"  # sender_not_allowed
    assert send(FR2, "Sale today").status == "rejected"  # blacklisted: FR2 said STOP

    # and a request the worker fails on (a bug of ours, played by a rate table that raises)
    class Broken(RateTable):
        def rate(self, country: str) -> float:
            if country.lower() == "ch":
                raise RuntimeError("a bug")
            return super().rate(country)

    rates, app.accept.rates = app.accept.rates, Broken(redis_client, ttl_s=3600)
    assert send("+41791234567", "Hi", no_stop_clause=True).status == "rejected"  # internal_error
    app.accept.rates = rates
    # and OVH refuses a call (failed), one of a request's two calls (partial: two texts, two calls)
    sandbox.control.add_fault("503", next=1)
    assert send(FR3, "Your code is 1234", no_stop_clause=True).status == "failed"
    sandbox.control.add_fault("503", next=1)
    variables = {FR3: {"name": "Ann"}, FR4: {"name": "Bob"}}
    assert send([FR3, FR4], "Hi #name#", variables=variables, no_stop_clause=True).status == "partial"
    # and a call's outcome stays unknown: a 500, then OVH's records unreadable past the deadline
    sandbox.control.add_fault("500", next=1)
    request_id = producer.send(FR5, "Your code is 5678", no_stop_clause=True)
    wait_until(lambda: 500 in [c["status"] for c in sandbox.control.calls()], what="the call answered 500")
    sandbox.control.add_fault("503", probability=1.0, scope="all")
    unknown = producer.wait(request_id, timeout=30)
    sandbox.control.clear_faults()
    assert unknown.status == "unknown"
    # and a bulk campaign cancelled before its document was due: its row ends cancelled
    cancel_a_bulk_campaign(redis_client, app.settings, tmp_path)

    # Then every payload published matches the schema file of its kind
    payloads = published(redis_client)
    problems = {f"{p.get('kind')} {json.dumps(p)[:200]}": errors for p in payloads if (errors := schema_errors(p))}
    assert problems == {}
    # and the run covered the contract: each status, each error code, each kind of event, the
    # alert SMS request, delivery reports of each final status
    results = [p for p in payloads if p["kind"] == "send_result"]
    assert {r["status"] for r in results} == STATUSES
    assert {r["error"]["code"] for r in results if "error" in r} == set(ERROR_CODES)
    assert {p["kind"] for p in payloads} == set(VALIDATORS)
    [alert_sms] = [p for p in payloads if p["kind"] == "send_request"]
    assert alert_sms["receivers"] == [ALERT_NUMBER]
    reports = {p["status"] for p in payloads if p["kind"] == "delivery_report"}
    assert {"delivered", "failed", "expired", "unknown"} <= reports
    assert {p["stop"] for p in payloads if p["kind"] == "incoming_sms"} == {True, False}


def test_the_schema_check_catches_a_field_too_many_and_one_missing() -> None:
    # A payload as settle.lua writes it, then with a field the schema does not allow, and without
    # one it requires: the check above would fail on either
    good = SendResult(request_id="r-1", status="sent", finished_at=1.0).model_dump(mode="json", exclude_none=True)
    assert schema_errors(good) == []
    assert any("'colour'" in e for e in schema_errors({**good, "colour": "red"}))
    assert any("'finished_at'" in e for e in schema_errors({k: v for k, v in good.items() if k != "finished_at"}))
    assert schema_errors({**good, "kind": "mystery"}) == ["kind 'mystery' has no schema file"]


def test_the_layout_is_the_one_dramatiq_writes(redis_client) -> None:
    # dramatiq's own broker, enqueueing on a lane, writes exactly the keys the contract names
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(client=redis_client)
    assert broker.namespace == DRAMATIQ_NAMESPACE
    message = dramatiq.Message(
        queue_name=lane_queue("high"), actor_name=accept_actor_name("high"), args=({},), kwargs={}, options={}
    )
    queued = broker.enqueue(message)
    redis_id = queued.options["redis_message_id"]
    assert redis_client.lrange(queue_key(lane_queue("high")), 0, -1) == [redis_id.encode()]
    assert redis_client.hkeys(messages_key(lane_queue("high"))) == [redis_id.encode()]
    written = {k.decode() for k in redis_client.keys("*")} - {f"{DRAMATIQ_NAMESPACE}:__heartbeats__"}
    assert written == {queue_key(lane_queue("high")), messages_key(lane_queue("high"))}
