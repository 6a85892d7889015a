"""What ``sms-worker usage``'s records cost in Redis: one hash per SMS account and day (``keys.usage``).

Fills one day's hash through the Lua function ``settle.lua`` calls (``usage_settled`` of
``worker/store/lua/_usage.lua``, one call per settled jobs call, each call of one user, tag and
sender) for days of several shapes, and reads ``MEMORY USAGE`` of the hash: bytes per account and
day, and per year (the hashes are kept ``usage_ttl_s``, 400 days by default). Tag names are
``campaign-`` and 16 hex digits, as ``sms-worker campaign send`` makes them.

    python benchmarks/bench_usage_memory.py
"""

from __future__ import annotations

import json
import random

import redis

from devstack.embedded_redis import EmbeddedRedis
from worker.store import keys, scripts

#: (label, API users, tags, senders, jobs calls settled that day)
SHAPES = [
    ("one user, tag and sender", 1, 1, 1, 1_000),
    ("a small team: 5 users, 20 campaigns, 3 senders", 5, 20, 3, 5_000),
    ("a busy account: 20 users, 200 campaigns, 10 senders", 20, 200, 10, 20_000),
    ("the bound: 500 values of each dimension", 500, 500, 500, 3_000),
]


def main() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        text = "\n".join(scripts.source(scripts.SHARED, name) for name in ("_common", "_usage"))
        settled = client.register_script(text + "\nusage_settled(KEYS[1], cjson.decode(ARGV[1]))")
        rng = random.Random(1)
        print(f"{'day of':<55} {'fields':>7} {'bytes':>9} {'400 days':>10}")
        for n, (label, users, tags, senders, calls) in enumerate(SHAPES):
            key = keys.usage("sms-xx11111-1", f"2026-11-{n + 1:02d}")
            for call in range(calls):
                # every value appears at least once, then calls pick values at random
                document = {
                    "user": f"user{call % users if call < users else rng.randrange(users)}",
                    "tag": f"campaign-{(call % tags if call < tags else rng.randrange(tags)):016x}",
                    "sender": f"Sender{call % senders if call < senders else rng.randrange(senders)}",
                    "sms": rng.randint(1, 500),
                    "credits": rng.randint(1, 500) * 1.5,
                    "unknown": 0,
                    "ttl_s": 400 * 86_400,
                    "max_values": keys.USAGE_MAX_VALUES,
                }
                settled(keys=[key], args=[json.dumps(document)])
            size = int(client.memory_usage(key, samples=0) or 0)
            print(f"{label:<55} {client.hlen(key):>7,} {size:>9,} {size * 400 / 1e6:>7.2f} MB")


if __name__ == "__main__":
    main()
