"""``campaign send --via bulk``: receivers documents served by ``sms-worker inbound``, one jobs call
each, against a worker and the sandbox over HTTP; pause, resume, cancel and the breaker."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.after_send.conftest import TOKEN, callbacks_setup
from tests.campaigns.cli import COOKBOOK_MESSAGE, e164, merged, one_line_error, sms_worker, write_contacts
from tests.waiting import wait_until
from worker.store import keys


def bulk_calls(sandbox: Any) -> list[dict[str, Any]]:
    """The sandbox's jobs calls that sent a document (their SMS are created afterwards)."""
    with sandbox.state.lock:
        return [c for c in sandbox.state.calls.values() if c["receivers"] == 0 and c["status"] == 200]


@pytest.fixture
def bulk_env(sandbox_env: dict[str, str], start_inbound: Any, sandbox: Any) -> dict[str, str]:
    """Inbound running and wired as the account's callbacks; the CLI's environment for bulk mode.
    Quiet hours are off: these tests must not depend on the hour they run at."""
    inbound = start_inbound()
    env = {
        **sandbox_env,
        "SMS_WORKER_INBOUND_TOKEN": TOKEN,
        "SMS_WORKER_INBOUND_PUBLIC_URL": inbound.base,
        "SMS_WORKER_QUIET_HOURS_ENABLED": "false",
        "SMS_WORKER_SENDER": "SANDBOX",
    }
    done = callbacks_setup(env, "--url", inbound.base, "--no-users")
    assert done.returncode == 0, done.stderr
    return env


def bulk_app(make_app: Any, env: dict[str, str], **overrides: Any) -> Any:
    from pydantic import SecretStr

    return make_app(
        inbound_public_url=env["SMS_WORKER_INBOUND_PUBLIC_URL"],
        inbound_token=SecretStr(TOKEN),
        quiet_hours_enabled=False,
        rate_limit=1.0,
        rate_limit_burst=1,
        **overrides,
    )


