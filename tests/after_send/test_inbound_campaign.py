"""The campaign statistics a tag's report is built from are fed by the real delivery path: the
sandbox calling ``sms-worker inbound`` back, duplicated and out of order, and a STOP reply."""

from __future__ import annotations

from collections import Counter

import pytest

from contracts import DeliveryReport, OptOut, SmsProducer
from tests.after_send.conftest import TOKEN, callbacks_setup
from tests.helpers import read_events
from tests.waiting import wait_until
from worker.campaigns.stats import CampaignStats

pytestmark = [pytest.mark.timeout(180)]

SN = "sms-sandbox-1"
RECEIVERS = [f"+336{70_000_000 + n:08d}" for n in range(40)]
FAILING = {RECEIVERS[0]: 23, RECEIVERS[1]: 8, RECEIVERS[2]: 24}


def test_delivery_reports_and_a_stop_count_in_the_tags_campaign_statistics(
    make_app, redis_client, sandbox, start_inbound, sandbox_env
) -> None:
    # Given OVH's callbacks pointed at the inbound service, sent twice and out of order
    inbound = start_inbound()
    setup = callbacks_setup({**sandbox_env, "SMS_WORKER_INBOUND_TOKEN": TOKEN}, "--url", inbound.base)
    assert setup.returncode == 0, setup.stderr
    sandbox.control.set_callbacks(duplicates=1, reorder=True)
    sandbox.control.set_failing_receivers(FAILING)
    make_app()
    producer = SmsProducer(client=redis_client)
    # When a tagged campaign goes out, its receipts come back and one receiver answers STOP
    request_id = producer.send(RECEIVERS, "Spring sale: -20%", tag="spring")
    assert producer.wait(request_id, timeout=60).status == "sent"

    def finals() -> dict[str, DeliveryReport]:
        return {e.receiver: e for e in read_events(redis_client) if isinstance(e, DeliveryReport) and e.final}

    reports = wait_until(lambda: len(found := finals()) == len(RECEIVERS) and found, 60)
    sandbox.control.reply(SN, RECEIVERS[5], "STOP")
    wait_until(lambda: [e for e in read_events(redis_client) if isinstance(e, OptOut)])
    # Then the tag's statistics say what the reports said, each SMS once, and one opt-out
    stats = wait_until(lambda: (s := CampaignStats(redis_client, ttl_s=3600).read(SN, "spring")) and s.opt_outs and s)
    assert stats.receivers["sent"] == len(RECEIVERS)
    assert stats.dlr == dict(Counter(r.status for r in reports.values()))
    assert stats.dlr["delivered"] == len(RECEIVERS) - len(FAILING)
    assert sum(stats.ptts.values()) == len(FAILING)
    assert stats.opt_outs == 1
