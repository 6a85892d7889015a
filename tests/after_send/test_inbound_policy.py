"""Before credits are spent: the blacklist and the sender, checked from the worker's caches."""

from __future__ import annotations

import json

import pytest
import redis

from contracts import CreditUsage, SendRequest, SmsProducer
from tests.helpers import read_events
from tests.waiting import wait_until
from worker.errors import Rejection
from worker.intake.policy import Policy
from worker.ovhcloud.blacklist import Blacklist
from worker.ovhcloud.senders import Senders
from worker.phones import normalize
from worker.settings import Settings
from worker.store import keys

pytestmark = pytest.mark.timeout(120)

SN = "sms-sandbox-1"
FR, FR2 = "+33612345678", "+33612345679"


def synced(redis_client: redis.Redis, number: str) -> bool:
    return redis_client.sismember(keys.blacklist(SN), number) == 1


def test_a_commercial_send_skips_blacklisted_numbers_and_spends_nothing_on_them(
    make_app, redis_client, sandbox
) -> None:
    # Given FR on the account's OVH blacklist, read by the worker
    sandbox.control.add_blacklist(SN, FR)
    make_app()
    wait_until(lambda: synced(redis_client, FR))
    producer = SmsProducer(client=redis_client)
    # When a commercial SMS goes to FR and FR2, and a non-commercial one to FR
    promo = producer.wait(producer.send([FR, FR2], "Sale today"), timeout=30)
    code = producer.wait(producer.send(FR, "Your code is 1234", no_stop_clause=True), timeout=30)
    everyone = producer.wait(producer.send(FR, "Another sale"), timeout=30)
    # Then the promotion reached FR2 only, FR's outcome says why, and only FR2's credit was spent
    assert promo.status == "sent"
    assert {o.receiver: o.status for o in promo.receivers} == {FR: "blacklisted", FR2: "sent"}
    [usage] = [e for e in read_events(redis_client) if isinstance(e, CreditUsage) and promo.request_id in e.request_ids]
    assert usage.credits_reserved == usage.credits_used == 1.0
    # and the code went out; a promotion to FR alone was rejected whole
    assert code.status == "sent"
    assert (everyone.status, everyone.error and everyone.error.code) == ("rejected", "blacklisted")
    assert [o.status for o in everyone.receivers] == ["blacklisted"]
    assert sorted((s["receiver"], s["noStopClause"]) for s in sandbox.control.sent()) == [(FR, True), (FR2, False)]


def test_an_opt_out_is_refused_from_the_next_message_on(redis_url, redis_client) -> None:
    # Given a worker's policy that already read the account's (empty) blacklist
    settings = Settings(redis_url=redis_url, service_name=SN, sender="SANDBOX")
    policy = Policy(
        settings, blacklist=Blacklist(redis_client, default_region="FR"), senders=Senders(redis_client, ttl_s=60)
    )
    receivers = [normalize(FR, "FR"), normalize(FR2, "FR")]
    request = SendRequest(message="Sale", receivers=[FR, FR2])
    policy.new_pack()
    assert policy.screen(request, SN, receivers) == (receivers, [])
    # When FR opts out (as the inbound service records it)
    redis_client.zadd(keys.optouts(SN), {FR: 1})
    redis_client.incr(keys.blacklist_gen(SN))
    # Then the rest of the message being accepted is unchanged, and the next message refuses FR
    assert policy.screen(request, SN, receivers)[1] == []
    policy.new_pack()
    kept, blocked = policy.screen(request, SN, receivers)
    assert [r.e164 for r in kept] == [FR2] and [(o.receiver, o.status) for o in blocked] == [(FR, "blacklisted")]
    with pytest.raises(Rejection) as refused:
        policy.screen(request.model_copy(update={"receivers": [FR]}), SN, receivers[:1])
    assert refused.value.error.code == "blacklisted"


def test_a_sender_ovh_does_not_enable_is_rejected_before_anything_is_spent(make_app, redis_client, sandbox) -> None:
    # Given the worker read the account's senders (SANDBOX enabled, PENDINGSNDR waiting)
    make_app()
    wait_until(lambda: redis_client.hget(keys.senders(SN), "*"))
    producer = SmsProducer(client=redis_client)
    # When requests name a sender waiting for validation, one OVH does not have, and a good one
    waiting = producer.wait(producer.send(FR, "Hi", sender="PENDINGSNDR"), timeout=30)
    missing = producer.wait(producer.send(FR, "Hi", sender="NOPE"), timeout=30)
    fine = producer.wait(producer.send(FR, "Hi", sender="SANDBOX"), timeout=30)
    # Then the first two are rejected, naming the sender, and never reached OVH
    for result in (waiting, missing):
        assert (result.status, result.error.code, result.error.field) == ("rejected", "sender_not_allowed", "sender")
    assert "waitingValidation" in waiting.error.message and "missing" in missing.error.message
    assert fine.status == "sent"
    assert sandbox.control.counters()["jobs_calls"] == 1


def test_an_unknown_sender_is_allowed_while_the_list_is_not_known(redis_url, redis_client) -> None:
    settings = Settings(redis_url=redis_url, service_name=SN, sender="SANDBOX")
    senders = Senders(redis_client, ttl_s=60)
    policy = Policy(settings, blacklist=Blacklist(redis_client, default_region="FR"), senders=senders)
    request = SendRequest(message="Hi", receivers=[FR], sender="NEWSENDER", no_stop_clause=True)
    receivers = [normalize(FR, "FR")]
    assert policy.screen(request, SN, receivers) == (receivers, [])  # OVH remains the authority
    assert senders.status(SN, "NEWSENDER") is None  # and it is looked up in the background


def test_the_worker_fetches_ovh_descriptions_of_ptt_codes_seen(make_app, redis_client) -> None:
    # Given the inbound service saw ptt codes it has no OVH description for
    redis_client.sadd(keys.PTTS_WANTED, 24, 4242)
    make_app()
    # Then the worker asks OVH (GET /sms/ptts) and caches the answers, unknown codes included
    wait_until(lambda: redis_client.hlen(keys.PTTS) == 2)
    assert json.loads(redis_client.hget(keys.PTTS, "24"))["duration"] == "temporary"
    assert json.loads(redis_client.hget(keys.PTTS, "4242"))["description"] is None
    assert redis_client.scard(keys.PTTS_WANTED) == 0
