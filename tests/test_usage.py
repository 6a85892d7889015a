"""Consumption per period (``sms-worker usage``): counted once at settlement, equal to OVH's records.

The month is spread over days by one clock the test moves: the sandbox's (OVH's
``creationDatetime``) and the worker's usage recording (``build_app(usage_clock=)``); the
report is then compared with what the sandbox recorded, SMS by SMS, and with OVH's listings
through ``--check``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from contracts import SmsProducer
from ovh_sandbox import Sandbox
from tests.campaigns.cli import one_line_error, sms_worker
from tests.conftest import process_env
from tests.lossy import LostReplies, lossy_client
from tests.quota_fixtures import create_user
from tests.waiting import wait_until
from worker.accounting.usage import Period, UsageStore
from worker.app import App, build_app
from worker.attempts import steps
from worker.settings import Settings
from worker.store import keys, scripts

PARIS = ZoneInfo("Europe/Paris")
NOVEMBER = Period(datetime(2026, 11, 1).date(), datetime(2026, 12, 1).date(), PARIS)


def worker_settings(redis_url: str, sandbox: Sandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "ovh_endpoint": sandbox.base_url,
        "service_name": sandbox.service_name,
        "sender": "SANDBOX",
        "linger_ms": {"medium": 100, "low": 100, "veryLow": 100},
        "poll_ms": 200,
        "rate_limit": 200.0,
        "rate_limit_burst": 20,
        "reconcile_grace_s": 0.5,
        "rates_prefetch": ["be", "de"],  # read at start: no request waits for a rate
        **overrides,
    }
    return Settings(**values)


# -- exactly once ----------------------------------------------------------------------------------


class SettleReplies(LostReplies):
    """Loses what it is told to, and counts the settle steps Redis answered (lost or not)."""

    def __init__(self) -> None:
        super().__init__()
        self.settle_sha = hashlib.sha1(steps.Settle.text().encode()).hexdigest()
        self.settles_answered = 0

    def take(self, command: tuple[Any, ...]) -> bool:
        if len(command) > 1 and str(command[0]).upper() == "EVALSHA" and scripts.text(command[1]) == self.settle_sha:
            self.settles_answered += 1
        return super().take(command)


def test_a_settlement_whose_reply_was_lost_is_counted_once(make_app, redis_url, redis_client, sandbox) -> None:
    # Given a worker whose first settlement runs on Redis but whose reply is lost (the worker then
    # runs the step again, as it does through any Redis outage)
    lost = SettleReplies()
    lost.lose(steps.Settle)
    make_app(client=lossy_client(redis_url, lost), rates_prefetch=["be"])
    # When one request is sent
    producer = SmsProducer(client=redis_client)
    request_id = producer.send(
        ["+33612345678", "+32470123456"], "Hello", tag="lost-reply", sender="SANDBOX", no_stop_clause=True
    )
    result = producer.wait(request_id, timeout=30)
    wait_until(lambda: lost.settles_answered >= 2, what="the settlement sent again after its lost reply")
    # Then the reply was lost, and the request's SMS and credits are counted once, as OVH billed them
    assert lost.lost == ["settle"]
    assert result.status == "sent"
    [row] = UsageStore(redis_client).report(sandbox.service_name, _today_period(), "tag")
    billed = sandbox.control.sent()
    assert (row.value, row.sms, row.credits) == ("lost-reply", 2, sum(s["credits"] for s in billed))
    assert row.credits == 2.5  # France 1, Belgium 1.5: the sandbox's rates


def test_a_call_settled_by_a_reconciler_is_counted_once(make_app, redis_client, sandbox) -> None:
    # Given OVH carries a call out and its answer never reaches the worker: a reconciler finds the
    # SMS in OVH's records and settles the call
    make_app(ovh_read_timeout_s=1.0, rates_prefetch=["be"])
    sandbox.control.set_faults(hold_s=5)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    producer = SmsProducer(client=redis_client)
    request_id = producer.send(["+33612345678", "+32470123456"], "Code 1", priority="high", no_stop_clause=True)
    assert producer.wait(request_id, timeout=30).status == "sent"
    # Then its SMS and OVH's credits are counted once, for the account (no user) and its sender
    [row] = UsageStore(redis_client).report(sandbox.service_name, _today_period(), "sender")
    billed = sandbox.control.sent()
    assert len(billed) == 2 and len(sandbox.control.calls()) == 1
    assert (row.value, row.sms, row.credits, row.unknown) == ("SANDBOX", 2, sum(s["credits"] for s in billed), 0)


def _today_period() -> Period:
    """Yesterday to tomorrow in Paris (Redis' clock chose the day; midnight may have passed since)."""
    today = datetime.now(PARIS).date()
    return Period(today - timedelta(days=1), today + timedelta(days=2), PARIS)


# -- the Lua function's bound ----------------------------------------------------------------------


def test_values_past_the_daily_bound_are_counted_together(redis_client: redis.Redis) -> None:
    text = "\n".join([scripts.source(scripts.SHARED, "_common"), scripts.source(scripts.SHARED, "_usage")])
    settled = redis_client.register_script(text + "\nusage_settled(KEYS[1], cjson.decode(ARGV[1]))")
    key = keys.usage("sms-x-1", "2026-11-02")

    def settle(tag: str, sms: int) -> None:
        document = {"user": "", "tag": tag, "sender": "S", "sms": sms, "credits": sms * 1.5, "unknown": 0,
                    "ttl_s": 3600, "max_values": 2}  # fmt: skip
        settled(keys=[key], args=[json.dumps(document)])

    for tag, sms in [("a", 1), ("b", 2), ("c", 3), ("a", 10), ("d", 4)]:
        settle(tag, sms)
    day = Period(datetime(2026, 11, 2).date(), datetime(2026, 11, 3).date(), PARIS)
    rows = {row.value: (row.sms, row.credits) for row in UsageStore(redis_client).report("sms-x-1", day, "tag")}
    assert rows == {"a": (11, 16.5), "b": (2, 3.0), None: (7, 10.5)}
    assert redis_client.hlen(key) <= 3 * (2 + 1) * 3 + 3
    assert 0 < redis_client.ttl(key) <= 3600


# -- a month through the CLI, against the sandbox's records ----------------------------------------


class MonthClock:
    """Unix time the test sets: the sandbox's clock and the worker's usage clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, when: datetime) -> None:
        with self._lock:
            self.now = when.timestamp()


@pytest.fixture
def month(redis_url, redis_client) -> Iterator[tuple[Sandbox, App, MonthClock]]:
    clock = MonthClock()
    # signatures are made with python-ovh's offset from the sandbox's clock when it started: the
    # test moves that clock by days, so any skew is accepted
    with Sandbox(port=0, seed=3, clock=clock, max_skew_s=10**9, delivery_delay_s=(0.1, 0.2)) as sandbox:
        sandbox.control.set_sender(sandbox.service_name, "MyShop", "enable")
        for login in ("alice", "bob"):
            create_user(sandbox, login)
        app = build_app(
            worker_settings(redis_url, sandbox), ovh_credentials=sandbox.credentials, usage_clock=clock
        ).start()
        try:
            yield sandbox, app, clock
        finally:
            app.stop()


#: (instant (UTC), user, tag, sender, receivers, message): around and across November in Paris time.
SENDS: list[tuple[datetime, str | None, str | None, str, list[str], str]] = [
    # 23:30 on October 31 in Paris: October
    (datetime(2026, 10, 31, 22, 30, tzinfo=UTC), "alice", "spring", "SANDBOX", ["+33600000001"], "Hi"),
    # 00:30 on November 1 in Paris (still October 31 in UTC): November
    (datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "alice", "spring", "SANDBOX", ["+33600000002", "+33600000003"], "Hi"),
    (datetime(2026, 10, 31, 23, 30, tzinfo=UTC), None, None, "MyShop", ["+32470000004"], "Hello"),
    (datetime(2026, 11, 10, 9, 0, tzinfo=UTC), "bob", "codes", "SandboxInfo", ["+33600000005"], "Code 1234"),
    (datetime(2026, 11, 10, 9, 0, tzinfo=UTC), "bob", "spring", "MyShop", ["+33600000006", "+4915100000007"], "Sale"),
    (datetime(2026, 11, 17, 14, 0, tzinfo=UTC), None, "codes", "SANDBOX", ["+33600000008"], "x" * 200),
    (datetime(2026, 11, 17, 14, 0, tzinfo=UTC), "alice", None, "SandboxInfo", ["+33600000009"], "Bye"),
    # 23:59:30 on November 30 in Paris: November
    (datetime(2026, 11, 30, 22, 59, 30, tzinfo=UTC), "bob", "codes", "SANDBOX", ["+33600000010"], "Code 9"),
    # 00:00:30 on December 1 in Paris: December
    (datetime(2026, 11, 30, 23, 0, 30, tzinfo=UTC), "bob", "codes", "SANDBOX", ["+33600000011"], "Code 8"),
]


def _send_the_month(sandbox: Sandbox, clock: MonthClock, redis_url: str) -> None:
    producer = SmsProducer(redis_url)
    by_instant: dict[datetime, list[tuple[Any, ...]]] = defaultdict(list)
    for send in SENDS:
        by_instant[send[0]].append(send)
    for instant, sends in by_instant.items():
        clock.set(instant)
        request_ids = [
            producer.send(receivers, message, user=user, tag=tag, sender=sender, no_stop_clause=True)
            for _, user, tag, sender, receivers, message in sends
        ]
        for request_id in request_ids:
            assert producer.wait(request_id, timeout=30).status == "sent"


def _sandbox_month(sandbox: Sandbox, by: str, per_day: bool = False) -> dict[Any, tuple[int, float]]:
    """What the sandbox recorded in November (Paris), per value of ``by`` (and day)."""
    start, end = NOVEMBER.bounds()
    field = {"user": "login", "tag": "tag", "sender": "sender"}[by]
    found: dict[Any, list[float]] = defaultdict(lambda: [0, 0.0])
    for sms in sandbox.control.sent():
        created = datetime.fromtimestamp(sms["created_at"], PARIS)
        if start <= created < end:
            value = sms[field] or ""
            at = (created.date().isoformat(), value) if per_day else value
            found[at][0] += 1
            found[at][1] += sms["credits"]
    return {at: (int(n), credits) for at, (n, credits) in found.items()}


def test_a_months_usage_per_user_tag_and_sender_is_the_sandboxs_record(month, redis_url) -> None:
    sandbox, _app, clock = month
    _send_the_month(sandbox, clock, redis_url)
    env = {**process_env(redis_url, sandbox), "SMS_WORKER_USAGE_TIMEZONE": "Europe/Paris"}
    period = ["--from", "2026-11-01", "--to", "2026-12-01"]
    for by in ("user", "tag", "sender"):
        # When November is reported by user, tag and sender
        done = sms_worker("usage", *period, "--by", by, "--json", env=env)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        # Then each row is what the sandbox recorded in November, Paris time
        reported = {row[by]: (row["sms"], row["credits"]) for row in report["rows"]}
        assert reported == _sandbox_month(sandbox, by), by
        assert report["total"]["sms"] == sum(n for n, _ in reported.values()) == 9
    # And per day
    done = sms_worker("usage", *period, "--by", "user", "--per-day", "--json", env=env)
    reported = {(row["day"], row["user"]): (row["sms"], row["credits"]) for row in json.loads(done.stdout)["rows"]}
    assert reported == _sandbox_month(sandbox, "user", per_day=True)
    assert {day for day, _ in reported} == {"2026-11-01", "2026-11-10", "2026-11-17", "2026-11-30"}
    # And the CSV holds the same rows
    done = sms_worker("usage", *period, "--by", "sender", "--csv", env=env)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {r["sender"]: (int(r["sms"]), float(r["credits"])) for r in rows} == _sandbox_month(sandbox, "sender")
    # And the table says it for people
    done = sms_worker("usage", *period, "--by", "user", env=env)
    assert done.returncode == 0 and "(account)" in done.stdout and "alice" in done.stdout and "total" in done.stdout


def test_the_check_agrees_with_ovhs_listings_and_finds_an_sms_the_worker_did_not_send(month, redis_url) -> None:
    sandbox, _app, clock = month
    _send_the_month(sandbox, clock, redis_url)
    env = process_env(redis_url, sandbox)
    period = ["--from", "2026-11-01", "--to", "2026-12-01"]
    # When the month is checked against OVH, every SMS read for its credits
    for by in ("user", "tag", "sender"):
        done = sms_worker("usage", *period, "--by", by, "--check", "100", "--json", env=env)
        # Then every row OVH can be asked about agrees, credits included
        assert done.returncode == 0, (by, done.stderr)
        check = json.loads(done.stdout)["check"]
        assert check["ovh_period_sms"] == check["worker_sms"] == 9
        checkable = [row for row in check["rows"] if row["agrees"] is not None]
        assert checkable and all(row["agrees"] for row in checkable), check
        assert all(row["ovh_credits"] is not None for row in checkable)
    # When an SMS of the period was sent by someone else (here straight to OVH) with a known tag
    clock.set(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    from tests.quota_fixtures import ovh

    ovh(sandbox).post(
        f"/sms/{sandbox.service_name}/jobs", message="Direct", receivers=["+33600000099"], sender="SANDBOX",
        tag="spring", noStopClause=True,
    )  # fmt: skip
    clock.set(datetime(2026, 12, 2, tzinfo=UTC))  # OVH lists no SMS created after its "now"
    # Then the check says which row differs, and exits 1
    done = sms_worker("usage", *period, "--by", "tag", "--check", env=env)
    assert done.returncode == 1
    assert "disagree on 1 row(s)" in done.stderr, done.stdout
    assert "10 SMS created in the period at OVH, 9 counted by the worker" in done.stdout
    [spring] = [line for line in done.stdout.splitlines() if line.startswith("spring") and "DIFFERS" in line]
    assert spring.split()[1:3] == ["4", "5"]  # the worker's 4 SMS, OVH's 5


def test_usage_mistakes_get_one_line(redis_url, redis_client, sandbox) -> None:
    env = process_env(redis_url, sandbox)
    cases = [
        (["usage", "--from", "2026-13-01"], "--from '2026-13-01' is not a day"),
        (["usage", "--from", "2026-12-01", "--to", "2026-11-01"], "ends (2026-11-01) before it starts"),
        (["usage", "--from", "2020-01-01", "--to", "2026-01-01"], "days at most"),
        (["usage", "--check", "-1"], "--check takes 0 to"),
        (["usage", "--service", "bad/name"], "not an OVH SMS account name"),
    ]
    for args, expected in cases:
        done = sms_worker(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in one_line_error(done), args
    done = sms_worker("usage", env={**env, "SMS_WORKER_USAGE_TIMEZONE": "Mars/Olympus"})
    assert done.returncode == 2 and "unknown time zone 'Mars/Olympus'" in one_line_error(done)
    done = sms_worker("usage", env={**env, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert done.returncode == 1 and "Redis does not answer" in one_line_error(done)
    # An empty period is a table saying so, not an error
    done = sms_worker("usage", "--from", "2026-01-01", "--to", "2026-02-01", env=env)
    assert done.returncode == 0 and "no SMS settled" in done.stdout
