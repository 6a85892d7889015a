"""No Lua step half-applies (issue 16, item 4): every check that can fail runs before the first
write, and queue caps are trimmed in bounded steps.

Redis runs a script atomically but does not roll back the writes made before an error, so a
script that fails halfway leaves them. Each script's refusals are driven here and the whole
database compared before and after: a refusal writes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from contracts import QuotaAlert, SendResult, SmsProducer, parse_event
from contracts.models import SendRequest
from tests.helpers import read_queue
from tests.quota_fixtures import create_user
from worker.accounting.quotas import QuotaStore
from worker.app import App, build_app
from worker.attempts.lease import Lease
from worker.attempts.lifecycle import Attempt, Outcome, Owner
from worker.batching.buffers import Due
from worker.settings import Settings
from worker.store import keys


def snapshot(client: Any) -> dict[bytes, tuple[Any, bool]]:
    """Every key's value and whether it has a TTL: what a refusal must leave as it was."""
    read = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": client.smembers,
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
    }
    return {key: (read[client.type(key)](key), client.pttl(key) >= 0) for key in client.scan_iter(count=1000)}


def fill_queue(client: Any, queue: str, n: int) -> None:
    """Put ``n`` messages on a dramatiq queue, as a consumer that stopped would leave them."""
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, n, 1000):
            ids = [f"old-{i}" for i in range(start, min(start + 1000, n))]
            pipe.rpush(keys.queue(queue), *ids)
            pipe.hset(keys.queue_messages(queue), mapping=dict.fromkeys(ids, "{}"))
        pipe.execute()


def test_a_result_is_published_into_a_queue_far_over_its_cap(make_app, redis_client, sandbox) -> None:
    # Given a results queue holding 10,000 events while its cap was lowered to 100
    fill_queue(redis_client, "sms-results", 10_000)
    make_app(results_queue_max_length=100)
    producer = SmsProducer(client=redis_client)
    # When a code is sent and settled
    result = producer.wait(producer.send("+33612345678", "Code 1", priority="high", no_stop_clause=True), 30)
    # Then its result is published and the queue trimmed to its cap, the oldest dropped and
    # counted (before: the trim raised after settle's first writes: no result, ever)
    assert result.status == "sent"
    assert redis_client.llen(keys.queue("sms-results")) == 100
    assert redis_client.hlen(keys.queue_messages("sms-results")) == 100
    events = [parse_event(m["args"][0]) for m in read_queue(redis_client) if "args" in m]
    assert [e.request_id for e in events if isinstance(e, SendResult)] == [result.request_id]
    assert int(redis_client.hget(keys.STATS, "dropped:sms-results")) > 9_900


def test_a_quota_alert_into_a_queue_far_over_its_cap_reserves_once(make_app, redis_client, sandbox) -> None:
    # Given a user whose next request crosses its alert threshold, and an alerts queue holding
    # 10,000 events while the cap is 100
    create_user(sandbox, "alice")
    fill_queue(redis_client, "alerts", 10_000)
    make_app(
        results_queue_max_length=100,
        quotas={"alice": {"quota": 10, "alert_threshold": 9}},
        quota_alerts_queue="alerts",
    )
    producer = SmsProducer(client=redis_client)
    result = producer.wait(producer.send("+33612345678", "Hi", user="alice", no_stop_clause=True), 30)
    # Then the request is reserved once and settled, and the alert published (before: the
    # alert's trim raised after the reservation; the request was staged again, reserved twice)
    assert result.status == "sent"
    state = QuotaStore(redis_client).get(sandbox.service_name, "alice")
    assert state is not None and (state.reserved, state.spent) == (0, 1)
    [alert] = [m["args"][0] for m in read_queue(redis_client, "alerts") if "args" in m]
    assert isinstance(parse_event(alert), QuotaAlert)


# -- every refusal of the attempt steps writes nothing ------------------------------------------


@pytest.fixture
def idle_app(redis_client, redis_url, sandbox) -> App:
    settings = Settings(
        redis_url=redis_url,
        ovh_endpoint=sandbox.base_url,
        service_name=sandbox.service_name,
        sender="SANDBOX",
        rate_limit=100.0,
        rate_limit_burst=10,
    )
    app = build_app(settings, ovh_credentials=sandbox.credentials)
    app.refresher.prime(["FR"], None)
    return app


def claimed(app: App, owner: Owner) -> Attempt:
    request = SendRequest(message="Code 1", receivers=["+33612345678"], priority="high", no_stop_clause=True)
    assert app.accept([request.model_dump(mode="json")], lane="high") == ["staged"]
    found = app.buffers.peek(["high"])
    assert isinstance(found, Due)
    attempt = app.attempts.claim(owner, "high", found.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=500)
    assert isinstance(attempt, Attempt)
    return attempt


def live_owner(client: Any, name: str = "w1") -> Owner:
    lease = Lease(client, worker=name, lease_s=60)
    assert lease.refresh()
    owner = lease.owner()
    assert owner is not None
    return owner


def test_attempt_steps_refused_write_nothing(idle_app, redis_client) -> None:
    attempts = idle_app.attempts
    owner = live_owner(redis_client)
    attempt = claimed(idle_app, owner)
    stranger = Owner("w2", uuid.uuid4().hex)
    # claim: another lease's, nothing due
    other = live_owner(redis_client, "w3")
    before = snapshot(redis_client)
    steps: dict[str, Any] = {
        "claim by a worker without a lease": lambda: attempts.claim(
            stranger, "high", attempt.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=5
        ),
        "claim of a buffer with nothing due": lambda: attempts.claim(
            other, "high", attempt.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=5
        ),
        "release by another worker": lambda: attempts.release(stranger, attempt),
        "settle by another worker": lambda: attempts.settle(attempt, Outcome([]), owner=stranger),
        "settle by a reconciler of an attempt not ambiguous": lambda: attempts.settle(attempt, Outcome([]), owner=None),
        "sweep while the owner lives": lambda: attempts.sweep("owner alive"),
        "pick with nothing ambiguous": lambda: attempts.next_ambiguous(1000),
        "call by another worker": lambda: attempts.call(stranger, attempt.call_id, 1),
        "call out of turn": lambda: attempts.call(owner, attempt.call_id, 2),
        "uncall of an attempt not calling": lambda: attempts.uncall(owner, attempt.call_id, 1),
        "ambiguous of an attempt not calling": lambda: attempts.ambiguous(owner, attempt.call_id, 1, "why"),
        "ambiguous by another worker": lambda: attempts.ambiguous(stranger, attempt.call_id, 1, "why"),
    }
    for name, step in steps.items():
        before = snapshot(redis_client)
        reply = step()
        after = snapshot(redis_client)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert changed == [], f"{name} ({reply}) wrote {changed}"
