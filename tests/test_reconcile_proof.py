"""An SMS in OVH's records is proof for one attempt only (issue 16, items 2 and 3).

Reconciliation counts the SMS found for (receiver, exact text as OVH stores it, the call's own
window) against every attempt that could own them: ids another attempt settled with are not
proof, an attempt still in flight for the same receiver and text settles first, and a longer
text never stands for a shorter one. A receiver is proven absent only after its call's own
deadline (when it left, plus the connect and read timeouts, plus the grace).

These tests drive the steps by hand (claim, call, reconcile) on a worker whose threads do not
run, so each interleaving is the one the test names, not a race.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import redis

from contracts import SendResult, SmsProducer
from contracts.models import SendRequest
from tests.helpers import read_events, redis_ms
from tests.quota_fixtures import create_user
from tests.waiting import wait_until
from worker.app import App, build_app
from worker.attempts.lease import Lease
from worker.attempts.lifecycle import Attempt, Look, Owner
from worker.attempts.settlement import Sent, from_findings, from_report
from worker.attempts.steps import Settled, SettleFirst
from worker.batching.buffers import Due
from worker.settings import Settings
from worker.store import keys

NUMBER = "+33612345678"


def idle(redis_url: str, sandbox: Any, client: redis.Redis | None = None, **overrides: Any) -> App:
    """A worker built and not started (the test drives it), on its own Redis client or ``client``."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "ovh_endpoint": sandbox.base_url,
        "service_name": sandbox.service_name,
        "sender": "SANDBOX",
        "rate_limit": 100.0,
        "rate_limit_burst": 10,
        "reconcile_grace_s": 0.5,
        "ovh_connect_timeout_s": 1.0,
        "ovh_read_timeout_s": 1.0,
    }
    app = build_app(Settings(**{**values, **overrides}), ovh_credentials=sandbox.credentials, client=client)
    app.refresher.prime(["FR"], None)
    return app


def owner_of(app: App, name: str, lease_s: float = 60) -> tuple[Lease, Owner]:
    """A worker's lease, which the app's dispatcher then calls under (the app's threads do not run)."""
    lease = Lease(app.buffers.redis, worker=name, lease_s=lease_s)
    assert lease.refresh()
    owner = lease.owner()
    assert owner is not None
    app.dispatchers[0].lease = lease
    return lease, owner


def stage_and_claim(
    app: App, owner: Owner, text: str, *, no_stop_clause: bool = True, user: str | None = None
) -> tuple[str, Attempt]:
    request = SendRequest(message=text, receivers=[NUMBER], priority="high", no_stop_clause=no_stop_clause, user=user)
    assert app.accept([request.model_dump(mode="json")], lane="high") == ["staged"]
    found = app.buffers.peek(["high"])
    assert isinstance(found, Due)
    attempt = app.attempts.claim(owner, "high", found.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=500)
    assert isinstance(attempt, Attempt)
    return request.request_id, attempt


def dispatch_what_is_due(app: App, owner: Owner) -> None:
    """One dispatcher round by hand: claim what is due on "high" and send it."""
    found = app.buffers.peek(["high"])
    assert isinstance(found, Due)
    attempt = app.attempts.claim(owner, "high", found.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=500)
    assert isinstance(attempt, Attempt)
    app.dispatchers[0].send(attempt, owner)


def reconcile_until_settled(app: App, call_id: str, owner: Owner) -> None:
    """Look at an ambiguous attempt whenever it is due, sending what it puts back, until it is settled."""

    def settled() -> bool:
        attempt = app.attempts.load(call_id)
        if attempt is None:
            return True
        due = redis_ms(app.buffers.redis) >= (app.buffers.redis.zscore(keys.RECONCILE, call_id) or 0)
        if due:
            app.reconcilers[0].reconcile(attempt)
        return False

    wait_until(settled, timeout=30, what="the ambiguous attempt settled")
    if isinstance(app.buffers.peek(["high"]), Due):  # its receiver was proven absent: sent again
        dispatch_what_is_due(app, owner)


