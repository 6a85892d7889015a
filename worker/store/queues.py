"""dramatiq's Redis queues, as the worker uses them: one broker subclass, one consumer subclass.

- **Poison-proof**: dramatiq's own consumer raises when a fetched body is not a message it can
  decode; the consumer thread dies, restarts, and the message (and the good ones fetched with
  it) stay unacked until the process exits, then crash the next worker. Here such a body is
  moved to the queue's dead-letter queue (``lua/poison.lua``) with a log line, and consuming
  goes on.
- **Blocking when idle**: dramatiq's consumer polls an empty queue every ``worker_timeout``;
  this one blocks on the queue list itself (``BLMOVE q q LEFT LEFT``, which moves nothing), so an
  idle worker costs next to nothing and a message is fetched as soon as it arrives.
- **Maintenance on a clock**: dramatiq requeues the messages of dead workers during a random
  share of its fetches; with blocking fetches those are rarer, so ``maintain`` runs it on a
  schedule (the lease thread calls it).
- **Stall-proof**: when Redis stalls (paused, failing over, a partition), a fetch can run on
  Redis while its reply times out here: its messages sit in this live worker's ack set, which no
  other worker requeues, and wait for this process to die. dramatiq's consumer raises, is
  rebuilt and forgets them; this one stays, and once Redis answers again puts back every message
  of its ack set it does not hold. An ack whose reply was lost is retried, never dropped.

The layout is ``contracts.wire``'s (key names through ``worker.store.keys``); nothing else in
the worker writes dramatiq's keys except the Lua ``enqueue`` (``lua/_common.lua``), which writes
the same layout.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, TypedDict

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

from contracts.wire import DRAMATIQ_NAMESPACE
from worker.retries import REDIS_OUTAGE
from worker.store import keys, scripts

log = logging.getLogger(__name__)

#: Longest pause between two heartbeats of an idle consumer (seconds): dramatiq's heartbeat is
#: written by each fetch, and other workers requeue the messages of a broker that stops writing it.
HEARTBEAT_EVERY_S = 4.0
#: Pause of a consumer whose prefetch is full, before it looks again (seconds).
BUSY_PAUSE_S = 0.002
#: Pause of a consumer that lost Redis, before it tries again (seconds).
RETRY_PAUSE_S = 1.0


class _PoisonKeys(TypedDict):
    acks: str  # this broker's ack set for the queue
    messages: str
    dead_letters: str
    dead_letter_messages: str


class _PoisonDocument(TypedDict):
    sha1: str  # of the unreadable body (it may not even be text: JSON cannot carry it)


class _Poison(scripts.Script[_PoisonKeys, _PoisonDocument, list[str]]):
    """The ids dead-lettered."""

    NAME = "poison"
    Keys = _PoisonKeys

    def reply(self, raw: Any) -> list[str]:
        return [scripts.text(m) for m in raw]

    def dead_letter(self, broker_id: str, queue_name: str, body: bytes) -> list[str]:
        names: _PoisonKeys = {
            "acks": keys.acks(broker_id, queue_name),
            "messages": keys.queue_messages(queue_name),
            "dead_letters": keys.dead_letters(queue_name),
            "dead_letter_messages": keys.dead_letter_messages(queue_name),
        }
        return self(names, {"sha1": hashlib.sha1(body).hexdigest()})


class Consumer(_RedisConsumer):  # type: ignore[misc]
    """dramatiq's Redis consumer, poison-proof and blocking when idle (see the module's docstring)."""

    broker: Broker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Redis ids of the messages handed to dramatiq and not acked yet.
        self._held: set[str] = set()
        #: Set when a Redis command failed: some fetched messages may be in the ack set unseen.
        self._unsure = False

    def __next__(self) -> MessageProxy | None:
        try:
            if self._unsure:
                self._put_back_unseen()
            return self._next()
        except REDIS_OUTAGE as exc:
            if not self._unsure:
                log.error("consumer of %s lost Redis (%s); retrying every second", self.queue_name, exc)
            self._unsure = True
            self.message_cache = []  # still in the ack set: put back once Redis answers
            time.sleep(RETRY_PAUSE_S)
            return None

    def _put_back_unseen(self) -> None:
        """Requeue what this worker's ack set holds but dramatiq was never handed (see the module)."""
        fetched = {m.decode() for m in self.broker.client.smembers(keys.acks(self.broker.broker_id, self.queue_name))}
        unseen = sorted(fetched - self._held)
        if unseen:
            # dramatiq's requeue moves an id only if it is still in the ack set: an ack racing
            # this makes it a no-op.
            self.broker.do_requeue(self.queue_name, *unseen)
        self._unsure = False
        log.warning(
            "consumer of %s has Redis back; put back %d message(s) fetched unseen", self.queue_name, len(unseen)
        )

    def ack(self, message: MessageProxy) -> None:
        self._post_process(self.broker.do_ack, message)

    def nack(self, message: MessageProxy) -> None:
        self._post_process(self.broker.do_nack, message)

    def _post_process(self, command: Any, message: MessageProxy) -> None:
        """Ack or nack; in a Redis outage raise ``ConnectionClosed``, which dramatiq retries, the
        message still held meanwhile (its own consumer only does so for connection errors, and
        drops the ack on a timeout). Done, or failed otherwise, the message is no longer held."""
        redis_id = message.options["redis_message_id"]
        outage = False
        try:
            command(self.queue_name, redis_id)
        except REDIS_OUTAGE as exc:
            outage = True
            raise ConnectionClosed(exc) from None
        finally:
            if not outage:
                self.queued_message_ids.discard(message.message_id)
                self._held.discard(redis_id)

    def _next(self) -> MessageProxy | None:
        while True:
            if not self.message_cache:
                if self.outstanding_message_count < self.prefetch:
                    self.message_cache = self.broker.do_fetch(
                        self.queue_name, self.prefetch - self.outstanding_message_count
                    )
                    self._fetched_at = time.monotonic()
                if not self.message_cache:
                    self._wait_for_messages()
                    return None
            data = self.message_cache.pop(0)
            if data is None:  # a body deleted under us (dramatiq issue 266)
                continue
            try:
                message = dramatiq.Message.decode(data)
                message.options["redis_message_id"]  # noqa: B018  (needed to ack it)
            except (dramatiq.errors.DecodeError, KeyError, TypeError) as exc:
                self.broker.dead_letter_unreadable(self.queue_name, data, exc)
                continue
            self.queued_message_ids.add(message.message_id)
            self._held.add(message.options["redis_message_id"])
            return MessageProxy(message)

    def _wait_for_messages(self) -> None:
        """Block until the queue is not empty (``timeout`` ms at most), without taking anything."""
        if self.outstanding_message_count >= self.prefetch:
            # Busy: nothing more may be fetched until a message is acked, which is soon.
            time.sleep(min(self.timeout / 1000, BUSY_PAUSE_S))
            return
        since = time.monotonic() - getattr(self, "_fetched_at", 0.0)
        wait_s = max(min(self.timeout / 1000, HEARTBEAT_EVERY_S - since), 0.0)
        if wait_s > 0:
            queue = keys.queue(self.queue_name)
            self.broker.client.blmove(queue, queue, wait_s, "LEFT", "LEFT")


