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
import redis

from contracts import QuotaAlert, SendResult, SmsProducer, parse_event
from contracts.models import SendRequest
from tests.helpers import read_queue, redis_ms
from tests.quota_fixtures import create_user
from tests.waiting import wait_until
from worker.accounting.quotas import QuotaStore, UserQuota
from worker.app import App, build_app
from worker.attempts.bulk import BulkAttempt, BulkAttempts, DocumentRef
from worker.attempts.lease import Lease
from worker.attempts.lifecycle import Attempt, Outcome, Owner
from worker.batching.buffers import Due
from worker.campaigns.outcomes import CampaignRecord, RowOutcome, RowResults
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
    covered |= {"bulk", "bulk_rows"}  # bulk mode's steps: test_bulk_* below
    assert names == covered, names ^ covered
    assert all(name in source for name in covered)


# -- bulk mode's steps (worker/attempts/bulk.py, worker/campaigns/outcomes.py) --------------------


def changed(client: Any, step: Any) -> tuple[Any, list[bytes]]:
    """``step``'s reply and the keys it changed."""
    before = snapshot(client)
    reply = step()
    after = snapshot(client)
    return reply, sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def bulk_campaign(client: Any, campaign_id: str, state: str = "running", *, due_ms: int = 0) -> DocumentRef:
    """A bulk campaign's record as ``sms-worker campaign send`` leaves it, with document 0 due."""
    ref = DocumentRef(campaign_id, 0)
    client.hset(keys.bulk_campaign(campaign_id), mapping={"state": state, "documents": 1})
    client.zadd(keys.BULK_DUE, {ref.member: due_ms})
    return ref


@pytest.fixture
def bulk(redis_client) -> BulkAttempts:
    return BulkAttempts(redis_client, attempt_ttl_s=3600, grace_ms=1000, deadline_ms=60_000)


def test_bulk_steps_refused_write_nothing(bulk, redis_client) -> None:
    owner, other = live_owner(redis_client), live_owner(redis_client, "w3")
    stranger = Owner("w2", uuid.uuid4().hex)
    ref = bulk_campaign(redis_client, "c-running")
    paused, cancelled = (
        bulk_campaign(redis_client, "c-paused", "paused"),
        bulk_campaign(redis_client, "c-x", "cancelled"),
    )
    later = bulk_campaign(redis_client, "c-later", due_ms=redis_ms(redis_client) + 3_600_000)
    seen = BulkAttempt(ref, "ambiguous", ambiguous_at_ms=1)  # what a reconciler looked at: not this document's
    # a document due, without an attempt
    refusals: dict[str, tuple[Any, Any]] = {
        "claim by a worker without a lease": (lambda: bulk.claim(stranger, ref), "nolease"),
        "claim of a paused campaign's document": (lambda: bulk.claim(owner, paused), "paused"),
        "claim of a cancelled campaign's document": (lambda: bulk.claim(owner, cancelled), "cancelled"),
        "claim of a document not due yet": (lambda: bulk.claim(owner, later), "notdue"),
        "call without an attempt": (lambda: bulk.call(owner, ref), False),
        "uncall without an attempt": (lambda: bulk.uncall(owner, ref), False),
        "release without an attempt": (lambda: bulk.release(owner, ref), False),
        "ambiguous without an attempt": (lambda: bulk.ambiguous(owner, ref, "why"), False),
        "settle without an attempt": (lambda: bulk.settle(ref, "sent", owner=owner, rows=3), False),
        "a reconciler's settle without an attempt": (
            lambda: bulk.settle(ref, "sent", owner=None, rows=3, looked_at=seen),
            False,
        ),
        "absent without an attempt": (lambda: bulk.absent(seen), False),
        "answer without an attempt": (lambda: bulk.answer(ref, {"ids": []}), ""),
        "sweep with nothing in flight": (lambda: bulk.sweep("why"), []),
    }
    for name, (step, expected) in refusals.items():
        assert changed(redis_client, step) == (expected, []), name
    # a document being called
    assert bulk.claim(owner, ref) == "ok"
    redis_client.zadd(keys.BULK_DUE, {ref.member: 0})  # a stale entry (a re-run racing the claim)
    reply, keys_changed = changed(redis_client, lambda: bulk.claim(other, ref))
    assert (reply, keys_changed) == ("taken", [keys.BULK_DUE.encode()])  # only the stale entry tidied away
    assert redis_client.zscore(keys.BULK_DUE, ref.member) is None
    refusals = {
        "claim by another worker": (lambda: bulk.claim(other, ref), "taken"),
        "call by another worker": (lambda: bulk.call(stranger, ref), False),
        "uncall by another worker": (lambda: bulk.uncall(other, ref), False),
        "release of a document being called": (lambda: bulk.release(owner, ref), False),
        "ambiguous by another worker": (lambda: bulk.ambiguous(other, ref, "why"), False),
        "settle by another worker": (lambda: bulk.settle(ref, "sent", owner=other, rows=3), False),
        "a reconciler's settle of a call not ambiguous": (
            lambda: bulk.settle(ref, "sent", owner=None, rows=3, looked_at=seen),
            False,
        ),
        "absent of a call not ambiguous": (lambda: bulk.absent(seen), False),
        "sweep while the owner lives": (lambda: bulk.sweep("why"), []),
    }
    for name, (step, expected) in refusals.items():
        assert changed(redis_client, step) == (expected, []), name
    # the same document, ambiguous: a reconciler's steps must name the call they looked at
    assert bulk.ambiguous(owner, ref, "timeout")
    refusals = {
        "a reconciler's settle of another call": (
            lambda: bulk.settle(ref, "sent", owner=None, rows=3, looked_at=seen),
            False,
        ),
        "absent of another call": (lambda: bulk.absent(seen), False),
        "call of an ambiguous call": (lambda: bulk.call(owner, ref), False),
        "settle by its owner once ambiguous": (lambda: bulk.settle(ref, "sent", owner=owner, rows=3), False),
    }
    for name, (step, expected) in refusals.items():
        assert changed(redis_client, step) == (expected, []), name
    # a campaign gone: its document's claim tidies the due entry away and writes nothing else
    gone = DocumentRef("c-gone", 0)
    redis_client.zadd(keys.BULK_DUE, {gone.member: 0})
    assert changed(redis_client, lambda: bulk.claim(owner, gone)) == ("gone", [keys.BULK_DUE.encode()])


