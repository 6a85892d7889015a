"""Per-user quotas: configuration, reservation, settlement, alerts, sync from OVH, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from contracts import SmsProducer
from tests.quota_fixtures import alerts, create_user, ovh, sandbox_spent, usages
from worker.accounting.quotas import QuotaStore, UserQuota, load_config
from worker.errors import ConfigurationError
from worker.settings import Settings

TWO_PARTS = "x" * 200  # GSM, 2 parts once over 160


def test_quotas_come_from_a_toml_file_and_env(tmp_path, monkeypatch) -> None:
    path = tmp_path / "quotas.toml"
    path.write_text(
        '[users.alice]\nquota = 100\nalert_threshold = 10\nalert_number = "+33612345678"\n\n'
        '[users.bob]\nquota = 5\n\n[users.ops]\nlogin = "carol"\nservice = "sms-other-1"\n'
    )
    monkeypatch.setenv("SMS_WORKER_QUOTAS_FILE", str(path))
    monkeypatch.setenv("SMS_WORKER_QUOTAS", json.dumps({"bob": {"quota": 7}}))
    monkeypatch.setenv("SMS_WORKER_SERVICE_NAME", "sms-main-1")
    users = {u.login: u for u in load_config(Settings())}
    assert users["alice"] == UserQuota(
        login="alice", service="sms-main-1", quota=100, alert_threshold=10, alert_number="+33612345678"
    )
    assert users["bob"].quota == 7  # env wins over the file
    assert (users["carol"].service, users["carol"].quota) == ("sms-other-1", None)  # no limit

    path.write_text("[users.alice]\nquota = -1\n")
    with pytest.raises(ConfigurationError, match="alice"):
        load_config(Settings())
    path.write_text("[alice]\nquota = 1\n")
    with pytest.raises(ConfigurationError, match=r"\[users.<login>\]"):
        load_config(Settings())


def test_applying_the_same_config_again_changes_nothing(redis_client) -> None:
    store = QuotaStore(redis_client)
    alice = UserQuota(login="alice", service="sms-1", quota=100, alert_threshold=10)
    assert store.apply_config([alice]) == 1
    redis_client.hincrbyfloat("sms-worker:quota:sms-1:alice", "spent", 30)
    # a restarted replica applies the same file: nothing changes
    assert store.apply_config([alice]) == 0
    # OVH's figure, synced, is kept by that restart too
    store.set_from_ovh("sms-1", "alice", {"quotaInformations": {"quotaLeft": 50, "quotaStatus": "active"}})
    assert store.apply_config([alice]) == 0
    state = store.get("sms-1", "alice")
    assert state is not None and (state.quota, state.spent, state.left, state.ovh_quota) == (80, 30, 50, True)
    # a changed entry is applied, keeping what was spent
    assert store.apply_config([alice.model_copy(update={"quota": 200})]) == 1
    state = store.get("sms-1", "alice")
    assert state is not None and (state.quota, state.spent, state.left, state.ovh_quota) == (200, 30, 170, False)


def test_a_request_the_quota_cannot_cover_is_rejected_whole(make_app, redis_client, sandbox) -> None:
    create_user(sandbox, "alice")
    make_app(quotas={"alice": {"quota": 5}})
    producer = SmsProducer(client=redis_client)

    def send(receivers: list[str], text: str) -> object:
        return producer.wait(
            producer.send(receivers, text, user="alice", priority="high", no_stop_clause=True), timeout=30
        )

    # 2 receivers x 2 parts: 4 credits of 5
    assert send(["+33611000001", "+33611000002"], TWO_PARTS).status == "sent"
    # 2 credits when 1 is left: refused whole, saying what it needed and what was left
    refused = send(["+33611000003"], TWO_PARTS)
    assert refused.status == "rejected"
    assert refused.error is not None and refused.error.code == "quota_exceeded"
    assert (refused.error.credits_needed, refused.error.credits_left) == (2, 1)
    assert "alice" in refused.error.message
    # 1 credit still fits
    assert send(["+33611000004"], "Hello").status == "sent"
    state = QuotaStore(redis_client).get(sandbox.service_name, "alice")
    assert state is not None and (state.quota, state.reserved, state.spent, state.left) == (5, 0, 5, 0)
    # and the sends went through OVH's per-user route
    assert {s["login"] for s in sandbox.control.sent()} == {"alice"}
    assert sandbox_spent(sandbox) == 5


def test_destination_rates_price_the_reservation(make_app, redis_client, sandbox) -> None:
    create_user(sandbox, "alice")
    make_app(quotas={"alice": {"quota": 10}}, rates_prefetch=["DE"])
    producer = SmsProducer(client=redis_client)
    # Germany costs 2 credits a part at the sandbox: 2 parts = 4 credits, plus 2 for France
    request_id = producer.send(
        ["+4915123456789", "+33611000001"], TWO_PARTS, user="alice", priority="high", no_stop_clause=True
    )
    assert producer.wait(request_id, timeout=30).credits == 6
    [usage] = usages(redis_client)
    assert (usage.credits_reserved, usage.credits_used, usage.credits_refunded, usage.quota_left) == (6, 6, 0, 4)
    assert sandbox_spent(sandbox) == 6


def test_settlement_refunds_invalid_receivers_and_failed_calls_exactly(make_app, redis_client, sandbox) -> None:
    # Given a user with a quota, and two numbers OVH will report as invalid receivers
    create_user(sandbox, "acct")
    # (sender_check off: this test needs OVH itself to refuse the call that names an unknown sender)
    make_app(quotas={"acct": {"quota": 100}}, linger_ms={"medium": 1500}, retry_attempts=1, sender_check=False)
    sandbox.control.set_invalid_receivers(["+33611111102", "+33611111103"])
    producer = SmsProducer(client=redis_client)
    text = {"user": "acct", "no_stop_clause": True}

    # When three requests share one jobs call, two of their four receivers refused by OVH
    batch = [
        producer.send(["+33611111101", "+33611111102"], "Batch", **text),
        producer.send(["+33611111103"], "Batch", **text),
        producer.send(["+33611111104"], "Batch", **text),
    ]
    batch_results = [producer.wait(request_id, timeout=30) for request_id in batch]
    # and one call fails (OVH refuses its sender), and one answers 500 (maybe carried out: it was
    # not, so reconciliation proves it absent and it is sent again, once)
    failed = producer.wait(producer.send("+33611111105", "Nope", sender="NOPE", priority="high", **text), 30)
    sandbox.control.add_fault("500", next=1)
    reconciled = producer.wait(producer.send("+33611111106", "Maybe", priority="high", **text), 30)

    # Then the batch was one call, and each result says what happened
    assert sandbox.control.calls()[0]["receivers"] == 4
    assert [r.status for r in batch_results] == ["sent", "rejected", "sent"]
    assert [o.status for o in batch_results[0].receivers] == ["sent", "invalid"]
    assert (failed.status, reconciled.status) == ("failed", "sent")
    assert [s["receiver"] for s in sandbox.control.sent()].count("+33611111106") == 1
    # and the credits add up: used = OVH's debits; invalid receivers and the failed call refunded
    events = usages(redis_client)
    assert math.isclose(sum(u.credits_used for u in events), sandbox_spent(sandbox))
    assert sandbox_spent(sandbox) == 3
    assert sum(u.credits_reserved for u in events) == 6
    assert sum(u.credits_refunded for u in events) == 3  # 2 invalid + 1 failed
    assert sum(u.credits_unconfirmed for u in events) == 0
    for usage in events:
        assert usage.credits_reserved == usage.credits_used + usage.credits_refunded + usage.credits_unconfirmed
        assert usage.user == "acct" and usage.quota_left is not None
    assert events[-1].quota_left == 97
    state = QuotaStore(redis_client).get(sandbox.service_name, "acct")
    assert state is not None and (state.reserved, state.spent, state.left) == (0, 3, 97)


def test_a_burst_across_the_alert_threshold_alerts_once(make_app, redis_client, sandbox) -> None:
    # Given a user with 100 credits, alerted at 50 left, with an alert number
    create_user(sandbox, "alice")
    quota = {"quota": 100, "alert_threshold": 50, "alert_number": "+33699999999"}
    make_app(quotas={"alice": quota}, threads=8)
    producer = SmsProducer(client=redis_client)

    # When 80 single-credit requests arrive at once
    def burst(first: int, n: int) -> list[str]:
        numbers = [f"+336120{first + i:05d}" for i in range(n)]
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda r: producer.send(r, "Hi", user="alice", no_stop_clause=True), numbers))
        assert {producer.wait(request_id, timeout=30).status for request_id in ids} == {"sent"}
        return ids

    burst(0, 80)

    # Then exactly one QuotaAlert was published, at the crossing (51 -> 50 left)
    [alert] = alerts(redis_client)
    assert (alert.user, alert.quota, alert.alert_threshold, alert.quota_left) == ("alice", 100, 50, 50)
    assert alert.alert_id == f"{sandbox.service_name}/alice/1"
    # and one alert SMS went to the alert number, as a deduplicated high-priority request
    assert alert.alert_request_id is not None
    assert producer.wait(alert.alert_request_id, timeout=30).status == "sent"
    [sms] = sandbox.control.sent(receiver="+33699999999")
    assert "alice" in sms["message"] and "50 credits left" in sms["message"] and sms["priority"] == "high"
    assert sms["login"] is None  # paid by the account, as OVH's own alert SMS

    # When the quota is raised above the threshold again, the next crossing alerts again
    QuotaStore(redis_client).apply_config(
        [UserQuota(login="alice", service=sandbox.service_name, quota=200, alert_threshold=50)]
    )
    burst(100, 80)
    assert [a.alert_id for a in alerts(redis_client)] == [f"{sandbox.service_name}/alice/{n}" for n in (1, 2)]
    assert alerts(redis_client)[1].alert_number is None  # no number any more: no SMS


def test_the_account_check_refuses_what_creditsleft_cannot_pay(make_app, redis_client, sandbox) -> None:
    # Given an account with 1 credit left, and a user whose quota OVH holds (synced)
    create_user(sandbox, "held", quotaInformations={"quotaStatus": "active", "quotaLeft": 10})
    sandbox.control.set_credits(sandbox.service_name, 1)
    make_app()
    QuotaStore(redis_client).set_from_ovh(
        sandbox.service_name, "held", ovh(sandbox).get(f"/sms/{sandbox.service_name}/users/held")
    )
    producer = SmsProducer(client=redis_client)
    # When a 2-credit request is sent on the account
    refused = producer.wait(producer.send("+33611000001", TWO_PARTS, priority="high", no_stop_clause=True), 30)
    # Then it is refused before OVH is called, saying why
    assert refused.status == "rejected"
    assert refused.error is not None and refused.error.code == "account_credits_exhausted"
    assert (refused.error.credits_needed, refused.error.credits_left) == (2, 1)
    # while the user OVH pays from its own quota can still send
    held = producer.send("+33611000002", TWO_PARTS, user="held", priority="high", no_stop_clause=True)
    assert producer.wait(held, timeout=30).status == "sent"
    assert sandbox.control.counters()["jobs_calls"] == 1


def test_quotas_sync_and_show_through_the_cli(redis_client, sandbox_env, sandbox) -> None:
    # Given a user whose quota and alert threshold are set at OVH
    create_user(
        sandbox,
        "bob",
        quotaInformations={"quotaStatus": "active", "quotaLeft": 30},
        alertThresholdInformations={"alertThreshold": 10, "alertNumber": "+33600000001", "support": "sms"},
    )
    create_user(sandbox, "eve")  # no quota at OVH
    env = sandbox_env

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", "quotas", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # When the quotas are synced from OVH
    table = cli("sync")
    # Then each user's quota, reserved, spent and left are shown
    assert table.split("\n")[0].split() == [
        "SERVICE",
        "USER",
        "QUOTA",
        "RESERVED",
        "SPENT",
        "LEFT",
        "ALERT",
        "AT",
        "ALERT",
    ]
    assert table.split("\n")[1].split() == [sandbox.service_name, "bob", "30", "0", "0", "30", "10", "armed"]
    assert table.split("\n")[2].split() == [sandbox.service_name, "eve", "-", "0", "0", "-", "-", "-"]
    [bob, eve] = json.loads(cli("--json"))
    assert (bob["quota"], bob["left"], bob["threshold"], bob["alert_number"], bob["ovh_quota"]) == (
        30,
        30,
        10,
        "+33600000001",
        True,
    )
    assert (eve["quota"], eve["ovh_quota"]) == (None, False)