class Broker(RedisBroker):  # type: ignore[misc]
    """The worker's dramatiq broker (see the module's docstring)."""

    def __init__(self, *, client: redis.Redis, heartbeat_timeout_ms: int, **options: Any) -> None:
        super().__init__(client=client, namespace=DRAMATIQ_NAMESPACE, heartbeat_timeout=heartbeat_timeout_ms, **options)
        self._poison = _Poison(client)
        self.dead_letters = 0

    @property
    def consumer_class(self) -> type[Consumer]:
        return Consumer

    def dead_letter_unreadable(self, queue_name: str, body: bytes, exc: BaseException) -> None:
        moved = self._poison.dead_letter(self.broker_id, queue_name, body)
        self.dead_letters += len(moved)
        cause = exc.__cause__ or exc
        log.error(
            "dead-lettered an unreadable message on %s (%s: %s): ids %s",
            queue_name,
            type(cause).__name__,
            str(cause)[:200],
            ",".join(moved) or "none found",
        )

    def dead_letter(self, queue_name: str, message: dramatiq.Message[Any]) -> None:
        """Put one message into ``queue_name``'s dead-letter queue, as dramatiq's nack would."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.dead_letter_messages(queue_name), message.message_id, message.encode())
            pipe.zadd(keys.dead_letters(queue_name), {message.message_id: current_millis()})
            pipe.execute()
        self.dead_letters += 1

    def maintain(self, queue_names: list[str]) -> None:
        """Run dramatiq's maintenance on each queue now: requeue what dead brokers fetched."""
        dispatch = self.scripts["dispatch"]
        for queue_name in queue_names:
            args = [
                "qsize",
                current_millis(),
                queue_name,
                self.broker_id,
                self.heartbeat_timeout,
                self.dead_message_ttl,
                1,
                self._max_unpack_size(),
            ]
            dispatch(args=args, keys=[self.namespace])


def depth(client: redis.Redis, queue_name: str) -> int:
    """Messages waiting on a queue (what KEDA scales on)."""
    return int(client.llen(keys.queue(queue_name)))
