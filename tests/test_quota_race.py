"""Quotas hold across replicas: 4 ``sms-worker run`` processes of 8 threads race for one quota."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from contracts import SendRequest, SmsProducer
from tests.quota_fixtures import alerts, create_user, sandbox_spent
from worker.accounting.quotas import QuotaStore

pytestmark = pytest.mark.slow

Q = 40


def start_replicas(worker_processes, tmp_path, login: str, quota: int, threshold: int) -> None:
    path = tmp_path / "quotas.toml"
    path.write_text(f"[users.{login}]\nquota = {quota}\nalert_threshold = {threshold}\n")
    worker_processes(4, "--threads", "8", SMS_WORKER_QUOTAS_FILE=str(path), SMS_WORKER_LINGER_MS__MEDIUM="20")


def test_single_credit_requests_spend_exactly_the_quota(worker_processes, redis_client, sandbox, tmp_path) -> None:
    # Given 4 replicas sharing one user with a quota of Q credits
    create_user(sandbox, "racer")
    start_replicas(worker_processes, tmp_path, "racer", Q, threshold=Q // 2)
    producer = SmsProducer(client=redis_client)

    # When 3Q single-credit requests arrive at once
    requests = [
        SendRequest(message="Race", receivers=[f"+336130{n:05d}"], user="racer", no_stop_clause=True)
        for n in range(3 * Q)
    ]
    ids = producer.publish(requests)
    results = [producer.wait(request_id, timeout=60) for request_id in ids]

    # Then exactly Q were sent and 2Q refused for the quota, and the sandbox debited exactly Q
    statuses = Counter(r.status if r.error is None else r.error.code for r in results)
    assert statuses == {"sent": Q, "quota_exceeded": 2 * Q}
    assert sandbox_spent(sandbox) == Q
    assert sandbox.control.counters()["credits_debited"] == Q
    assert all(r.error.credits_needed == 1 for r in results if r.error is not None)
    # and the quota shows nothing left, nothing still reserved
    state = QuotaStore(redis_client).get(sandbox.service_name, "racer")
    assert state is not None and (state.quota, state.reserved, state.spent, state.left) == (Q, 0, Q, 0)
    # and the threshold, crossed once by the burst, alerted once
    assert len(alerts(redis_client)) == 1


def test_mixed_sizes_never_spend_above_the_quota(worker_processes, redis_client, sandbox, tmp_path) -> None:
    # Given 4 replicas sharing one user with a quota of Q credits
    create_user(sandbox, "mixed")
    start_replicas(worker_processes, tmp_path, "mixed", Q, threshold=5)
    producer = SmsProducer(client=redis_client)

    # When requests of 1 to 6 credits (1-3 parts, 1-2 receivers), ten times the quota, arrive at once
    rng = random.Random(4)
    texts = {1: "Race", 2: "b" * 200, 3: "c" * 400}  # GSM, no STOP mention: 1, 2 and 3 parts
    requests, sizes = [], {}
    for n in range(120):
        parts, receivers = rng.choice([1, 2, 3]), rng.choice([1, 2])
        request = SendRequest(
            message=texts[parts],
            receivers=[f"+336140{2 * n + i:05d}" for i in range(receivers)],
            user="mixed",
            no_stop_clause=True,
        )
        requests.append(request)
        sizes[request.request_id] = parts * receivers
    ids = producer.publish(requests)
    results = {request_id: producer.wait(request_id, timeout=60) for request_id in ids}

    # Then every request was sent whole or refused whole for the quota
    assert {r.status for r in results.values()} == {"sent", "rejected"}
    refused = [rid for rid, r in results.items() if r.status == "rejected"]
    assert {results[rid].error.code for rid in refused} == {"quota_exceeded"}  # type: ignore[union-attr]
    # and the sandbox never debited more than the quota, exactly what the worker counted spent
    spent = sandbox_spent(sandbox)
    assert spent <= Q
    assert spent == sum(sizes[rid] for rid, r in results.items() if r.status == "sent")
    assert spent == sum(r.credits for r in results.values())
    state = QuotaStore(redis_client).get(sandbox.service_name, "mixed")
    assert state is not None and (state.reserved, state.spent) == (0, spent)
    # and no request was refused that the quota left could still have covered
    assert state.left is not None and state.left < min(sizes[rid] for rid in refused)
    assert len(alerts(redis_client)) == 1
