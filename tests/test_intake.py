"""Intake that nothing can poison: unreadable messages, colliding ids, reserved queues, one
bad item in a pack, and a Redis that stays bounded."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

from contracts import SendResult, SmsProducer
from contracts.models import MAX_METADATA_BYTES, SendRequest
from contracts.producer import merge_results
from contracts.wire import DEFAULT_RESULTS_QUEUE, lane_queue
from tests.helpers import read_events
from tests.waiting import wait_until
from worker.accounting.credits import RateTable
from worker.intake.accept import AcceptStage
from worker.store import keys


def results_of(client: Any) -> list[SendResult]:
    return [e for e in read_events(client) if isinstance(e, SendResult)]


def push_raw_body(client: Any, lane: str, body: bytes) -> str:
    """Put a message whose body is not a dramatiq envelope at all on a lane's queue."""
    message_id = str(uuid.uuid4())
    client.hset(keys.queue_messages(lane_queue(lane)), message_id, body)
    client.rpush(keys.queue(lane_queue(lane)), message_id)
    return message_id


@pytest.mark.parametrize("body", [b"not json at all", b'{"actor_name": "x"}', b"\xff\xfe\x00garbage"])
def test_a_body_that_is_not_a_dramatiq_message_is_dead_lettered_and_consuming_goes_on(
    make_app, redis_client, sandbox, body, caplog
) -> None:
    # Given a poisoned message queued just before good ones
    make_app()
    poison = push_raw_body(redis_client, "high", body)
    producer = SmsProducer(client=redis_client)
    ids = [producer.send(f"+3361234567{n}", "Code", priority="high", no_stop_clause=True) for n in range(3)]
    # Then the good ones are sent, and the poisoned one waits in the dead-letter queue
    assert [producer.wait(i, timeout=20).status for i in ids] == ["sent"] * 3
    wait_until(lambda: redis_client.zscore(keys.dead_letters("sms.high"), poison), timeout=10, what="the dead letter")
    assert redis_client.hget(keys.dead_letter_messages("sms.high"), poison) == body
    assert not redis_client.hexists(keys.queue_messages("sms.high"), poison)
    assert "dead-lettered an unreadable message on sms.high" in caplog.text


def test_one_item_that_fails_unexpectedly_does_not_take_its_pack_down(make_app, redis_client, sandbox) -> None:
    # Given a worker that fails on one destination (a bug of ours, played by a rate table that raises)
    class Broken(RateTable):
        def rate(self, country: str) -> float:
            if country.lower() == "be":
                raise RuntimeError("a bug")
            return super().rate(country)

    app = make_app()
    stage: AcceptStage = app.accept
    stage.rates = Broken(redis_client, ttl_s=3600)
    # When a pack of three requests arrives, the middle one for that destination
    pack = [
        SendRequest(request_id="ok-1", message="Hi", receivers=["+33612345678"], priority="high"),
        SendRequest(request_id="bug-1", message="Hi", receivers=["+32470123456"], priority="high"),
        SendRequest(request_id="ok-2", message="Hi", receivers=["+33612345679"], priority="high"),
    ]
    assert stage([r.model_dump(mode="json") for r in pack], lane="high") == ["staged", "rejected", "staged"]
    # Then it alone gets a rejected result, code internal_error; its neighbours are sent
    producer = SmsProducer(client=redis_client)
    bug = producer.wait("bug-1", timeout=20)
    assert bug.status == "rejected" and bug.error is not None and bug.error.code == "internal_error"
    assert [producer.wait(i, timeout=20).status for i in ("ok-1", "ok-2")] == ["sent", "sent"]


def test_a_redis_blip_while_a_request_is_prepared_is_waited_out_not_rejected(make_app, redis_client, sandbox) -> None:
    # Given Redis dropping the worker's connection once while a request is prepared (played by a
    # rate table whose first lookup gets the error redis-py raises then)
    class Blip(RateTable):
        blips = 1

        def rate(self, country: str) -> float:
            if self.blips:
                self.blips -= 1
                raise redis.TimeoutError("Timeout reading from socket")
            return super().rate(country)

    app = make_app()
    stage: AcceptStage = app.accept
    stage.rates = Blip(redis_client, ttl_s=3600)
    # When a request arrives
    request = SendRequest(request_id="blip-1", message="Hi", receivers=["+33612345678"], priority="high")
    # Then it is staged and sent: a Redis outage is waited out, it is not the request's fault
    assert stage([request.model_dump(mode="json")], lane="high") == ["staged"]
    assert SmsProducer(client=redis_client).wait("blip-1", timeout=20).status == "sent"