def test_bulk_steps_with_a_malformed_document_write_nothing(bulk, redis_client) -> None:
    # Given a document being called, and steps whose documents lack what they write with
    owner = live_owner(redis_client)
    ref = bulk_campaign(redis_client, "c1")
    assert bulk.claim(owner, ref) == "ok"
    malformed = {
        "settle with an outcome that is not one": {"outcome": "maybe", "rows": 3},
        "settle without rows": {"outcome": "sent"},
        "settle with rows that are not a whole number": {"outcome": "sent", "rows": 2.5},
        "release to a due time that is not one": {"due_ms": "soon"},
        "ambiguous without a grace": {"reason": "why", "deadline_ms": 1000},
    }
    ops = {"settle": "settle", "release": "release", "ambiguous": "ambiguous"}
    for name, fields in malformed.items():
        op = ops[name.split()[0]]
        # Then each is refused before its first write (before: a settle without whole rows
        # marked the document sent and counted it, then failed before counting its rows and
        # tracking their outcomes; a release to a bad due time deleted the attempt, then failed
        # to make the document due: neither due nor attempted, never sent; an outcome that is
        # not one was written as the attempt's state)
        before = snapshot(redis_client)
        with pytest.raises(redis.ResponseError, match=f"bulk {op}: "):
            bulk._run(op, ref, owner, **fields)
        assert snapshot(redis_client) == before, name
    loaded = bulk.load(ref)
    assert loaded is not None and loaded.state == "calling"


def test_bulk_steps_sent_again_after_a_lost_reply_apply_once(bulk, redis_client) -> None:
    """Each step run twice, as after a reply lost on the way back: the second run answers as
    the first did where the attempt is still there to say so, and writes nothing."""
    owner = live_owner(redis_client)
    ref = bulk_campaign(redis_client, "c1")
    twice: list[tuple[str, Any, Any]] = [
        ("claim", lambda: bulk.claim(owner, ref), "same"),
        ("uncall", lambda: bulk.uncall(owner, ref), True),
        ("call", lambda: bulk.call(owner, ref), True),
        ("ambiguous", lambda: bulk.ambiguous(owner, ref, "timeout"), True),
    ]
    first = {"claim": "ok"}
    for name, step, again in twice:
        assert step() == first.get(name, True), name
        assert changed(redis_client, step) == (again, []), name
    looked_at = bulk.load(ref)
    assert looked_at is not None and looked_at.ambiguous_at_ms > 0
    settle = lambda: bulk.settle(ref, "sent", owner=None, rows=3, looked_at=looked_at)  # noqa: E731
    assert settle()
    assert changed(redis_client, settle) == (True, [])
    # an owner's settle and a release, on a second document
    other = DocumentRef("c1", 1)
    redis_client.zadd(keys.BULK_DUE, {other.member: 0})
    assert bulk.claim(owner, other) == "ok"
    owner_settle = lambda: bulk.settle(other, "failed", owner=owner, rows=3, reason="refused")  # noqa: E731
    assert owner_settle()
    assert changed(redis_client, owner_settle) == (True, [])
    third = DocumentRef("c1", 2)
    redis_client.zadd(keys.BULK_DUE, {third.member: 0})
    assert bulk.claim(owner, third) == "ok" and bulk.uncall(owner, third)
    assert bulk.release(owner, third)
    assert changed(redis_client, lambda: bulk.release(owner, third)) == (False, [])  # gone once released


