"""Names on the wire shared by producers, the worker and result consumers.

Requests travel as dramatiq messages on one Redis list per lane; results travel back the same
way on the request's ``reply_to`` queue. Whatever publishes into these queues from another
language writes the same envelope (see README, "The contract").
"""

from __future__ import annotations

from typing import Final

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

#: dramatiq's key namespace in Redis (its default).
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


def lane_queue(lane: str) -> str:
    """Queue name of a lane: ``sms.high`` etc."""
    return f"sms.{lane}"


def queue_key(queue_name: str, namespace: str = DRAMATIQ_NAMESPACE) -> str:
    """Redis list holding a dramatiq queue's message ids (``dramatiq:sms.high``): what autoscalers
    watch. Its bodies are in the hash ``<queue_key>.msgs``."""
    return f"{namespace}:{queue_name}"


def accept_actor_name(lane: str) -> str:
    """Name of the accept actor consuming a lane's queue."""
    return f"sms_accept_{lane}"


def result_key(request_id: str) -> str:
    """Redis key holding a request's final result (JSON)."""
    return f"{KEY_PREFIX}result:{{{request_id}}}"


def result_ready_key(request_id: str) -> str:
    """Redis list the worker pushes to when a request's result is written (wakes waiters)."""
    return f"{KEY_PREFIX}ready:{{{request_id}}}"


def group_key(request_id: str) -> str:
    """Redis key recording into how many parts ``SmsProducer.send`` split a request."""
    return f"{KEY_PREFIX}group:{{{request_id}}}"


def part_id(request_id: str, n: int) -> str:
    """Id of the ``n``-th part (from 1) of a split send."""
    return f"{request_id}{PART_SEPARATOR}{n}"


def is_reserved_queue(name: str) -> bool:
    """Queue names results may not be sent to: the worker's lanes (``sms.*``) and dramatiq's
    delay and dead-letter queues (``*.DQ``, ``*.XQ``)."""
    return name.startswith("sms.") or name.endswith((".DQ", ".XQ"))
