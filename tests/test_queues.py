"""The worker's dramatiq queues when Redis stalls: a fetch whose reply never came back must
not strand its messages (they sit in this live worker's ack set, which nobody else requeues)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq import Worker

from contracts.redis_connection import connect
from devstack.embedded_redis import EmbeddedRedis
from tests.waiting import wait_until
from worker.store import keys
from worker.store.queues import Broker


@pytest.fixture
def stallable_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.resume()
    server.stop()


def test_messages_fetched_while_redis_stalled_are_not_stranded(stallable_redis, caplog) -> None:
    # Given a message queued, and a worker whose Redis replies time out after 1 s
    client = connect(stallable_redis.url, socket_timeout=1.0)
    broker = Broker(client=client, heartbeat_timeout_ms=60_000)
    handled: list[int] = []

    @dramatiq.actor(broker=broker, queue_name="stall", max_retries=0)
    def record(n: int) -> None:
        handled.append(n)

    record.send(1)
    # When Redis stalls as the worker makes its first fetch: the fetch runs on Redis once it
    # resumes (moving the message to this worker's ack set) but its reply is lost
    stallable_redis.pause()
    worker = Worker(broker, worker_threads=1, worker_timeout=200)
    worker.start()
    try:
        wait_until(lambda: "consumer of stall lost Redis" in caplog.text, what="the fetch's reply to be lost")
        stallable_redis.resume()
        # Then the worker still handles the message, once, and acks it
        wait_until(lambda: handled, timeout=15, what="the message to be handled")
        assert handled == [1]
        wait_until(lambda: client.scard(keys.acks(broker.broker_id, "stall")) == 0, timeout=5, what="the ack")
        assert client.llen(keys.queue("stall")) == 0
    finally:
        stallable_redis.resume()
        worker.stop(timeout=2000)
        broker.close()


def test_an_ack_whose_reply_was_lost_is_retried_not_dropped(stallable_redis) -> None:
    # Given a worker handling a message while Redis stalls
    client = connect(stallable_redis.url, socket_timeout=1.0)
    broker = Broker(client=client, heartbeat_timeout_ms=60_000)
    started, release = threading.Event(), threading.Event()

    @dramatiq.actor(broker=broker, queue_name="stall-ack", max_retries=0)
    def slow() -> None:
        started.set()
        release.wait(10)

    slow.send()
    worker = Worker(broker, worker_threads=1, worker_timeout=200)
    worker.start()
    try:
        assert started.wait(10)
        stallable_redis.pause()
        release.set()  # the ack is sent into the stall
        time.sleep(2.5)  # the stall's length: past the client's 1 s socket timeout
        stallable_redis.resume()
        # Then the ack lands: nothing of the message stays in the worker's ack set
        wait_until(lambda: client.scard(keys.acks(broker.broker_id, "stall-ack")) == 0, timeout=10, what="the ack")
    finally:
        stallable_redis.resume()
        worker.stop(timeout=2000)
        broker.close()