def test_a_reconcilers_absent_sent_again_leaves_a_newer_call_alone(bulk, redis_client) -> None:
    # Given a document's call ambiguous, proven absent by a reconciler whose reply was lost, and
    # the document claimed again meanwhile, its new call ambiguous too (it may have been sent)
    owner = live_owner(redis_client)
    ref = bulk_campaign(redis_client, "c1")
    assert bulk.claim(owner, ref) == "ok" and bulk.ambiguous(owner, ref, "timeout")
    looked_at = bulk.load(ref)
    assert looked_at is not None
    assert bulk.absent(looked_at)
    wait_until(lambda: redis_ms(redis_client) > looked_at.ambiguous_at_ms, what="Redis' clock to move on")
    assert bulk.claim(owner, ref) == "ok" and bulk.ambiguous(owner, ref, "timeout")
    # When the reconciler's absent arrives again (sent again after its reply was lost)
    reply, keys_changed = changed(redis_client, lambda: bulk.absent(looked_at))
    # Then it does not touch the newer call (before: that call was made due again without any
    # look at OVH's records: its document could be sent twice)
    assert (reply, keys_changed) == (False, [])
    newer = bulk.load(ref)
    assert newer is not None and newer.state == "ambiguous"


def test_bulk_rows_refused_write_nothing(redis_client) -> None:
    results = RowResults(redis_client, result_ttl_s=3600, queue_cap=1000, tracking_ttl_s=86_400, stats_ttl_s=86_400)
    campaign = CampaignRecord(
        campaign_id="c1",
        state="running",
        service="sms-sandbox-1",
        login=None,
        lane="low",
        tag="spring",
        body={"message": "Spring sale"},
        reply_to="sms-results",
        documents=1,
        rows=2,
        commercial=False,
        created_at=1.0,
        fields={},
    )
    rows = [
        RowOutcome(1, "+33612340001", "sent", 1.0, ovh_id=101, credits=1.0),
        RowOutcome(2, "+33612340002", "failed", 1.0, reason="refused"),
    ]
    assert results.publish(campaign, rows) == 2
    # the same rows again (a callback and a tag listing racing, or a reply lost): nothing
    assert changed(redis_client, lambda: results.publish(campaign, rows)) == (0, [])
    # a row malformed after a good one: refused before its first write (before: the good row's
    # result was published and the error left its counters, quota and statistics unmoved; the
    # step run again skipped it as published, so they never moved)
    fresh = [RowOutcome(3, "+33612340003", "sent", 1.0, ovh_id=103, credits=1.0)]
    refs = results._script.refs()
    good = {
        "id": "bulk-c1-3",
        "result": refs(keys.result("bulk-c1-3")),
        "ready": refs(keys.result_ready("bulk-c1-3")),
        "q": refs(keys.queue("sms-results")),
        "msgs": refs(keys.queue_messages("sms-results")),
        "queue": "sms-results",
        "status": "sent",
        "payload": "{}",
        "estimate": 1.0,
        "credits": 1.0,
    }
    bad = {**good, "id": "bulk-c1-4", "result": refs(keys.result("bulk-c1-4")), "estimate": None}
    document: Any = {
        "result_ttl_s": 3600,
        "queue_cap": 1000,
        "result_actor": "result",
        "tracking_ttl_s": 86_400,
        "stats_ttl_s": 86_400,
        "has_quota": False,
        "service": "sms-sandbox-1",
        "tag": "spring",
        "rows": [good, bad],
    }
    fixed: Any = {
        "campaign": keys.bulk_campaign("c1"),
        "stats": keys.STATS,
        "quota": keys.STATS,
        "seen": keys.bulk_seen("c1"),
        "tag_stats": keys.campaign_stats("sms-sandbox-1", "spring"),
    }
    before = snapshot(redis_client)
    with pytest.raises(redis.ResponseError, match="row 2"):
        results._script(fixed, document, refs)
    assert snapshot(redis_client) == before
    assert results.publish(campaign, fresh) == 1
