"""End to end: SmsProducer -> Redis -> worker -> sandbox (real python-ovh, HTTP) -> results queue."""

from __future__ import annotations

import math
import threading
from collections import Counter

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from contracts import SendResult, SmsProducer, results_actor
from contracts.models import CreditUsage
from contracts.wire import LANES, lane_queue, messages_key
from tests.helpers import read_events
from tests.waiting import wait_until


def test_a_thousand_broadcast_requests(make_app, redis_client, sandbox) -> None:
    # Given a worker against the sandbox whose medium lane lingers longer than it takes to
    # accept the 1,000 separate requests with the same text that follow
    app = make_app(linger_ms={"medium": 3000})
    producer = SmsProducer(client=redis_client)
    receivers = [f"+336{20_000_000 + n:08d}" for n in range(1000)]
    request_ids = [producer.send(number, "Flash sale: -20% today only") for number in receivers]

    # When every request has its result
    results = [producer.wait(request_id, timeout=60) for request_id in request_ids]

    # Then each receiver got exactly one SMS at the sandbox
    sent = sandbox.control.sent()
    assert Counter(sms["receiver"] for sms in sent) == Counter(receivers)
    assert all(sms["message"] == "Flash sale: -20% today only" for sms in sent)
    # and each request exactly one result, each sent, with its OVH id
    events = read_events(redis_client)
    send_results = [e for e in events if isinstance(e, SendResult)]
    assert Counter(r.request_id for r in send_results) == Counter(request_ids)
    assert {r.status for r in results} == {"sent"}
    sandbox_ids = {sms["receiver"]: sms["id"] for sms in sent}
    for receiver, result in zip(receivers, results, strict=True):
        [outcome] = result.receivers
        assert (outcome.receiver, outcome.status, outcome.ovh_id) == (receiver, "sent", sandbox_ids[receiver])
    # and the broadcast went out in at most ceil(1000/500) jobs calls
    assert sandbox.control.counters()["jobs_calls"] <= math.ceil(1000 / 500)
    # and the credits in results equal the sandbox's debits, as do the CreditUsage events
    debited = sandbox.control.counters()["credits_debited"]
    assert math.isclose(sum(r.credits for r in send_results), debited)
    usages = [e for e in events if isinstance(e, CreditUsage)]
    assert math.isclose(sum(u.credits_used for u in usages), debited)
    assert sorted(rid for u in usages for rid in u.request_ids) == sorted(request_ids)
    assert app.calls == sandbox.control.counters()["jobs_calls"]


def test_mail_merge_sends_each_receiver_its_own_text(make_app, redis_client, sandbox) -> None:
    make_app()
    producer = SmsProducer(client=redis_client)
    contacts = {"+33662000000": "Pierre", "+33662000001": "Jean"}
    request_id = producer.send(
        list(contacts), "Hello #firstname#!", variables={n: {"firstname": f} for n, f in contacts.items()}
    )
    result = producer.wait(request_id, timeout=30)
    assert result.status == "sent"
    assert {s["receiver"]: s["message"] for s in sandbox.control.sent()} == {
        n: f"Hello {f}!" for n, f in contacts.items()
    }


def test_a_split_send_is_waited_as_one(make_app, redis_client, sandbox) -> None:
    make_app(linger_ms={"low": 100})
    producer = SmsProducer(client=redis_client, max_receivers_per_request=300)
    receivers = [f"+336{30_000_000 + n:08d}" for n in range(700)]
    request_id = producer.send(receivers, "Campaign", priority="low")
    result = producer.wait(request_id, timeout=60)
    assert result.status == "sent"
    assert sorted(o.receiver for o in result.receivers) == sorted(receivers)
    assert Counter(s["receiver"] for s in sandbox.control.sent()) == Counter(receivers)
    # 700 receivers fill calls of 500: two calls, not three (one per request)
    assert sandbox.control.counters()["jobs_calls"] == 2