def test_a_request_id_ending_in_ready_collides_with_nothing(make_app, redis_client, sandbox) -> None:
    # Given two requests whose ids would have shared keys ("x" and "x:ready")
    make_app(linger_ms={"medium": 500})
    producer = SmsProducer(client=redis_client)
    ids = [
        producer.send("+33612345678", "Same text", request_id="x"),
        producer.send("+33612345679", "Same text", request_id="x:ready"),
    ]
    # Then both are sent in one call, each with its own result
    assert [producer.wait(i, timeout=20).status for i in ids] == ["sent", "sent"]
    assert sorted(r.request_id for r in results_of(redis_client)) == ["x", "x:ready"]
    assert len(sandbox.control.calls()) == 1


def test_a_split_send_never_takes_the_id_of_an_earlier_request(make_app, redis_client, sandbox) -> None:
    # Given an earlier request whose id is what a split part was once named ("order/1")
    make_app(linger_ms={"medium": 300})
    producer = SmsProducer(client=redis_client, max_receivers_per_request=2)
    assert producer.wait(producer.send("+33600000001", "Earlier", request_id="order/1"), timeout=20).status == "sent"
    # When a larger send is split under "order"
    receivers = [f"+3361111111{n}" for n in range(5)]
    merged = producer.wait(producer.send(receivers, "Split", request_id="order"), timeout=20)
    # Then every part was sent: no receiver silently dropped as a "repeat"
    assert merged.status == "sent" and [o.receiver for o in merged.receivers] == receivers
    assert sorted(s["receiver"] for s in sandbox.control.sent() if s["message"] == "Split") == receivers
    with pytest.raises(ValueError, match="reserved for split parts"):
        producer.send("+33600000002", "x", request_id="order#1")


@pytest.mark.parametrize(
    ("field", "value"), [("user", "b:c"), ("service_name", "a:b"), ("user", "../me"), ("service_name", "sms/x")]
)
def test_service_names_and_logins_are_checked_before_a_key_or_a_path(
    make_app, redis_client, sandbox, field, value
) -> None:
    make_app()
    payload = {"request_id": f"bad-{field}", "message": "Hi", "receivers": ["+33612345678"], field: value}
    SmsProducer(client=redis_client)  # the contract refuses it at send(); a raw producer does not
    from tests.helpers import enqueue_raw

    enqueue_raw(redis_client, "medium", payload)
    result = SmsProducer(client=redis_client).wait(f"bad-{field}", timeout=20)
    assert result.status == "rejected" and result.error is not None
    assert (result.error.code, result.error.field) == ("invalid_request", field)
    assert sandbox.control.calls() == [] and not redis_client.keys(keys.PREFIX + "quota:*")


@pytest.mark.parametrize("reply_to", ["sms.high", "sms.medium.DQ", "orders.XQ"])
def test_a_reply_to_naming_the_workers_own_queues_is_refused(make_app, redis_client, sandbox, reply_to) -> None:
    make_app()
    from tests.helpers import enqueue_raw

    payload = {"request_id": "loop", "message": "Hi", "receivers": ["+33612345678"], "reply_to": reply_to}
    enqueue_raw(redis_client, "high", payload)
    result = SmsProducer(client=redis_client).wait("loop", timeout=20)
    assert result.status == "rejected" and result.error is not None and result.error.field == "reply_to"
    # its result went to the default results queue, not to a lane
    assert [r.request_id for r in results_of(redis_client)] == ["loop"]
    assert sandbox.control.calls() == []


def test_every_per_request_key_expires(make_app, redis_client, sandbox) -> None:
    # Given a request staged but not yet sent (a long linger)
    make_app(linger_ms={"veryLow": 60_000})
    producer = SmsProducer(client=redis_client)
    request_id = producer.send(["+33612345678", "12"], "Later", priority="veryLow")
    wait_until(lambda: redis_client.exists(keys.request(request_id)), timeout=10, what="the request to be staged")
    # Then each of its keys carries a TTL
    for key in (keys.seen(request_id), keys.request(request_id), keys.outcomes(request_id)):
        assert 0 < redis_client.ttl(key) <= 7 * 86_400, key