def sent_results(client: Any) -> dict[str, SendResult]:
    return {e.request_id: e for e in read_events(client) if isinstance(e, SendResult)}


def assert_each_sms_proves_one_result(client: Any, sandbox: Any) -> None:
    results = sent_results(client)
    claimed = [o.ovh_id for r in results.values() for o in r.receivers if o.status == "sent"]
    made = [sms["id"] for sms in sandbox.control.sent()]
    assert len(claimed) == len(set(claimed)), f"two results claim one SMS: {claimed}"
    assert set(claimed) <= set(made), "a result claims an SMS OVH never made"
    assert len(made) == len(claimed), "every SMS made belongs to exactly one result"


def test_an_sms_another_request_settled_with_is_not_proof_with_tracking_off(
    make_app, redis_url, redis_client, sandbox
) -> None:
    # Given delivery tracking off (documented), request A's call answered 502 without OVH
    # carrying it out, and request B, same text and number, sent and settled meanwhile
    app = idle(redis_url, sandbox, delivery_tracking_ttl_s=0)
    _, owner = owner_of(app, "w1")
    sandbox.control.add_fault("502", next=1)
    a_id, a = stage_and_claim(app, owner, "Your code is 1234")
    app.dispatchers[0].send(a, owner)
    assert app.attempts.ambiguous_count() == 1
    b_id, b = stage_and_claim(app, owner, "Your code is 1234")
    app.dispatchers[0].send(b, owner)
    assert sent_results(redis_client)[b_id].status == "sent"
    # When A is reconciled
    reconcile_until_settled(app, a.call_id, owner)
    # Then B's SMS is not taken as proof for A: A was proven absent and sent again, each
    # result claims its own SMS (before: both said sent with B's id, one SMS went out)
    results = sent_results(redis_client)
    assert results[a_id].status == results[b_id].status == "sent"
    assert_each_sms_proves_one_result(redis_client, sandbox)
    assert [s["receiver"] for s in sandbox.control.sent()] == [NUMBER, NUMBER]


def test_an_attempt_in_flight_for_the_same_receiver_and_text_settles_first(redis_url, redis_client, sandbox) -> None:
    # Given A's call answered 502 without OVH carrying it out, and B (same text and number)
    # carried out by OVH but not settled yet: its SMS is in OVH's records, owned by nobody yet
    app = idle(redis_url, sandbox)
    _, owner = owner_of(app, "w1")
    sandbox.control.add_fault("502", next=1)
    a_id, a = stage_and_claim(app, owner, "Your code is 1234")
    app.dispatchers[0].send(a, owner)
    b_id, b = stage_and_claim(app, owner, "Your code is 1234")
    assert app.attempts.call(owner, b.call_id, 1).done
    body = {**b.meta.body, "receivers": [NUMBER]}
    report = app.dispatchers[0].gateway.send_job(b.service, None, body)  # type: ignore[arg-type]
    # When A is looked at now, and B settles afterwards
    loaded = app.attempts.load(a.call_id)
    assert loaded is not None
    app.reconcilers[0].reconcile(loaded)
    app.attempts.answer(b.call_id, report)
    assert isinstance(app.attempts.settle(b, from_report(b, report, "sms-results"), owner=owner), Settled)
    reconcile_until_settled(app, a.call_id, owner)
    # Then B's SMS proves B only: A waited for B, found nothing of its own, and was sent again
    results = sent_results(redis_client)
    assert results[a_id].status == results[b_id].status == "sent"
    assert_each_sms_proves_one_result(redis_client, sandbox)


