"""Names on the wire shared by producers, the worker and result consumers.

Requests travel as dramatiq messages on one Redis list per lane; results travel back the same
way on the request's ``reply_to`` queue. Whatever publishes into these queues from another
language writes the same envelope (see README, "The contract").
"""

from __future__ import annotations

from typing import Final

#: Version of the models in ``contracts.models``; bumped on any incompatible change.
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

#: Prefix of the Redis keys the worker keeps per request result, for ``SmsProducer.wait``.
RESULT_KEY_PREFIX = "sms-worker:result:"

#: Most receivers one request may carry; the producer splits longer lists.
MAX_RECEIVERS_PER_REQUEST = 1000

#: Longest message accepted by the contract, in characters: 6 concatenated GSM 03.38 parts.
#: The worker applies the exact rule (parts, encoding, STOP mention) on top of this bound.
MAX_MESSAGE_CHARS = 918


def lane_queue(lane: str) -> str:
    """Queue name of a lane: ``sms.high`` etc."""
    return f"sms.{lane}"


def queue_key(queue_name: str) -> str:
    """Redis list holding a dramatiq queue's message ids (``dramatiq:sms.high``): what autoscalers watch."""
    return f"{DRAMATIQ_NAMESPACE}:{queue_name}"


def accept_actor_name(lane: str) -> str:
    """Name of the accept actor consuming a lane's queue."""
    return f"sms_accept_{lane}"


def result_key(request_id: str) -> str:
    """Redis key holding a request's final result (JSON)."""
    return RESULT_KEY_PREFIX + request_id


def result_ready_key(request_id: str) -> str:
    """Redis list the worker pushes to when a request's result is written (wakes waiters)."""
    return RESULT_KEY_PREFIX + request_id + ":ready"
