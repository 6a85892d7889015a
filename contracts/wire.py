"""The queue layout: every name and format producers, the worker and result consumers share.

This module is the contract's one statement of how requests and results travel through Redis;
the producer (``contracts.producer``), the worker's broker (``worker.store.queues``), its keys
(``worker.store.keys``), the Lua ``enqueue`` (``worker/store/lua/_common.lua``, checked by
``tests/test_published_payloads.py``) and the tests all take it from here. Written out for
producers in other languages: ``contracts/QUEUES.md``.

- **Queues** are dramatiq's Redis broker layout (``dramatiq.brokers.redis``), namespace
  ``dramatiq``: a queue ``q`` is the list ``dramatiq:q`` of message ids (RPUSH to enqueue,
  consumers LPOP) and the hash ``dramatiq:q.msgs`` of id -> message. dramatiq's delay queue is
  ``q.DQ`` and its dead letters ``dramatiq:q.XQ`` (ids by time, ms) with ``dramatiq:q.XQ.msgs``.
- **Requests** go to the lane's queue ``sms.<lane>`` for the actor ``sms_accept_<lane>``; the
  one argument is a ``SendRequest`` (JSON object) or a pack of them (JSON array).
- **Results and events** come back on the request's ``reply_to`` queue (default
  ``sms-results``) for the actor ``sms_result``, one event a message; a request's final result is
  also kept at ``sms-worker:result:{<request id>}`` and announced on ``sms-worker:ready:{<id>}``.
- **The envelope** is dramatiq's message JSON (``envelope``): ``queue_name``, ``actor_name``,
  ``args`` (one element), ``kwargs`` (``{}``), ``options`` (``redis_message_id``: the id in the
  hash and on the list), ``message_id`` (the same id), ``message_timestamp`` (unix ms).
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import dramatiq
from dramatiq.common import dq_name, xq_name

#: Version of the models in ``contracts.models``; bumped on any incompatible change: a field
#: removed, renamed or retyped, a request made stricter. Additions that a consumer can ignore
#: stay in the version: an optional field, or a status value that only a feature's own users
#: meet (``cancelled``, for rows of a campaign its owner cancelled).
CONTRACT_VERSION: Final = 1

#: Lanes, highest priority first. Each lane is its own queue (``sms.<lane>``) because
#: dramatiq's Redis broker orders by priority only inside one worker's prefetch.
LANES: tuple[str, ...] = ("high", "medium", "low", "veryLow")

#: Lane used when a request names none.
DEFAULT_LANE = "medium"

#: dramatiq's key namespace in Redis (its default; the worker's broker is built with it).
DRAMATIQ_NAMESPACE = "dramatiq"

#: Queue results are published to when a request names no ``reply_to``.
DEFAULT_RESULTS_QUEUE = "sms-results"

#: Actor name carried by result messages; a consuming service registers an actor of this
#: name on its results queue (``contracts.results.results_actor`` does it).
RESULT_ACTOR_NAME = "sms_result"

#: Prefix of the Redis keys the worker and the producer share. Per-request keys wrap the request
#: id in braces (``sms-worker:result:{order-7}``): ids cannot contain braces, so no id can make
#: one request's key equal another's, or another kind of key.
KEY_PREFIX = "sms-worker:"

#: Separator of a split send's part ids (``<id>#1``, ``<id>#2``): request ids cannot contain it,
#: so a part can never collide with a request sent earlier under its own id.
PART_SEPARATOR = "#"

#: Most receivers one request may carry; the producer splits longer lists.
MAX_RECEIVERS_PER_REQUEST = 1000

#: Longest message accepted by the contract, in characters: 6 concatenated GSM 03.38 parts.
#: The worker applies the exact rule (parts, encoding, STOP mention) on top of this bound.
MAX_MESSAGE_CHARS = 918


# -- queue names and actors ----------------------------------------------------------------------


def lane_queue(lane: str) -> str:
    """Queue name of a lane: ``sms.high`` etc."""
    return f"sms.{lane}"


def accept_actor_name(lane: str) -> str:
    """Name of the accept actor consuming a lane's queue."""
    return f"sms_accept_{lane}"


#: dramatiq's delay queue of a queue (``q`` -> ``q.DQ``): messages waiting for their ``eta``
#: (the accept actor's retries go there).
delay_queue = dq_name
#: dramatiq's dead-letter queue of a queue (``q`` -> ``q.XQ``).
dead_letter_queue = xq_name