def test_a_longer_text_is_not_proof_for_a_shorter_one(redis_url, redis_client, sandbox) -> None:
    # Given A ("Code 1") answered 502 without OVH carrying it out, and an SMS "Code 12" to the
    # same number made meanwhile by another sender of the account (not this worker)
    app = idle(redis_url, sandbox)
    _, owner = owner_of(app, "w1")
    sandbox.control.add_fault("502", next=1)
    a_id, a = stage_and_claim(app, owner, "Code 1")
    app.dispatchers[0].send(a, owner)
    other = {**a.meta.body, "message": "Code 12", "receivers": [NUMBER]}
    [other_id] = app.dispatchers[0].gateway.send_job(a.service, None, other)["ids"]  # type: ignore[arg-type]
    # When A is reconciled
    reconcile_until_settled(app, a.call_id, owner)
    # Then "Code 12" did not stand for "Code 1": A was sent again, with an SMS of its own
    [result] = sent_results(redis_client).values()
    assert result.status == "sent" and result.receivers[0].ovh_id != other_id
    assert sorted(s["message"] for s in sandbox.control.sent()) == ["Code 1", "Code 12"]


def test_a_slow_call_taken_over_is_not_proven_absent_before_its_own_deadline(redis_url, redis_client, sandbox) -> None:
    # Given OVH that carries a call out 4 s after it left (its read timeout is 6 s), made by a
    # worker whose lease (2 s) runs out meanwhile (paused, cut off), and a grace of 1 s
    app = idle(redis_url, sandbox, ovh_connect_timeout_s=1.0, ovh_read_timeout_s=6.0, reconcile_grace_s=1.0)
    paused, owner = owner_of(app, "paused-worker", lease_s=2)
    request_id, attempt = stage_and_claim(app, owner, "Your code is 1234")
    sandbox.control.set_faults(latency_ms=4000)
    call = threading.Thread(target=app.dispatchers[0].send, args=(attempt, owner), daemon=True)
    call.start()
    wait_until(lambda: sandbox.control.calls(), what="the call to reach OVH")
    sandbox.control.set_faults(latency_ms=0)  # OVH's records answer at once
    # When its lease expires, another worker takes the attempt over and reconciles it
    wait_until(lambda: not redis_client.exists(keys.lease(owner.token)), what="the lease to expire")
    assert app.attempts.sweep("test") == [(attempt.call_id, "ambiguous")]
    _, live = owner_of(app, "live-worker")
    reconcile_until_settled(app, attempt.call_id, live)
    call.join(10)
    # Then the SMS OVH made late was found: one SMS, the request sent with its id (before: it
    # was declared absent 1 s after the takeover and sent a second time)
    [sms] = sandbox.control.sent()
    result = SmsProducer(client=redis_client).wait(request_id, timeout=5)
    assert result.status == "sent" and result.receivers[0].ovh_id == sms["id"]
    assert paused.owner() is None


@pytest.fixture(autouse=True)
def _no_faults_left(sandbox):
    yield
    sandbox.control.clear_faults()


def test_a_look_reads_each_candidates_proof_mark_once(redis_url, redis_client, sandbox) -> None:
    # Given a call of 30 receivers carried out by OVH whose answer was lost (found by the fault
    # suite: the marks were read once per candidate per candidate, 900 reads for 30 SMS, and a
    # large call's look never ended)
    app = idle(redis_url, sandbox)
    _, owner = owner_of(app, "w1")
    requests = [
        SendRequest(message="Flash sale", receivers=[f"+336{20_000_000 + n:08d}"], no_stop_clause=True)
        for n in range(30)
    ]
    assert app.accept([r.model_dump(mode="json") for r in requests], lane="medium") == ["staged"] * 30
    wait_until(lambda: isinstance(app.buffers.peek(["medium"]), Due), what="the buffer due")
    found = app.buffers.peek(["medium"])
    assert isinstance(found, Due)
    attempt = app.attempts.claim(owner, "medium", found.batch_key, uuid.uuid4().hex, linger_ms=0, max_receivers=500)
    assert isinstance(attempt, Attempt) and len(attempt.entries) == 30
    sandbox.control.set_faults(hold_s=2)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    app.dispatchers[0].send(attempt, owner)
    loaded = app.attempts.load(attempt.call_id)
    assert loaded is not None
    # When it is reconciled
    redis_client.config_resetstat()
    assert app.reconcilers[0].reconcile(loaded)
    # Then each SMS's mark was read once (and the 30 found)
    reads = redis_client.info("commandstats").get("cmdstat_hget", {}).get("calls", 0)
    assert reads <= 3 * 30, reads  # once at the look, once in the settle step, and a few others
    assert app.reconcilers[0].calls == 1 + 30