def test_a_results_queue_nobody_consumes_is_capped(make_app, redis_client, sandbox) -> None:
    # Given results queues capped at 5 events
    make_app(results_queue_max_length=5)
    producer = SmsProducer(client=redis_client)
    ids = [producer.send(["nope"], "x", priority="high") for _ in range(8)]  # 8 rejected results
    # Then wait() still reads every result, while the queue keeps the newest 5 and counts the rest
    assert {producer.wait(i, timeout=20).status for i in ids} == {"rejected"}
    assert redis_client.llen(keys.queue(DEFAULT_RESULTS_QUEUE)) == 5
    assert redis_client.hlen(keys.queue_messages(DEFAULT_RESULTS_QUEUE)) == 5
    assert int(redis_client.hget(keys.STATS, f"dropped:{DEFAULT_RESULTS_QUEUE}")) == 3
    assert [r.request_id for r in results_of(redis_client)] == ids[3:]


def test_oversized_metadata_is_refused_and_not_echoed(make_app, redis_client, sandbox) -> None:
    make_app()
    from tests.helpers import enqueue_raw

    big = {"blob": "x" * (MAX_METADATA_BYTES + 10)}
    payload = {"request_id": "big", "message": "Hi", "receivers": ["+33612345678"], "metadata": big}
    enqueue_raw(redis_client, "high", payload)
    result = SmsProducer(client=redis_client).wait("big", timeout=20)
    assert result.status == "rejected" and result.error is not None and result.error.field == "metadata"
    assert result.metadata is None
    assert len(redis_client.get(keys.result("big"))) < 1000


def test_an_unknown_destination_rate_is_waited_for_never_guessed(make_app, redis_client, sandbox) -> None:
    # Given nobody has read Belgium's credit rate yet
    make_app()
    producer = SmsProducer(client=redis_client)
    # When a code is sent there, it waits for the rate (read at once), then goes out, reserved
    # at OVH's rate, not at a guess
    first = producer.wait(producer.send("+32470123456", "Hi", priority="high"), timeout=20)
    assert first.status == "sent" and first.credits == 1.5
    assert json.loads(redis_client.hget(keys.RATES, "be"))["credit"] == 1.5


def test_a_rate_that_cannot_be_read_in_time_is_refused_and_the_id_may_be_sent_again(
    make_app, redis_client, sandbox
) -> None:
    # Given OVH does not answer the rate lookup, and a request waits for a rate 2 s at most
    sandbox.control.add_fault("503", probability=1.0, scope="all")
    make_app(rate_wait_s=2.0)
    producer = SmsProducer(client=redis_client)
    first = producer.wait(producer.send("+32470123456", "Hi", priority="high", request_id="be-1"), timeout=20)
    # Then it is refused, saying so, and not for good: once OVH answers, the same id goes through
    assert first.status == "rejected" and first.error is not None and first.error.code == "rate_unknown"
    assert "send it again" in first.error.message
    sandbox.control.clear_faults()
    wait_until(lambda: redis_client.hexists(keys.RATES, "be"), what="the rate read")
    producer.send("+32470123456", "Hi", priority="high", request_id="be-1")
    again = wait_until(lambda: (r := producer.result("be-1")) is not None and r.status == "sent" and r, what="sent")
    assert again.credits == 1.5


def test_merging_a_split_sends_results_keeps_unknown() -> None:
    # A caller that resends what is "failed" must not resend receivers OVH may have accepted.
    def part(status: str) -> SendResult:
        return SendResult(request_id="p", status=status, finished_at=1.0)  # type: ignore[arg-type]

    assert merge_results("x", [part("unknown"), part("failed")]).status == "unknown"
    assert merge_results("x", [part("rejected"), part("unknown")]).status == "unknown"
    assert merge_results("x", [part("failed"), part("rejected")]).status == "failed"
    assert merge_results("x", [part("sent"), part("unknown")]).status == "partial"
