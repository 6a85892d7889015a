"""A receiver at most once per jobs call; each request gets its own SMS and id (issue 16, item 5)."""

from __future__ import annotations

from contracts import SendResult, SmsProducer
from contracts.models import SendRequest
from tests.helpers import read_events


def test_two_requests_to_one_number_with_one_text_go_out_in_two_calls(make_app, redis_client, sandbox) -> None:
    # Given two requests with the same text to the same number, queued together so that they
    # would share a batch (and a third one to another number)
    make_app(linger_ms={"medium": 300})
    producer = SmsProducer(client=redis_client)
    requests = [
        SendRequest(message="Your parcel is here", receivers=[number], no_stop_clause=True)
        for number in ("+33612345678", "+33612345678", "+33612345679")
    ]
    producer.publish(requests)
    results = [producer.wait(r.request_id, timeout=30) for r in requests]
    # Then each request has its own SMS and id, and no call carried the number twice
    assert [r.status for r in results] == ["sent"] * 3
    ids = [r.receivers[0].ovh_id for r in results]
    assert len(set(ids)) == 3
    sent = sandbox.control.sent()
    assert sorted(s["id"] for s in sent) == sorted(ids)
    calls: dict[int, list[str]] = {}
    for sms in sent:
        calls.setdefault(sms["call_id"], []).append(sms["receiver"])
    assert all(len(receivers) == len(set(receivers)) for receivers in calls.values()), calls
    # and the ids delivery reports map back are each request's own
    assert [e.request_id for e in read_events(redis_client) if isinstance(e, SendResult)].count(
        requests[0].request_id
    ) == 1
    for request, result in zip(requests, results, strict=True):
        assert (
            redis_client.hget(f"sms-worker:sms:{result.receivers[0].ovh_id}", "request_id")
            == request.request_id.encode()
        )