# -- an SMS made through one user is never proof for another user's (or the account's) request --


def made_late(app: App, owner: Owner, attempt: Attempt) -> int:
    """``attempt``'s call carried out by OVH and its answer lost: ambiguous, its SMS in OVH's
    records (made through its own user), owned by nobody yet; the SMS's id."""
    assert app.attempts.call(owner, attempt.call_id, 1).done
    body = {**attempt.meta.body, "receivers": [NUMBER]}
    [sms_id] = app.dispatchers[0].gateway.send_job(attempt.service, attempt.login, body)["ids"]  # type: ignore[arg-type]
    assert app.attempts.ambiguous(owner, attempt.call_id, 1, "answer lost").done
    return int(sms_id)


def assert_each_result_claims_its_users_sms(client: Any, sandbox: Any, users: dict[str, str | None]) -> None:
    made_through = {sms["id"]: sms["login"] for sms in sandbox.control.sent()}
    results = sent_results(client)
    for request_id, user in users.items():
        [outcome] = results[request_id].receivers
        assert outcome.status == "sent" and made_through[outcome.ovh_id] == user, (request_id, outcome, made_through)


def test_an_account_level_sms_is_not_proof_for_a_users_request(redis_url, redis_client, sandbox) -> None:
    # Given alice's code answered 502 without OVH carrying it out, and the same code to the same
    # number sent at the account level, carried out by OVH but its answer lost: both ambiguous
    create_user(sandbox, "alice")
    app = idle(redis_url, sandbox, quotas={"alice": {"quota": 100}})
    _, owner = owner_of(app, "w1")
    sandbox.control.add_fault("502", next=1)
    alice_id, alice = stage_and_claim(app, owner, "Your code is 1234", user="alice")
    app.dispatchers[0].send(alice, owner)
    account_id, account = stage_and_claim(app, owner, "Your code is 1234")
    made_late(app, owner, account)
    # When alice's call is looked at (the account's SMS in its window, to its number, same text)
    loaded = app.attempts.load(alice.call_id)
    assert loaded is not None
    app.reconcilers[0].reconcile(loaded)
    first_look = app.reconcilers[0].calls
    reconcile_until_settled(app, alice.call_id, owner)
    reconcile_until_settled(app, account.call_id, owner)
    # Then the account's SMS was not taken: alice's call was proven absent in time and sent again
    # through alice; the account's call found its own SMS (before: alice's request claimed the
    # account's SMS, paid by the account, and the account's request was sent again)
    assert_each_result_claims_its_users_sms(redis_client, sandbox, {alice_id: "alice", account_id: None})
    assert_each_sms_proves_one_result(redis_client, sandbox)
    # and telling them apart cost one more lookup: alice's own listing (OVH's records do not say
    # which user made an SMS)
    assert first_look == 3  # the window's listing, the SMS read, alice's listing


