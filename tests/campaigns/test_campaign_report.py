"""``sms-worker campaign report``: its figures are the sandbox's truth; its page has its charts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.campaigns.cli import COOKBOOK_MESSAGE, e164, one_line_error, sms_worker, write_contacts
from tests.waiting import wait_until
from worker.after_send.ptts import PttLookup
from worker.campaigns import html, report
from worker.campaigns.stats import CampaignStats, TagStats, bucket_upper_s, delay_bucket
from worker.ovhcloud.client import make_client

TAG = "autumn"


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _final_records(ovh: Any, service: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """The sandbox's record of every SMS with the tag, once each has its final receipt."""

    def final() -> list[dict[str, Any]]:
        records = [ovh.get(f"/sms/{service}/outgoing/{i}") for i in ovh.get(f"/sms/{service}/outgoing", tag=TAG)]
        return records if all(r["deliveryReceipt"] in (1, 2) for r in records) else []

    return wait_until(final, timeout_s, "a final receipt for every SMS of the campaign", every=0.5)


def _play_delivery_reports(stats: CampaignStats, records: list[dict[str, Any]]) -> None:
    """What the delivery-report code does with each report, from the sandbox's records; twice, as
    reports may come more than once."""
    for _ in range(2):
        for r in records:
            status = {1: "delivered", 2: "failed"}.get(r["deliveryReceipt"], "pending")
            delivered_at = _unix(r["deliveredAt"]) if r["deliveredAt"] else None
            stats.delivered(
                r["id"], status, ptt=r["ptt"], delivered_at=delivered_at, sent_at=_unix(r["creationDatetime"])
            )


def _play_stop_replies(ovh: Any, stats: CampaignStats, service: str) -> int:
    replies = [ovh.get(f"/sms/{service}/incoming/{i}") for i in ovh.get(f"/sms/{service}/incoming", tag=TAG)]
    stops = [r for r in replies if r["message"].strip().upper() == "STOP"]
    for _ in stops:
        stats.opted_out(service, TAG)
    return len(stops)


def _percentile_edge(delays: list[float], p: int) -> float:
    ordered = sorted(delays)
    return bucket_upper_s(delay_bucket(ordered[max(1, -(-p * len(ordered) // 100)) - 1]))


def test_the_report_equals_the_sandboxs_truth_for_a_campaign_with_failures_and_opt_outs(
    make_app, sandbox, sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a campaign of 30 contacts where OVH refuses one number, two SMS fail for chosen
    # reasons (and the sandbox fails some more on its own), and two receivers answer STOP
    make_app()
    service = sandbox.service_name
    sandbox.control.set_invalid_receivers([e164(5)])
    sandbox.control.set_failing_receivers({e164(3): 23, e164(7): 24})
    contacts = write_contacts(tmp_path / "contacts.csv", 30)
    done = sms_worker("campaign", "send", str(contacts), "--message", COOKBOOK_MESSAGE, "--tag", TAG, env=sandbox_env)
    assert done.returncode == 0, done.stderr
    for n, text in ((1, "STOP"), (2, "stop "), (4, "Merci")):
        sandbox.control.add_incoming(service, e164(n), text, tag=TAG)
    # When the delivery reports and STOP replies are counted, as the delivery-report code will
    ovh = make_client(sandbox.base_url, **sandbox.credentials)
    records = _final_records(ovh, service)
    stats = CampaignStats(redis_client, ttl_s=3600)
    _play_delivery_reports(stats, records)
    stops = _play_stop_replies(ovh, stats, service)
    # And the report is asked for, with a check against OVH and a page
    page = tmp_path / "report.html"
    args = ["campaign", "report", "--tag", TAG, "--json", "--check", "10", "--html", str(page)]
    done = sms_worker(*args, env=sandbox_env)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    # Then every figure is the sandbox's
    receipts = Counter(r["deliveryReceipt"] for r in records)
    delays = [_unix(r["deliveredAt"]) - _unix(r["creationDatetime"]) for r in records if r["deliveryReceipt"] == 1]
    assert got["sent"] == len(records) == 29
    assert (got["delivered"], got["failed"], got["pending"]) == (receipts[1], receipts[2], 0)
    assert {f["ptt"]: f["count"] for f in got["failures"]} == {
        str(ptt): n for ptt, n in Counter(r["ptt"] for r in records if r["deliveryReceipt"] == 2).items()
    }
    assert {"23", "24"} <= {f["ptt"] for f in got["failures"]}
    assert {f["ptt"]: f["duration"] for f in got["failures"]}["24"] == "temporary"
    assert got["invalid"] == 1 and got["requests"] == {"rejected": 1, "sent": 29}
    assert got["opt_outs"] == stops == 2
    assert got["credits"] == sum(r["credits"] for r in records)
    assert got["delivery_s"] == {f"p{p}": _percentile_edge(delays, p) for p in (50, 90, 99)}
    assert sum(n for _, n in ((h["upper_s"], h["count"]) for h in got["delivery_histogram"])) == receipts[1]
    assert sum(m["count"] for m in got["sends_per_minute"]) == 29
    assert (
        got["check"]
        == {
            "ovh_sms": 29,
            "worker_sms": 29,
            "agree": True,
            "sample": got["check"]["sample"],
        }
        and sum(got["check"]["sample"].values()) == 10
    )
    # And the page holds the three charts and loads nothing from elsewhere
    text = page.read_text(encoding="utf-8")
    for chart in ("funnel", "delivery-time", "sends-over-time"):
        assert f'<figure id="{chart}">' in text
    assert text.count("<svg") == 3 and "<script" not in text
    assert html.external_references(text) == []


def _sample_report() -> report.Report:
    stats = TagStats(
        service="sms-sandbox-1",
        tag="spring-sale",
        requests={"sent": 980, "rejected": 20},
        receivers={"sent": 980, "invalid": 20},
        credits=1960.0,
        first_ms=1_760_000_000_000,
        last_ms=1_760_000_000_000 + 9 * 60_000,
        minutes={m: n for m, n in enumerate((60, 120, 130, 125, 110, 115, 120, 100, 60, 40))},
        dlr={"delivered": 900, "failed": 40, "expired": 10},
        ptts={"23": 25, "24": 15, "8": 10},
        delays={2: 100, 3: 400, 4: 250, 5: 100, 7: 40, 9: 10},
        opt_outs=12,
    )

    return report.build(stats, PttLookup(None, None))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_html_report_opens_in_a_headless_browser(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(html.render(_sample_report()), encoding="utf-8")
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1100,2200", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1100, 2200)


def test_html_without_the_plotting_extra_says_how_to_install_it(redis_url: str, tmp_path: Path) -> None:
    # matplotlib made unimportable, as in an install without the report extra
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "matplotlib.py").write_text("raise ImportError(\"No module named 'matplotlib'\")\n")
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": f"{shadow}{os.pathsep}{os.getcwd()}"}
    done = sms_worker("campaign", "report", "--tag", TAG, "--service", "sms-x-1", "--html", "r.html", env=env)
    assert done.returncode == 2
    assert "pip install 'ovh-sms-worker[report]'" in one_line_error(done)


def test_a_tag_the_worker_never_sent_gets_one_line(redis_url: str, redis_client: redis.Redis) -> None:
    env = {**os.environ, "REDIS_URL": redis_url}
    done = sms_worker("campaign", "report", "--tag", "never", "--service", "sms-x-1", env=env)
    assert done.returncode == 1
    assert "no record of tag 'never'" in one_line_error(done)