def is_reserved_queue(name: str) -> bool:
    """Queue names results may not be sent to: the worker's lanes (``sms.*``) and dramatiq's
    delay and dead-letter queues (``*.DQ``, ``*.XQ``)."""
    return name.startswith("sms.") or name in (delay_queue(name), dead_letter_queue(name))


# -- dramatiq's keys ---------------------------------------------------------------------------


def queue_key(queue_name: str, namespace: str = DRAMATIQ_NAMESPACE) -> str:
    """List of a queue's message ids, oldest first (``dramatiq:sms.high``): what autoscalers
    watch. Bounded by what producers queue; results queues by the worker's cap."""
    return f"{namespace}:{queue_name}"


def messages_key(queue_name: str, namespace: str = DRAMATIQ_NAMESPACE) -> str:
    """Hash of a queue's messages, message id -> envelope JSON; an entry leaves when its message
    is acked or dead-lettered."""
    return queue_key(queue_name, namespace) + ".msgs"


def dead_letters_key(queue_name: str, namespace: str = DRAMATIQ_NAMESPACE) -> str:
    """Sorted set of a queue's dead-lettered message ids, scored by when (unix ms); dramatiq
    drops entries older than its ``dead_message_ttl`` (7 days)."""
    return queue_key(dead_letter_queue(queue_name), namespace)


def dead_letter_messages_key(queue_name: str, namespace: str = DRAMATIQ_NAMESPACE) -> str:
    """Hash of a queue's dead letters, message id -> envelope JSON (bounded as ``dead_letters_key``)."""
    return messages_key(dead_letter_queue(queue_name), namespace)


def acks_key(broker_id: str, queue_name: str, namespace: str = DRAMATIQ_NAMESPACE) -> str:
    """Set of message ids one dramatiq broker fetched from a queue and has not acked yet; put back
    on the queue when that broker's heartbeat stops."""
    return f"{namespace}:__acks__.{broker_id}.{queue_name}"


# -- the envelope ------------------------------------------------------------------------------


def envelope(
    queue_name: str, actor_name: str, payload: Any, *, message_id: str | None = None, **options: Any
) -> dramatiq.Message[Any]:
    """dramatiq's message carrying ``payload`` as its one argument, as every queue here holds.

    ``message_id`` (a new UUID by default) is also the ``redis_message_id`` option: the field in
    the ``.msgs`` hash and the id on the list. ``message_timestamp`` is now, in unix ms.
    """
    message_id = message_id or str(uuid.uuid4())
    return dramatiq.Message(
        queue_name=queue_name,
        actor_name=actor_name,
        args=(payload,),
        kwargs={},
        options={"redis_message_id": message_id, **options},
        message_id=message_id,
    )


def request_message(lane: str, payload: Any, **options: Any) -> dramatiq.Message[Any]:
    """The message of one request (a JSON object) or a pack of them (a list) on ``lane``'s queue."""
    return envelope(lane_queue(lane), accept_actor_name(lane), payload, **options)


def enqueue(client: Any, message: dramatiq.Message[Any], namespace: str = DRAMATIQ_NAMESPACE) -> None:
    """Queue ``message`` as dramatiq's ``RedisBroker.enqueue`` does: the body into the queue's
    ``.msgs`` hash, then its id pushed on the queue's list. ``client`` may be a pipeline (both
    commands then cost one round trip with the rest)."""
    message_id = message.options["redis_message_id"]
    client.hset(messages_key(message.queue_name, namespace), message_id, message.encode())
    client.rpush(queue_key(message.queue_name, namespace), message_id)


# -- results -------------------------------------------------------------------------------------


def result_key(request_id: str) -> str:
    """String: a request's final result (``SendResult`` JSON), kept ``SMS_WORKER_RESULT_TTL_S``."""
    return f"{KEY_PREFIX}result:{{{request_id}}}"


def result_ready_key(request_id: str) -> str:
    """List the worker pushes to when a request's result is written: a waiter blocks on it
    (``BLPOP``), then reads ``result_key``. Same TTL as the result."""
    return f"{KEY_PREFIX}ready:{{{request_id}}}"


def group_key(request_id: str) -> str:
    """String: into how many parts ``SmsProducer.send`` split a request (TTL a day)."""
    return f"{KEY_PREFIX}group:{{{request_id}}}"


def part_id(request_id: str, n: int) -> str:
    """Id of the ``n``-th part (from 1) of a split send."""
    return f"{request_id}{PART_SEPARATOR}{n}"
