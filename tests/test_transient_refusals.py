"""A transient refusal never burns a request id (issue 16, item 6).

A request whose destination rate is not known yet waits for it (read at once in the background)
instead of being rejected; a request refused for a cause that is not its own (its user's quota,
the account's credits) may be sent again with the same id once the cause is gone.
"""

from __future__ import annotations

from contracts import SmsProducer
from tests.quota_fixtures import create_user
from tests.waiting import wait_until
from worker.accounting.quotas import QuotaStore, UserQuota


def test_a_first_code_to_a_new_country_waits_for_its_rate_and_is_sent(make_app, redis_client, sandbox) -> None:
    # Given a worker that knows only the rates of its default region (FR)
    make_app()
    producer = SmsProducer(client=redis_client)
    # When the first code to a German number is sent
    result = producer.wait(producer.send("+4915112345678", "Code 4711", priority="high", no_stop_clause=True), 30)
    # Then it waited for the rate and went out (before: rejected, rate_unknown)
    assert result.status == "sent", result.error
    assert [s["receiver"] for s in sandbox.control.sent()] == ["+4915112345678"]


def test_a_request_refused_by_its_quota_can_be_sent_again_with_the_same_id(make_app, redis_client, sandbox) -> None:
    # Given a user with 1 credit of quota, already spent by a first request
    create_user(sandbox, "alice")
    make_app(quotas={"alice": {"quota": 1}})
    producer = SmsProducer(client=redis_client)
    first = producer.send("+33612345678", "Hello", user="alice", no_stop_clause=True)
    assert producer.wait(first, 30).status == "sent"
    refused = producer.send("+33612345679", "Hello", user="alice", no_stop_clause=True, request_id="order-9")
    result = producer.wait(refused, 30)
    assert result.status == "rejected" and result.error is not None and result.error.code == "quota_exceeded"
    # When the quota is raised and the same request is sent again, same id
    QuotaStore(redis_client).apply_config(
        [UserQuota(login="alice", service=sandbox.service_name, quota=5)]  # a new config entry
    )
    producer.send("+33612345679", "Hello", user="alice", no_stop_clause=True, request_id="order-9")
    # Then it is sent (before: dropped as a repeat of an id already seen)
    wait_until(lambda: (producer.result("order-9") or result).status == "sent", what="the resent request sent")
    assert sorted(s["receiver"] for s in sandbox.control.sent()) == ["+33612345678", "+33612345679"]