def test_a_repeated_request_id_sends_nothing_twice(make_app, redis_client, sandbox) -> None:
    make_app()
    producer = SmsProducer(client=redis_client)
    producer.send("+33612345678", "Your code is 1234", request_id="otp-1", priority="high")
    producer.send("+33612345678", "Your code is 1234", request_id="otp-1", priority="high")
    assert producer.wait("otp-1", timeout=30).status == "sent"
    producer.send("+33612345678", "Your code is 1234", request_id="otp-1", priority="high")
    _drain_queues(redis_client)
    assert [s["receiver"] for s in sandbox.control.sent()] == ["+33612345678"]
    assert [e.request_id for e in read_events(redis_client) if isinstance(e, SendResult)] == ["otp-1"]


def test_results_reach_a_dramatiq_service_through_results_actor(make_app, redis_client, sandbox) -> None:
    make_app()
    producer = SmsProducer(client=redis_client)
    request_id = producer.send("+33612345678", "Hello", priority="high", metadata={"order": 42})
    # A consuming service, with its own broker on the same Redis
    broker = RedisBroker(client=redis_client)
    seen: list = []
    got_result = threading.Event()

    def handle(event) -> None:
        seen.append(event)
        if isinstance(event, SendResult):
            got_result.set()

    results_actor(handle, broker=broker)
    service = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    service.start()
    try:
        assert got_result.wait(30)
    finally:
        service.stop()
    [result] = [e for e in seen if isinstance(e, SendResult)]
    assert (result.request_id, result.status, result.metadata) == (request_id, "sent", {"order": 42})


def _drain_queues(client) -> None:
    """Wait until no lane queue holds a message (the worker took and acked them all)."""
    wait_until(
        lambda: not any(client.hlen(messages_key(lane_queue(lane))) for lane in LANES),
        timeout=10,
        what="the lane queues to drain",
    )


def test_each_sent_sms_is_mapped_back_to_its_request_and_receiver(make_app, redis_client, sandbox) -> None:
    # Delivery reports only carry OVH's SMS id: settlement records what it was sent for.
    from worker.store import keys

    make_app()
    producer = SmsProducer(client=redis_client)
    request_id = producer.send(["+33612345678", "+33612345679"], "Tracked", priority="high", tag="spring")
    result = producer.wait(request_id, timeout=30)
    assert result.status == "sent"
    by_receiver = {s["receiver"]: s["id"] for s in sandbox.control.sent()}
    for outcome in result.receivers:
        assert outcome.ovh_id == by_receiver[outcome.receiver]
        record = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.sms(outcome.ovh_id)).items()}
        assert record["request_id"] == request_id
        assert record["receiver"] == outcome.receiver
        assert record["tag"] == "spring" and record["reply_to"] == "sms-results"
        assert 0 < redis_client.ttl(keys.sms(outcome.ovh_id)) <= 3 * 86_400


def test_texts_tags_and_metadata_beyond_ascii_come_back_as_given(make_app, redis_client, sandbox) -> None:
    # Given requests whose text, tag and metadata are not ASCII (the Lua documents carry them as
    # UTF-8), one with a receiver that is not a number
    make_app()
    producer = SmsProducer(client=redis_client)
    text, tag, metadata = "Votre code : 4821 — à bientôt 😀 €", "été-2026", {"client": "Zoë Müller", "ref": "№ 7"}
    sent_id = producer.send("+33612340001", text, tag=tag, metadata=metadata)
    rejected_id = producer.send(["+33612340002", "n°ï"], text, metadata=metadata)
    # Then OVH got the text as written and each result carries the metadata and reasons as given
    sent, partly = producer.wait(sent_id, timeout=30), producer.wait(rejected_id, timeout=30)
    assert {sms["message"] for sms in sandbox.control.sent()} == {text}
    assert (sent.status, sent.tag, sent.metadata) == ("sent", tag, metadata)
    assert partly.metadata == metadata
    assert {(o.receiver, o.status) for o in partly.receivers} == {("+33612340002", "sent"), ("n°ï", "invalid")}
