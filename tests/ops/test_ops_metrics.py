"""``/metrics`` scraped over HTTP while a worker runs agrees with what the sandbox saw."""

from __future__ import annotations

from collections import Counter

import pytest

from contracts import SmsProducer
from contracts.wire import LANES
from tests.helpers import enqueue_raw
from tests.ops.endpoints import get, ops_port, scrape
from tests.waiting import wait_until


def test_metrics_equal_the_sandbox_counts(make_app, redis_client, sandbox) -> None:
    # Given a worker serving metrics, a user with a quota, and OVH that refuses one try (429)
    # and reports one receiver invalid
    app = make_app(
        metrics_port=0,
        metrics_host="127.0.0.1",
        quotas={"marketing": {"quota": 100}},
        rates_prefetch=["BE"],
        sender_check=False,  # so that OVH itself refuses the pending sender: a failed call, counted
    )
    port = ops_port(app)
    sandbox.control.add_fault("429", next=1, retry_after=0)
    sandbox.control.set_invalid_receivers(["+33612345682"])
    producer = SmsProducer(client=redis_client)

    # When a mix of requests is sent: plain, with a number the worker sets aside, one OVH
    # reports invalid, two countries, none valid (rejected), and a sender OVH refuses (failed)
    ids = [
        producer.send("+33612345678", "Your code is 1234", priority="high", no_stop_clause=True),
        producer.send(["+33612345679", "+33612345680", "12"], "Hello", priority="medium"),
        producer.send(["+33612345681", "+33612345682"], "One invalid at OVH", priority="medium"),
        producer.send(["+32470123456", "+33612345683"], "Two countries", priority="low"),
        producer.send(["hello"], "Nobody", priority="medium"),
        producer.send("+33612345684", "Pending sender", priority="medium", sender="PENDINGSNDR"),
    ]
    results = [producer.wait(request_id, timeout=30) for request_id in ids]
    enqueue_raw(redis_client, "low", "{not json")

    # Then the counters equal the sandbox's own counts and the results published
    statuses = Counter(result.status for result in results)
    assert statuses == {"sent": 4, "rejected": 1, "failed": 1}
    counts = sandbox.control.counters()
    metrics = wait_until(
        lambda: (
            (m := scrape(port)).by("sms_worker_results_total", "status") == statuses
            and m.value("sms_worker_dead_letters_total", queue="sms.low") == 1
            and m
        )
    )
    assert metrics.value("sms_worker_jobs_calls_total") == counts["jobs_calls"] == 6
    assert metrics.by("sms_worker_jobs_calls_total", "outcome") == {"sent": 4, "retried": 1, "failed": 1}
    assert (metrics.value("sms_worker_sms_sent_total"), counts["sms_sent"]) == (6, 6)
    assert metrics.value("sms_worker_credits_used_total") == pytest.approx(counts["credits_debited"])
    assert metrics.by("sms_worker_requests_accepted_total", "lane") == {"high": 1, "medium": 3, "low": 1}
    assert metrics.by("sms_worker_requests_rejected_total", "reason") == {"no_valid_receivers": 1}
    # one observation per call (5 batches), of the receivers each carried to OVH
    assert metrics.value("sms_worker_receivers_per_call_count") == 5
    assert metrics.value("sms_worker_receivers_per_call_sum") == 8
    assert metrics.value("sms_worker_call_duration_seconds_count") == counts["jobs_calls"]
    assert metrics.value("sms_worker_rate_limit_wait_seconds_count") >= counts["jobs_calls"]
    assert metrics.value("sms_worker_ambiguous_calls_total") == 0
    # gauges read from Redis at scrape time
    for lane in LANES:
        assert metrics.has("sms_worker_queue_depth", lane=lane)
        assert metrics.value("sms_worker_staged_receivers", lane=lane) == 0
    assert 0 < metrics.value("sms_worker_rate_limit_current_per_second") <= 200
    assert metrics.value("sms_worker_quota_left_credits", user="marketing") == 100
    # labels never carry a number or a request id
    assert not [s for s in metrics.samples if any("+33" in v or v in ids for v in s.labels.values())]


def test_queue_depth_counts_waiting_messages(make_app, redis_client, sandbox) -> None:
    # Given a pool that consumes only the high lane
    app = make_app(metrics_port=0, metrics_host="127.0.0.1", lanes=["high"])
    # When two requests wait on the low lane, which no worker consumes
    producer = SmsProducer(client=redis_client)
    producer.send("+33612345678", "waiting", priority="low")
    producer.send("+33612345679", "waiting too", priority="low")
    # Then every lane's depth is reported, the low lane's is 2
    metrics = scrape(ops_port(app))
    assert {lane: metrics.value("sms_worker_queue_depth", lane=lane) for lane in LANES} == {
        "high": 0,
        "medium": 0,
        "low": 2,
        "veryLow": 0,
    }


def test_unknown_paths_answer_404(make_app) -> None:
    app = make_app(metrics_port=0, metrics_host="127.0.0.1")
    status, body = get(ops_port(app), "/nope")
    assert status == 404 and "/metrics" in body
