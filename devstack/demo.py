"""``sms-worker demo``: the whole pipeline on this machine, with the same real parts as production.

A private Redis server, the OVH sandbox over HTTP, a worker in this process and the producer:
one one-time code, one broadcast of the same text from 1,000 separate requests, one mail-merge
campaign and one request with invalid numbers. Prints what came back and exits 0 when every
request got exactly one result and the credits add up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from contracts import SendResult, SmsProducer
from devstack.embedded_redis import EmbeddedRedis
from worker.app import build_app
from worker.settings import Settings

BROADCAST_REQUESTS = 1000

CONTACTS = [  # as in OVHcloud's mail-merge example (contacts.csv), with international numbers
    ("+33662000000", "Durant", "Pierre"),
    ("+33662000001", "Dupont", "Jean"),
    ("+33662000002", "Martin", "Claire"),
]


@dataclass
class Scenario:
    name: str
    request_ids: list[str]
    results: list[SendResult]
    calls: int
    seconds: float


def _wait_all(producer: SmsProducer, request_ids: list[str], timeout_s: float) -> list[SendResult]:
    return [producer.wait(request_id, timeout=timeout_s) for request_id in request_ids]


def run_demo() -> int:
    from ovh_sandbox import Sandbox

    logging.getLogger("dramatiq").setLevel(logging.WARNING)
    logging.getLogger("worker.calls").setLevel(logging.WARNING)  # the table says it; no line per call
    with EmbeddedRedis() as redis_server, Sandbox(port=0, seed=7) as sandbox:
        settings = Settings(
            redis_url=redis_server.url,
            ovh_endpoint=sandbox.base_url,
            service_name=sandbox.service_name,
            sender="SANDBOX",
            linger_ms={"medium": 1000},
            quiet_hours_enabled=False,  # the demo runs at any hour: its commercial sends are not held
        )
        print(f"Redis   {redis_server.url} (private, stops with the demo)")
        print(f"Sandbox {sandbox.base_url} (OVH SMS API emulator)")
        print(
            f"Worker  {settings.rate_limit:g} jobs call/s shared by all replicas (OVH fair use; "
            f"SMS_WORKER_RATE_LIMIT), up to {settings.max_receivers_per_call} receivers per call\n"
        )
        app = build_app(settings, ovh_credentials=sandbox.credentials).start()
        try:
            producer = SmsProducer(redis_server.url)
            scenarios = [
                _scenario(
                    "one-time code",
                    sandbox,
                    producer,
                    lambda: [
                        producer.send("+33612345678", "Your code is 482913", priority="high", no_stop_clause=True)
                    ],
                ),
                _scenario(
                    f"broadcast x{BROADCAST_REQUESTS}",
                    sandbox,
                    producer,
                    lambda: [
                        producer.send(
                            f"+336{10_000_000 + n:08d}", "Store closed Monday for inventory.", priority="medium"
                        )
                        for n in range(BROADCAST_REQUESTS)
                    ],
                ),
                _scenario(
                    "mail merge",
                    sandbox,
                    producer,
                    lambda: [
                        producer.send(
                            [number for number, _, _ in CONTACTS],
                            "Hello #firstname# #lastname#, your order ships today.",
                            priority="low",
                            variables={n: {"firstname": f, "lastname": last} for n, last, f in CONTACTS},
                        )
                    ],
                ),
                _scenario(
                    "invalid numbers",
                    sandbox,
                    producer,
                    lambda: [producer.send(["+33612345679", "12", "not-a-number"], "Hello", priority="high")],
                ),
            ]
        finally:
            app.stop()
        return _report(scenarios, sandbox)


def _scenario(name: str, sandbox, producer: SmsProducer, send) -> Scenario:  # type: ignore[no-untyped-def]
    calls_before = sandbox.control.counters()["jobs_calls"]
    started = time.monotonic()
    request_ids = send()
    results = _wait_all(producer, request_ids, timeout_s=60)
    seconds = time.monotonic() - started
    return Scenario(name, request_ids, results, sandbox.control.counters()["jobs_calls"] - calls_before, seconds)


def _report(scenarios: list[Scenario], sandbox) -> int:  # type: ignore[no-untyped-def]
    header = f"{'scenario':<18}{'requests':>9}{'results':>9}  {'statuses':<22}{'sent':>6}{'invalid':>8}"
    header += f"{'API calls':>10}{'credits':>9}{'seconds':>9}"
    print(header)
    print("-" * len(header))
    ok = True
    for s in scenarios:
        statuses: dict[str, int] = {}
        for result in s.results:
            statuses[result.status] = statuses.get(result.status, 0) + 1
        sent = sum(1 for r in s.results for o in r.receivers if o.status == "sent")
        invalid = sum(1 for r in s.results for o in r.receivers if o.status == "invalid")
        credits = sum(r.credits for r in s.results)
        status_text = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        print(
            f"{s.name:<18}{len(s.request_ids):>9}{len(s.results):>9}  {status_text:<22}{sent:>6}{invalid:>8}"
            f"{s.calls:>10}{credits:>9g}{s.seconds:>9.2f}"
        )
        ok &= len(s.results) == len(s.request_ids)
    counters = sandbox.control.counters()
    credits = sum(r.credits for s in scenarios for r in s.results)
    print("-" * len(header))
    print(
        f"sandbox: {counters['jobs_calls']} jobs calls, {counters['sms_sent']} SMS accepted, "
        f"{counters['credits_debited']:g} credits debited; results report {credits:g} credits"
    )
    ok &= abs(counters["credits_debited"] - credits) < 1e-9
    print("OK: one result per request, credits add up" if ok else "MISMATCH: see above")
    return 0 if ok else 1
