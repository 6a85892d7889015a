"""The worker's per-tag campaign counters: kept at settlement, and by delivery reports and STOP replies."""

from __future__ import annotations

import re

import redis

from contracts import SmsProducer
from contracts.models import SendRequest
from worker.campaigns.stats import DELAY_EDGES_S, MAX_MINUTE, CampaignStats, delay_bucket
from worker.store import keys, scripts

TTL_S = 3600


def test_lua_and_python_share_the_histogram_edges() -> None:
    lua = scripts.source(scripts.SHARED, "_campaign")
    edges = re.search(r"CAMPAIGN_DELAY_EDGES_S = \{([^}]*)\}", lua)
    assert edges is not None
    assert tuple(float(x) for x in edges.group(1).replace("\n", " ").split(",") if x.strip()) == DELAY_EDGES_S
    assert f"CAMPAIGN_MAX_MINUTE = {MAX_MINUTE}\n" in lua


def test_settlement_counts_sms_requests_and_credits_per_tag(make_app, redis_client: redis.Redis, sandbox) -> None:
    # Given a worker, and one receiver OVH refuses as invalid
    make_app(campaign_stats_ttl_s=TTL_S)
    sandbox.control.set_invalid_receivers(["+33612000009"])
    producer = SmsProducer(client=redis_client)
    # When two tagged requests (three valid receivers, one refused) and an untagged one are sent
    first = producer.send(["+33612000001", "+33612000002"], "Hello", tag="spring", no_stop_clause=True)
    second = producer.send(["+33612000003", "+33612000009"], "Hello", tag="spring", no_stop_clause=True)
    other = producer.send("+33612000004", "Hello", no_stop_clause=True)
    for request_id in (first, second, other):
        producer.wait(request_id, timeout=30)
    # Then the tag's counters say what the sandbox did, and nothing else is counted
    stats = CampaignStats(redis_client, ttl_s=TTL_S).read(sandbox.service_name, "spring")
    assert stats is not None
    assert stats.receivers == {"sent": 3, "invalid": 1}
    assert stats.requests == {"sent": 2}
    assert stats.credits == sum(s["credits"] for s in sandbox.control.sent() if s["tag"] == "spring")
    assert sum(stats.minutes.values()) == 3 and stats.first_ms is not None
    assert 0 < redis_client.ttl(keys.campaign_stats(sandbox.service_name, "spring")) <= TTL_S
    stats_key = keys.campaign_stats(sandbox.service_name, "spring")
    assert redis_client.keys(keys.PREFIX + "campaign:*") == [stats_key.encode()]


def test_requests_refused_at_accept_are_counted_rejected_once(make_app, redis_client: redis.Redis, sandbox) -> None:
    # Given a worker keeping campaign counters
    make_app(campaign_stats_ttl_s=TTL_S)
    producer = SmsProducer(client=redis_client)
    # When a tagged request is refused at accept (no valid receiver), delivered twice, beside a sent one
    refused = SendRequest(request_id="spring-bad", message="Hello", receivers=["123"], tag="spring")
    producer.publish([refused, refused])
    sent = producer.send("+33612000001", "Hello", tag="spring", no_stop_clause=True)
    assert producer.wait("spring-bad", timeout=30).status == "rejected"
    producer.wait(sent, timeout=30)
    # Then the tag counts one rejected request and one sent
    stats = CampaignStats(redis_client, ttl_s=TTL_S).read(sandbox.service_name, "spring")
    assert stats is not None
    assert stats.requests == {"sent": 1, "rejected": 1}
    assert stats.receivers == {"sent": 1}


def test_delivery_reports_count_each_sms_once_and_never_undo_a_final_status(redis_client: redis.Redis) -> None:
    # Given two SMS the worker settled with a tag (their tracking hashes, as settle.lua writes them)
    for ovh_id in (1, 2):
        redis_client.hset(keys.sms(ovh_id), mapping={"service": "sms-x-1", "tag": "t/1", "sent_at": 1000.0})
    stats = CampaignStats(redis_client, ttl_s=TTL_S)
    # When reports arrive repeated and out of order
    assert stats.delivered(1, "pending") is True
    assert stats.delivered(1, "delivered", ptt=4, delivered_at=1002.5) is True
    assert stats.delivered(1, "delivered", ptt=4, delivered_at=1002.5) is False  # a repeat
    assert stats.delivered(1, "pending") is False  # late, after the final status
    assert stats.delivered(2, "failed", ptt=23) is True
    assert stats.delivered(2, "delivered", delivered_at=1001) is False
    assert stats.delivered(3, "delivered") is False  # an SMS the worker does not track
    assert stats.opted_out("sms-x-1", "t/1") is True
    # Then each SMS counts once, under its first final status
    read = stats.read("sms-x-1", "t/1")
    assert read is not None
    assert {k: v for k, v in read.dlr.items() if v} == {"delivered": 1, "failed": 1}
    assert read.ptts == {"23": 1}
    assert read.delays == {delay_bucket(2.5): 1} and DELAY_EDGES_S[delay_bucket(2.5) - 1] == 3
    assert read.opt_outs == 1


def test_nothing_is_kept_with_a_ttl_of_zero(redis_client: redis.Redis) -> None:
    redis_client.hset(keys.sms(1), mapping={"service": "sms-x-1", "tag": "t"})
    stats = CampaignStats(redis_client, ttl_s=0)
    assert stats.delivered(1, "delivered") is False
    assert stats.opted_out("sms-x-1", "t") is False
    assert stats.read("sms-x-1", "t") is None
