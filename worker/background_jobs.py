"""What ``sms-worker run`` keeps up to date beside sending, and how the accept stage uses it.

- the policy checks of the accept stage (``worker.intake.policy``): senders and blacklist, kept
  in memory from Redis caches;
- background jobs (threads, each OVH call under the rate limiter's background lane, leased so
  one replica does each per period): the senders cache and the default sender's check, the
  blacklist sync, OVH's ptt descriptions, and in pull mode the receipt and incoming pollers.
"""

from __future__ import annotations

import redis

from worker.after_send.ptts import PttTable, ask_for_wanted, fetch_wanted
from worker.after_send.publish import Publisher
from worker.after_send.pull import IncomingPoller, ReceiptPoller
from worker.intake.policy import Policy
from worker.ovhcloud.background_calls import BackgroundCalls, take_lease
from worker.ovhcloud.blacklist import Blacklist
from worker.ovhcloud.senders import Senders
from worker.runners import Background, Periodic
from worker.settings import Settings
from worker.store import keys

#: How often each job looks whether it has work (seconds): the leases and caches decide whether
#: it calls OVH.
SENDERS_EVERY_S = 5.0
BLACKLIST_EVERY_S = 5.0
PTTS_EVERY_S = 30.0


def build(settings: Settings, client: redis.Redis, calls: BackgroundCalls) -> tuple[Policy, Background]:
    """The accept stage's policy and the worker's background jobs (started with the dispatchers)."""
    blacklist = Blacklist(client, default_region=settings.default_region)
    senders = Senders(client, ttl_s=settings.sender_cache_ttl_s)
    policy = Policy(settings, blacklist=blacklist, senders=senders)

    first_round = [True]

    def senders_round() -> None:
        senders.round(policy.services(), calls)
        if first_round[0]:
            first_round[0] = False
            senders.check_default(settings.service_name, settings.sender, calls)

    def blacklist_round() -> None:
        for service in policy.services():
            if take_lease(client, "blacklist", service, settings.blacklist_sync_s):
                blacklist.sync(service, calls)

    def ptts_round() -> None:
        fetch_wanted(client, calls, ttl_s=settings.ptt_cache_ttl_s, period_s=PTTS_EVERY_S)

    jobs = [
        Periodic("senders", senders_round, SENDERS_EVERY_S),
        Periodic("blacklist", blacklist_round, min(BLACKLIST_EVERY_S, settings.blacklist_sync_s)),
        Periodic("ptts", ptts_round, PTTS_EVERY_S),
    ]
    if settings.delivery_mode == "pull":
        ptts = PttTable()
        publisher = Publisher.from_settings(client, ptts, settings)
        receipts = ReceiptPoller(settings, client, calls, publisher)
        incoming = IncomingPoller(settings, client, calls, publisher, policy.services)

        def receipts_round() -> float:
            ptts.load(client.hgetall(keys.PTTS))
            wanted = ptts.take_wanted()
            if wanted:
                with client.pipeline(transaction=False) as pipe:
                    ask_for_wanted(pipe, wanted)
                    pipe.execute()
            return receipts.run_once()

        jobs += [
            Periodic("pull-receipts", receipts_round, 1.0),
            Periodic("pull-incoming", incoming.run_once, min(settings.pull_incoming_s, 60.0)),
        ]
    return policy, Background(jobs)
