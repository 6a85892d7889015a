"""The worker's own OVH calls: below every send lane of the shared limiter, and what they keep."""

from __future__ import annotations

import pytest

from worker.ovhcloud.background_calls import BackgroundCalls, take_lease
from worker.ovhcloud.blacklist import Blacklist
from worker.ovhcloud.client import make_client
from worker.ovhcloud.gateway import OvhGateway
from worker.ovhcloud.rate_limit import BACKGROUND_LANE, RateLimiter
from worker.store import keys

pytestmark = pytest.mark.timeout(60)

SN = "sms-sandbox-1"


@pytest.fixture
def calls(redis_client, sandbox) -> tuple[BackgroundCalls, list]:
    grants: list = []
    limiter = RateLimiter(redis_client, key="background-test", rate_per_s=50, burst=5, on_grant=grants.append)
    return BackgroundCalls(OvhGateway(lambda: make_client(sandbox.base_url, **sandbox.credentials)), limiter), grants


def test_every_background_call_takes_a_background_slot(calls, sandbox) -> None:
    background, grants = calls
    assert background.get(f"/sms/{SN}/senders") == ["PENDINGSNDR", "SANDBOX", "SandboxInfo"]
    background.get("/sms/ptts", ptt=4)
    assert [g.lane for g in grants] == [BACKGROUND_LANE, BACKGROUND_LANE]


def test_no_slot_no_call(redis_client, sandbox) -> None:
    # Given the shared budget spent by a send (one call every 5 s)
    limiter = RateLimiter(redis_client, key="background-test-2", rate_per_s=0.2, burst=1)
    assert limiter.acquire("high", timeout_s=0)
    background = BackgroundCalls(OvhGateway(lambda: make_client(sandbox.base_url, **sandbox.credentials)), limiter)
    background.acquire_timeout_s = 0.2
    requests_before = sandbox.control.counters()["requests"]
    # Then a background call gives up rather than call OVH
    with pytest.raises(Exception, match="no rate-limit slot"):
        background.get(f"/sms/{SN}/blacklists")
    assert sandbox.control.counters()["requests"] == requests_before


def test_the_blacklist_sync_follows_ovh(calls, redis_client, sandbox) -> None:
    background, _ = calls
    blacklist = Blacklist(redis_client, default_region="FR")
    sandbox.control.add_blacklist(SN, "0033612345678")  # as OVH may spell it
    sandbox.control.add_blacklist(SN, "+33612345679")
    assert blacklist.sync(SN, background) == 2
    assert blacklist.blocked(SN, ["+33612345678", "+33612345679", "+33600000000"], fresh=True) == {
        "+33612345678",
        "+33612345679",
    }
    # When OVH's list changes (a number removed from it: sandbox reset), the next sync follows
    sandbox.control.reset(accounts=True)
    sandbox.control.add_blacklist(SN, "+33612345679")
    blacklist.sync(SN, background)
    assert blacklist.blocked(SN, ["+33612345678", "+33612345679"], fresh=True) == {"+33612345679"}
    assert int(redis_client.get(keys.blacklist_gen(SN))) == 2


def test_one_replica_per_period(redis_client) -> None:
    assert take_lease(redis_client, "blacklist", SN, 60) is True
    assert take_lease(redis_client, "blacklist", SN, 60) is False
    assert take_lease(redis_client, "blacklist", "sms-other-1", 60) is True
