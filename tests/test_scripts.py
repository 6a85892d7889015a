"""No Lua step half-applies (issue 16, item 4): every check that can fail runs before the first
write, and queue caps are trimmed in bounded steps.

Redis runs a script atomically but does not roll back the writes made before an error, so a
script that fails halfway leaves them. Each script's refusals are driven here and the whole
database compared before and after: a refusal writes nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import pytest

from contracts import QuotaAlert, SendResult, SmsProducer, parse_event
from contracts.models import SendRequest
from tests.helpers import read_queue
from tests.quota_fixtures import create_user
from worker.accounting.quotas import QuotaStore, UserQuota
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


# -- every other script's refusals write nothing ------------------------------------------------


def unchanged(client: Any, name: str, step: Any) -> Any:
    """Run ``step`` and fail naming ``name`` if it changed any key."""
    before = snapshot(client)
    reply = step()
    after = snapshot(client)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], f"{name} ({reply}) wrote {changed}"
    return reply


def test_other_steps_refused_write_nothing(idle_app, redis_client, sandbox) -> None:
    from worker.after_send.events import Receipt, Reply
    from worker.after_send.ptts import PttTable
    from worker.after_send.publish import Publisher
    from worker.after_send.pull import ReceiptPoller
    from worker.campaigns.send import _Numbers
    from worker.campaigns.stats import CampaignStats
    from worker.intake.dead_letters import DeadLetter, DeadLetters
    from worker.store.queues import _Poison

    request = SendRequest(message="Hi", receivers=["+33612345678"], priority="high", no_stop_clause=True)
    payload = [request.model_dump(mode="json")]
    assert idle_app.accept(payload, lane="high") == ["staged"]
    # stage: a repeat
    assert unchanged(redis_client, "stage of a repeat", lambda: idle_app.accept(payload, lane="high")) == ["duplicate"]
    # stage: a reservation the user's quota refuses (the rejection is then published by reject)
    quotas = QuotaStore(redis_client)
    quotas.apply_config([UserQuota(login="bob", service=sandbox.service_name, quota=0)])
    poor = SendRequest(message="Hi", receivers=["+33612345678"], user="bob", no_stop_clause=True)
    staging = idle_app.accept._prepare(0, poor.request_id, poor.model_dump(mode="json"), defaultdict(float))
    refused = unchanged(
        redis_client, "stage refused by a quota", lambda: idle_app.buffers.stage_many([staging.staging], linger_ms={})
    )
    assert refused == ["quota:0"]
    # reject: a repeat of an id already seen
    assert not unchanged(
        redis_client, "reject of a repeat", lambda: idle_app.buffers.reject(request.request_id, "{}", "sms-results")
    )
    # peek reads only
    unchanged(redis_client, "peek", lambda: idle_app.buffers.peek(["high", "medium"]))
    # quota_set: a configuration already applied
    entry = UserQuota(login="bob", service=sandbox.service_name, quota=0)
    assert unchanged(redis_client, "quota_set of an applied entry", lambda: quotas.apply_config([entry])) == 0
    # poison: a body no fetched message of this broker holds
    poison = _Poison(redis_client)
    assert unchanged(redis_client, "poison", lambda: poison.dead_letter("no-broker", "sms.high", b"\xff")) == []
    # dlq_replay: a dead letter gone meanwhile
    letters = DeadLetters(redis_client)
    gone = DeadLetter("sms.high", "gone-id", 0, b"{}", "", None, ())
    assert unchanged(redis_client, "dlq_replay of a letter gone", lambda: letters.replay(gone)) == "nothing to replay"
    # campaign statistics: a report of an SMS not tracked, an opt-out with statistics off
    stats = CampaignStats(redis_client, ttl_s=0)
    assert not unchanged(redis_client, "campaign_delivery", lambda: stats.delivered(123, "delivered"))
    assert not unchanged(redis_client, "campaign_opt_out", lambda: stats.opted_out(sandbox.service_name, "t"))
    # campaign_numbers: numbers already held by the rows that claimed them
    numbers = _Numbers(redis_client)
    numbers({"numbers": "sms-worker:campaign-numbers:{c}"}, {"ttl_s": 60, "claims": [("+33612345678", 2)]})
    assert unchanged(
        redis_client,
        "campaign_numbers of numbers held",
        lambda: numbers({"numbers": "sms-worker:campaign-numbers:{c}"}, {"ttl_s": 60, "claims": [("+33612345678", 3)]}),
    ) == [2]
    # report: a receipt of an SMS not recorded; reply: a reply already published
    publisher = Publisher.from_settings(redis_client, PttTable(), idle_app.settings)
    receipt = Receipt(ovh_id=999, ptt=4, dlr=1, source="poll")
    assert unchanged(redis_client, "report of an unknown id", lambda: publisher.receipt(receipt)) == ("unknown_id", 0)
    reply = Reply(number="+33612345678", via="reply", source="poll", incoming_id="7", message="hello")
    publisher.reply(reply)
    unchanged(redis_client, "reply repeated", lambda: publisher.reply(reply))
    # claim_receipts: nothing due
    poller = ReceiptPoller(idle_app.settings, redis_client, idle_app.refresher.calls, publisher)
    assert (
        unchanged(
            redis_client,
            "claim_receipts",
            lambda: poller._claim({"receipts": keys.RECEIPTS}, {"now_ms": 0, "lease_ms": 1000, "limit": 5}),
        )
        == []
    )
    # rate_limit: reading the bucket
    limiter = idle_app.dispatchers[0].limiter
    limiter.snapshot()
    unchanged(redis_client, "rate_limit state", limiter.snapshot)


def test_every_script_has_its_refusals_driven_here() -> None:
    # A new Lua script gets its refusals tested in this module.
    from pathlib import Path

    import worker

    source = Path(__file__).read_text()
    names = {p.stem for p in Path(worker.__file__).parent.glob("*/lua/*.lua") if not p.stem.startswith("_")}
    covered = {
        "claim", "attempt", "release", "takeover", "settle", "reconcile_pick", "stage", "reject", "peek",
        "quota_set", "poison", "dlq_replay", "campaign_delivery", "campaign_opt_out", "campaign_numbers",
        "report", "reply", "claim_receipts", "rate_limit",
    }  # fmt: skip
    # Bulk mode's steps (worker/attempts/bulk.py, worker/campaigns/outcomes.py) came with the
    # campaigns' bulk sends after this test was written: their refusals are not driven here yet.
    not_yet = {"bulk", "bulk_rows"}
    assert names - not_yet == covered, (names - not_yet) ^ covered
    assert all(name in source for name in covered)