def send(path: Path, env: dict[str, str], *more: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return sms_worker(
        "campaign", "send", str(path), "--message", COOKBOOK_MESSAGE, "--tag", "spring", "--via", "bulk",
        "--json", *more, env=env, timeout=timeout,
    )  # fmt: skip


def test_every_row_reaches_its_receiver_once_with_its_merged_text_in_a_few_jobs_calls(
    make_app, sandbox, bulk_env, tmp_path: Path
) -> None:
    # Given documents of 7 rows, and 20 good contacts plus a duplicate, two rows OVH would refuse
    # in a document (a ';' cannot be carried; 'ë' is not GSM 03.38) and a row without a number
    bulk_app(make_app, bulk_env)
    bulk_env = {**bulk_env, "SMS_WORKER_BULK_DOCUMENT_ROWS": "7"}
    extra = (
        '0662000003 ;Again ;Dup ;1 rue\n0662000050 ;Semi ;Colon ;"1; rue"\n ;None ;Nobody ;1 rue\n'
        "0662000051 ;Noël ;Zoë ;1 rue\n"
    )
    contacts = write_contacts(tmp_path / "contacts.csv", 20, extra=extra)
    # When it is sent in bulk mode
    done = send(contacts, bulk_env, "--timeout", "60")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # Then three jobs calls (one per document) sent every good row, once, with its own text and the tag
    assert len(bulk_calls(sandbox)) == 3
    sent = sandbox.control.sent()
    assert Counter(s["receiver"] for s in sent) == Counter({e164(n): 1 for n in range(20)})
    assert {s["receiver"]: s["message"] for s in sent} == {e164(n): merged(n) for n in range(20)}
    assert {s["tag"] for s in sent} == {"spring"}
    # And each row has its result, from the delivery callbacks, with OVH's SMS id
    assert summary["via"] == "bulk" and summary["documents"] == 3
    assert summary["results"] == {"sent": 20} and summary["waiting"] == 0 and summary["rejected"] == 4
    rejects = Path(summary["rejects_file"]).read_text(encoding="utf-8")
    assert "outside the GSM 03.38 alphabet" in rejects and "holds ; a quote or a line break" in rejects
    assert summary["credits"] == pytest.approx(sum(s["credits"] for s in sent))
    # And the documents are served only to who has the token and the secret, and only read
    base = bulk_env["SMS_WORKER_INBOUND_PUBLIC_URL"]
    assert requests.get(f"{base}/ovh/wrong-token-0123456789/receivers/{'0' * 32}.csv", timeout=5).status_code == 404
    assert requests.get(f"{base}/ovh/{TOKEN}/receivers/{'0' * 32}.csv", timeout=5).status_code == 404
    assert requests.get(f"{base}/ovh/{TOKEN}/receivers/secret.csv", timeout=5).status_code == 404
    # And running it again sends nothing and makes no call
    again = send(contacts, bulk_env, "--timeout", "10")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["results"] == {"sent": 20}
    assert len(bulk_calls(sandbox)) == 3 and len(sandbox.control.sent()) == 20


def test_a_campaign_killed_during_its_jobs_call_and_run_again_makes_no_second_job(
    worker_processes, sandbox, bulk_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a worker process whose jobs call OVH carries out but never answers
    env = {"SMS_WORKER_LEASE_S": "2", "SMS_WORKER_RECONCILE_GRACE_S": "1", "SMS_WORKER_QUIET_HOURS_ENABLED": "false"}
    env |= {k: v for k, v in bulk_env.items() if k.startswith("SMS_WORKER_INBOUND")}
    sandbox.control.set_faults(hold_s=60)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    [first] = worker_processes(1, **env)
    contacts = write_contacts(tmp_path / "contacts.csv", 12)
    queued = send(contacts, bulk_env, "--no-wait")
    assert queued.returncode == 0, queued.stderr
    # When the worker is killed while the call hangs (OVH has created the SMS meanwhile)
    wait_until(lambda: len(bulk_calls(sandbox)) == 1 or len(sandbox.control.sent()) == 12, timeout=30)
    wait_until(lambda: len(sandbox.control.sent()) == 12, timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # And another worker starts, and the campaign is run again
    worker_processes(1, **env)
    again = send(contacts, bulk_env, "--timeout", "60")
    # Then the document was reconciled from OVH's records (an SMS with the tag), never sent twice
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["results"] == {"sent": 12}
    with sandbox.state.lock:
        jobs = [c for c in sandbox.state.calls.values() if c["receivers"] == 0]
    assert len(jobs) == 1
    assert Counter(s["receiver"] for s in sandbox.control.sent()) == Counter({e164(n): 1 for n in range(12)})
    assert redis_client.hget(keys.bulk_attempt(json.loads(again.stdout)["campaign_id"], 0), "state") == b"sent"


def test_pause_stops_new_calls_resume_goes_on_and_cancel_ends_the_rest_cancelled(
    make_app, sandbox, bulk_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a campaign of 5 documents of 4 rows, queued and paused before any worker runs
    bulk_env = {**bulk_env, "SMS_WORKER_BULK_DOCUMENT_ROWS": "4"}
    contacts = write_contacts(tmp_path / "contacts.csv", 20)
    queued = send(contacts, bulk_env, "--no-wait")
    assert queued.returncode == 0, queued.stderr
    campaign_id = json.loads(queued.stdout)["campaign_id"]
    paused = sms_worker("campaign", "pause", "--tag", "spring", env=bulk_env)
    assert paused.returncode == 0, paused.stderr
    # When a worker sending one call a second runs while it is paused, it makes no call
    app = bulk_app(make_app, bulk_env)
    wait_until(lambda: app.bulk.run_once() is not None)  # a whole round of the bulk loop, paused
    assert not bulk_calls(sandbox)
    # When resumed, it sends
    resumed = sms_worker("campaign", "resume", f"campaign-{campaign_id}", env=bulk_env)
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: len(bulk_calls(sandbox)) >= 1, timeout=30)
    # When cancelled, nothing more is sent and every row not sent ends cancelled
    cancelled = sms_worker("campaign", "cancel", "--tag", "spring", "--json", env=bulk_env)
    assert cancelled.returncode == 0, cancelled.stderr
    calls_at_cancel = len(bulk_calls(sandbox))
    status = json.loads(sms_worker("campaign", "status", "--tag", "spring", "--json", env=bulk_env).stdout)
    assert status["state"] == "cancelled"
    record = redis_client.hgetall(keys.bulk_campaign(campaign_id))
    assert int(record.get(b"rows_cancelled", 0)) + 4 * calls_at_cancel >= 20
    # And a re-run says it was cancelled, in one line
    rerun = send(contacts, bulk_env, "--timeout", "5")
    assert "was cancelled" in one_line_error(rerun)
    assert len(bulk_calls(sandbox)) == calls_at_cancel


def test_the_breaker_pauses_a_campaign_whose_sms_fail_and_says_why(
    make_app, sandbox, bulk_env, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    # Given a campaign of 5 documents of 4 rows whose every receiver fails (ptt 23), and a
    # breaker tripping at half of at least 4 outcomes
    sandbox.control.set_failing_receivers([e164(n) for n in range(20)], ptt=23)
    app = bulk_app(make_app, bulk_env, breaker_threshold=0.5, breaker_min_outcomes=4)
    env = {**bulk_env, "SMS_WORKER_BULK_DOCUMENT_ROWS": "4"}
    contacts = write_contacts(tmp_path / "contacts.csv", 20)
    # When it is sent, one document a second
    queued = send(contacts, env, "--no-wait")
    assert queued.returncode == 0, queued.stderr

    def status() -> dict[str, Any]:
        return json.loads(sms_worker("campaign", "status", "--tag", "spring", "--json", env=env).stdout)

    # Then it is paused by the breaker before its last documents, with the reason, a log line and the metric
    found = wait_until(lambda: (s := status())["state"].startswith("paused") and s, timeout=60)
    assert found["state"] == "paused (by breaker)" and "failed in the last" in found["breaker"]
    assert len(bulk_calls(sandbox)) < 5
    assert any("paused by the circuit breaker" in r.getMessage() for r in caplog.records)
    assert app.telemetry.metrics.breaker_trips._value.get() == 1


def test_a_commercial_bulk_campaign_due_on_a_sunday_is_held_until_monday_8_00(
    redis_url, sandbox, bulk_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from tests.test_quiet_hours import clock_at, paris
    from worker.app import build_app
    from worker.settings import Settings

    # Given a worker whose clock reads a Sunday noon, quiet hours on
    settings = Settings(
        redis_url=redis_url,
        ovh_endpoint=sandbox.base_url,
        service_name=sandbox.service_name,
        sender="SANDBOX",
        inbound_public_url=bulk_env["SMS_WORKER_INBOUND_PUBLIC_URL"],
        inbound_token=SecretStr(TOKEN),
    )
    app = build_app(settings, ovh_credentials=sandbox.credentials, clock=clock_at(paris(2025, 6, 15, 12, 0))).start()
    try:
        # When a commercial campaign is sent in bulk
        queued = send(write_contacts(tmp_path / "contacts.csv", 6), bulk_env, "--no-wait")
        assert queued.returncode == 0, queued.stderr
        campaign_id = json.loads(queued.stdout)["campaign_id"]
        # Then the worker holds its document until Monday 08:00 (no call), and its status says so
        key = keys.bulk_campaign(campaign_id)
        wait_until(lambda: redis_client.hget(key, "deferred_until"), timeout=30)
        [(_, due_ms)] = redis_client.zrange(keys.BULK_DUE, 0, -1, withscores=True)
        assert abs(due_ms / 1000 - time.time() - 20 * 3600) < 60
        assert not bulk_calls(sandbox)
        status = json.loads(sms_worker("campaign", "status", f"campaign-{campaign_id}", "--json", env=bulk_env).stdout)
        assert "quiet hours: goes at" in status["held"]
    finally:
        app.stop()
