"""``SmsProducer``: publish send requests, and wait for their results.

A request is validated here first (a bad one raises ``pydantic.ValidationError`` naming the
field, before anything is queued), then written as a dramatiq message onto its lane's queue.
Enqueueing writes the queue layout of ``contracts.wire`` (dramatiq's envelope and Redis
``enqueue``) in one pipeline, so thousands of requests cost one round trip;
``tests/test_producer.py`` checks a real dramatiq worker consumes what it writes.

``publish`` packs consecutive requests of the same lane into one queue message (a JSON array,
up to ``PACK_MAX_REQUESTS`` requests and ``PACK_MAX_RECEIVERS`` receivers): the worker then
pays its per-message costs (broker round trips, dispatch to a thread) once per pack. Each
request of a pack is still accepted, deduplicated and answered on its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

import redis

from .models import BASE_REQUEST_ID_PATTERN, ErrorInfo, SendRequest, SendResult, new_request_id
from .redis_connection import connect
from .wire import (
    DRAMATIQ_NAMESPACE,
    MAX_RECEIVERS_PER_REQUEST,
    enqueue,
    group_key,
    part_id,
    request_message,
    result_key,
    result_ready_key,
)

_BASE_REQUEST_ID = re.compile(BASE_REQUEST_ID_PATTERN)

#: How long the split record lives, seconds (as long as results are kept by default).
GROUP_TTL_S = 86_400

#: Requests a streamed ``send`` builds before queueing them (bounds its memory).
STREAM_PUBLISH_REQUESTS = 100

#: Most requests, and receivers, packed into one queue message by ``publish``.
PACK_MAX_REQUESTS = 100
PACK_MAX_RECEIVERS = 1000


class ResultTimeout(TimeoutError):
    """No result arrived for the request within the timeout."""


class NotReplicated(redis.RedisError):
    """The requests were queued on the primary, but fewer replicas than ``wait_replicas``
    acknowledged them within ``wait_timeout_ms``: a failover now could lose them. Nothing is
    undone; publishing the same requests again (same ids) is safe, the worker keeps one of each."""


class SmsProducer:
    """Publishes ``SendRequest`` messages into Redis for the worker.

    ``redis_url`` or an existing ``client``; the worker must use the same Redis
    (``contracts.redis_connection``: standalone, Sentinel, TLS, ACL).

    ``wait_replicas``: after each publish, Redis' ``WAIT`` for that many replicas to hold what
    was queued, up to ``wait_timeout_ms``; ``NotReplicated`` when fewer did (see its docstring).
    It bounds what an asynchronous failover can lose of the producer's requests (README, "Redis").
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: redis.Redis | None = None,
        max_receivers_per_request: int = MAX_RECEIVERS_PER_REQUEST,
        namespace: str = DRAMATIQ_NAMESPACE,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        if client is None:
            if not redis_url:
                raise ValueError("SmsProducer needs redis_url or client")
            client = connect(redis_url)
        if not 1 <= max_receivers_per_request <= MAX_RECEIVERS_PER_REQUEST:
            raise ValueError(f"max_receivers_per_request must be within 1..{MAX_RECEIVERS_PER_REQUEST}")
        self.redis = client
        self.max_receivers_per_request = max_receivers_per_request
        self.namespace = namespace
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms

    def send(self, to: str | Iterable[str], message: str, *, request_id: str | None = None, **fields: Any) -> str:
        """Queue one send and return its request id.

        ``fields`` are the other ``SendRequest`` fields (``user``, ``priority``, ``variables``,
        ``sender``, ``tag``, ``metadata``, ...). More receivers than ``max_receivers_per_request``
        are split into requests ``<id>#1``, ``<id>#2``, ... (``#`` is reserved for parts, so no
        part takes the id of an earlier request); ``wait(<id>)`` then gathers their results into
        one. ``to`` may be any iterable (a generator reading a file): it is read and
        queued a chunk at a time, so a campaign of millions of receivers never sits in memory.
        If a chunk is invalid, the parts before it are already queued (the group records them).
        """
        request_id = request_id or new_request_id()
        if not _BASE_REQUEST_ID.match(request_id):
            raise ValueError(
                f"request_id {request_id!r}: 1 to 128 of A-Z a-z 0-9 . _ : / @ - (# is reserved for split parts)"
            )
        variables = fields.pop("variables", None)
        size = self.max_receivers_per_request
        receivers = iter([to] if isinstance(to, str) else to)

        def build(part_id: str, chunk: list[str]) -> SendRequest:
            part_vars = None if variables is None else {r: variables[r] for r in chunk if r in variables}
            return SendRequest(request_id=part_id, message=message, receivers=chunk, variables=part_vars, **fields)

        first, second = list(islice(receivers, size)), list(islice(receivers, size))
        if not second:
            self.publish([build(request_id, first)])
            return request_id
        chunks = chain([first, second], iter(lambda: list(islice(receivers, size)), []))
        parts, pending = 0, list[SendRequest]()
        try:
            for chunk in chunks:
                pending.append(build(part_id(request_id, parts + len(pending) + 1), chunk))
                if len(pending) >= STREAM_PUBLISH_REQUESTS:
                    self.publish(pending)
                    parts, pending = parts + len(pending), []
            self.publish(pending)
            parts, pending = parts + len(pending), []
        finally:
            if parts:
                self.redis.set(group_key(request_id), parts, ex=GROUP_TTL_S)
        return request_id

    def publish(self, requests: Iterable[SendRequest]) -> list[str]:
        """Queue already built requests in one pipeline, packed by lane; returns their ids in order."""
        ids: list[str] = []
        with self.redis.pipeline(transaction=False) as pipe:
            for pack in _packs(requests):
                payloads = [request.model_dump(mode="json", exclude_none=True) for request in pack]
                message = request_message(pack[0].lane, payloads[0] if len(payloads) == 1 else payloads)
                enqueue(pipe, message, self.namespace)
                ids += [request.request_id for request in pack]
            if self.wait_replicas and ids:  # on the same connection: WAIT counts what it wrote
                pipe.wait(self.wait_replicas, self.wait_timeout_ms)
            replies = pipe.execute()
        if self.wait_replicas and ids and int(replies[-1]) < self.wait_replicas:
            raise NotReplicated(
                f"{len(ids)} request(s) queued, but {int(replies[-1])} of {self.wait_replicas} replica(s) "
                f"acknowledged them within {self.wait_timeout_ms} ms: publish them again (same ids) to be sure"
            )
        return ids

    def result(self, request_id: str) -> SendResult | None:
        """The result of a request if it has one already (parts of a split send gathered)."""
        parts = self.redis.get(group_key(request_id))
        if parts is None:
            raw = self.redis.get(result_key(request_id))
            return None if raw is None else SendResult.model_validate_json(raw)
        ids = [part_id(request_id, n) for n in range(1, int(parts) + 1)]
        raws = self.redis.mget([result_key(i) for i in ids])
        found = [raw for raw in raws if raw is not None]
        if len(found) < len(ids):
            return None
        return merge_results(request_id, [SendResult.model_validate_json(raw) for raw in found])

    def wait(self, request_id: str, timeout: float = 30.0) -> SendResult:
        """Block until the request's result is in, up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.result(request_id)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise ResultTimeout(f"no result for request {request_id!r} after {timeout} s")
            # Wakes as soon as the worker pushes the ready marker; re-check at least every second
            # (split sends have several markers, and another waiter may have taken this one).
            self.redis.blpop([result_ready_key(request_id)], timeout=min(max(left, 0.01), 1.0))

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> SmsProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _packs(requests: Iterable[SendRequest]) -> Iterator[list[SendRequest]]:
    """Consecutive requests of one lane, within the pack bounds."""
    pack: list[SendRequest] = []
    receivers = 0
    for request in requests:
        if pack and (
            request.lane != pack[0].lane
            or len(pack) >= PACK_MAX_REQUESTS
            or receivers + len(request.receivers) > PACK_MAX_RECEIVERS
        ):
            yield pack
            pack, receivers = [], 0
        pack.append(request)
        receivers += len(request.receivers)
    if pack:
        yield pack


def merge_results(request_id: str, parts: list[SendResult]) -> SendResult:
    """One result for a split send: receivers concatenated, credits summed.

    ``unknown`` wins over ``failed`` and ``rejected``: a caller that resends what is ``failed``
    must not resend receivers OVH may have accepted.
    """
    statuses = {p.status for p in parts}
    if len(statuses) == 1:
        status = parts[0].status
    elif statuses & {"sent", "partial"}:
        status = "partial"
    elif "unknown" in statuses:
        status = "unknown"
    else:
        status = "failed" if "failed" in statuses else "rejected"
    first_error: ErrorInfo | None = next((p.error for p in parts if p.error is not None), None)
    return parts[0].model_copy(
        update={
            "request_id": request_id,
            "status": status,
            "receivers": [r for p in parts for r in p.receivers],
            "credits": sum(p.credits for p in parts),
            "error": first_error,
            "finished_at": max(p.finished_at for p in parts),
        }
    )