def test_a_look_without_another_users_attempt_costs_no_extra_lookup(redis_url, redis_client, sandbox) -> None:
    # Given a user's code carried out by OVH, its answer lost, and no other attempt
    create_user(sandbox, "alice")
    app = idle(redis_url, sandbox, quotas={"alice": {"quota": 100}})
    _, owner = owner_of(app, "w1")
    request_id, attempt = stage_and_claim(app, owner, "Your code is 1234", user="alice")
    made_late(app, owner, attempt)
    # When it is reconciled
    reconcile_until_settled(app, attempt.call_id, owner)
    # Then its SMS was found with the window's listing and one read, no user's listing
    assert app.reconcilers[0].calls == 2
    assert_each_result_claims_its_users_sms(redis_client, sandbox, {request_id: "alice"})


def test_the_settle_step_refuses_an_sms_another_users_ambiguous_call_may_own(redis_url, redis_client, sandbox) -> None:
    # Given the account's code answered 502 without OVH carrying it out, and alice's same code
    # carried out by OVH, its answer lost: ambiguous, its SMS owned by nobody yet
    create_user(sandbox, "alice")
    app = idle(redis_url, sandbox, quotas={"alice": {"quota": 100}})
    _, owner = owner_of(app, "w1")
    sandbox.control.add_fault("502", next=1)
    _, account = stage_and_claim(app, owner, "Your code is 1234")
    app.dispatchers[0].send(account, owner)
    _, alice = stage_and_claim(app, owner, "Your code is 1234", user="alice")
    sms_id = made_late(app, owner, alice)
    loaded = app.attempts.load(account.call_id)
    assert loaded is not None
    # When a reconciler whose look did not take alice's call into account (it became ambiguous
    # after the look read the unresolved attempts) settles the account's call with that SMS
    outcome = from_findings(loaded, {NUMBER: Sent(sms_id, 1.0)}, default_queue="sms-results")
    look = Look("look-1", redis_ms(redis_client), in_flight=(alice.call_id,), rivals=())
    reply = app.attempts.settle(loaded, outcome, owner=None, look=look)
    # Then the step refuses before writing anything: look again (alice's call may own it)
    assert reply == SettleFirst(alice.call_id)
    assert app.attempts.load(account.call_id) is not None and not redis_client.exists(keys.sms(sms_id))


def test_a_try_whose_calling_mark_came_back_late_is_not_proven_absent_before_its_deadline(
    redis_url, redis_client, sandbox
) -> None:
    """Found by the fault suite through the nemesis (a receiver sent one SMS more than asked,
    from a slow call): a try's deadline counted from when Redis ran its "calling" mark, and the
    request left only when the reply came back, up to redis-py's socket timeout later."""
    from tests.lossy import LostReplies, lossy_client
    from worker.attempts import steps

    # Given a worker whose "calling" mark of a code's try comes back 2 s after Redis ran it, and
    # OVH that carries the call out 3 s after it arrives (within the call's own deadline: the
    # connect and read timeouts, 2 s + 1 s, plus the grace, 1 s, after it left)
    lost = LostReplies()
    lost.late(steps.Transition, 2.0)  # the first transition of a call is its "calling" mark
    app = idle(redis_url, sandbox, lossy_client(redis_url, lost), ovh_connect_timeout_s=2.0, reconcile_grace_s=1.0)
    _, owner = owner_of(app, "w1")
    request_id, attempt = stage_and_claim(app, owner, "Your code is 1234")
    sandbox.control.add_fault("slow", next=1, delay_s=3.0)
    # When the try leaves, times out, and the call is reconciled whenever it is due
    app.dispatchers[0].send(attempt, owner)
    assert lost.delayed == ["attempt"]
    reconcile_until_settled(app, attempt.call_id, owner)
    # Then the SMS OVH made late was found: one SMS, the request sent with its id (before: the
    # receiver was proven absent 1 s too early and sent a second SMS)
    calls = sandbox.control.calls
    wait_until(lambda: all(c["status"] is not None for c in calls()), what="OVH done with every call")
    result = SmsProducer(client=redis_client).wait(request_id, timeout=10)
    [sms] = sandbox.control.sent()
    assert result.status == "sent" and result.receivers[0].ovh_id == sms["id"]
