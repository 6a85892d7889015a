"""Dead letters of the lanes' queues: what they carry, why they are there, and a replay that
never sends twice.

dramatiq keeps a queue's dead letters in ``<queue>.XQ`` (ids by time, ms) and ``<queue>.XQ.msgs``
(id -> encoded message) and forgets them after its ``dead_message_ttl`` (7 days). The worker
dead-letters three kinds of message: bodies that are not dramatiq messages at all
(``queues.Broker.dead_letter_unreadable``), payloads with no readable request id (the accept
actor's ``UnreadablePayload``, or one item of a pack), and messages whose retries ran out
(dramatiq's Retries middleware). dramatiq dead-letters the body it last queued, so the options
kept are those of the retry before the last failure: ``retries`` and the ``traceback`` of the
failure before the last (in practice the same error). The reason shown is that traceback's last
line when there is one, else what reading the payload says now (the check the worker made),
else none.

A replay queues again, in a new message, only the requests of a dead letter that have neither a
result (``contracts.wire.result_key``) nor the worker's dedupe marker (``keys.seen``: accepted,
maybe still in flight), and checks both again in the same atomic step that queues
(``lua/dlq_replay.lua``). Even a replay racing the worker is harmless: the worker ignores a
request id it has seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypedDict

import dramatiq
import redis

from contracts.redis_connection import text
from contracts.wire import LANES, lane_queue, request_message, result_key
from worker.errors import UnreadablePayload
from worker.intake.accept import read_payload
from worker.store import keys, scripts


class _ReplayKeys(TypedDict):
    dead_letters: str
    dead_letter_messages: str
    queue: str
    queue_messages: str


class _ReplayDocument(TypedDict):
    id: str  # the dead letter's
    sha1: str  # of its body
    message_id: str
    body: str  # the message to queue
    checks: list[int]  # key indexes: seen markers and results of the requests replayed
    remove: bool


class _Replay(scripts.Script[_ReplayKeys, _ReplayDocument, str]):
    """``replayed``, ``gone`` or ``changed``."""

    NAME = "dlq_replay"
    Keys = _ReplayKeys

    def reply(self, raw: Any) -> str:
        return scripts.text(raw)


@dataclass(frozen=True, slots=True)
class Item:
    """One request of a dead letter (a pack has several)."""

    request_id: str | None  # None: unreadable
    state: str  # "no result" (replayable), "in flight", "done", "unreadable"
    status: str | None = None  # the result's status when done
    problem: str | None = None  # why it is unreadable
    payload: Any = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    queue: str
    message_id: str
    at_ms: int
    body: bytes
    reason: str
    retries: int | None
    items: tuple[Item, ...]

    @property
    def lane(self) -> str:
        return self.queue.removeprefix("sms.")

    @property
    def state(self) -> str:
        """``replayable`` when some request has no result and is not in flight; else ``done``
        (every request has a result), ``in flight``, ``unreadable``, or ``mixed``."""
        states = {item.state for item in self.items}
        if "no result" in states:
            return "replayable"
        return states.pop() if len(states) == 1 else "mixed"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "lane": self.lane,
            "at_ms": self.at_ms,
            "state": self.state,
            "reason": self.reason,
            "retries": self.retries,
            "requests": [
                {"request_id": i.request_id, "state": i.state, "status": i.status, "problem": i.problem}
                for i in self.items
            ],
        }


def _last_line(traceback: str) -> str:
    lines = [line.strip() for line in traceback.splitlines() if line.strip()]
    return lines[-1] if lines else traceback


def _payload_items(args: Any) -> list[Any]:
    """The requests a message's argument carries (a pack is a JSON array), or raise UnreadablePayload."""
    if not isinstance(args, list | tuple) or len(args) != 1:
        raise UnreadablePayload(f"an accept message takes one argument, not {len(args) if args else 0}")
    payload = args[0]
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise UnreadablePayload("payload is not JSON") from None
    if isinstance(payload, list):
        if not payload:
            raise UnreadablePayload("payload is an empty pack")
        return payload
    return [payload]


class DeadLetters:
    """Reads, replays and drops the dead letters of the lanes' queues."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._replay = _Replay(client)

    def all(self, lanes: Iterable[str] = LANES) -> list[DeadLetter]:
        """Every dead letter of ``lanes``' queues, oldest first in each lane."""
        found = []
        for lane in lanes:
            queue = lane_queue(lane)
            entries: list[tuple[bytes, float]] = self.redis.zrange(  # type: ignore[assignment]
                keys.dead_letters(queue), 0, -1, withscores=True
            )
            if not entries:
                continue
            ids = [text(member) for member, _ in entries]
            bodies: list[bytes | None] = self.redis.hmget(keys.dead_letter_messages(queue), ids)  # type: ignore[assignment]
            for (member, score), body in zip(entries, bodies, strict=True):
                if body is not None:
                    found.append(self._read(queue, text(member), int(score), body))
        return found

    def find(self, prefix: str, lanes: Iterable[str] = LANES) -> list[DeadLetter]:
        """The dead letters whose id starts with ``prefix``."""
        return [letter for letter in self.all(lanes) if letter.message_id.startswith(prefix)]

    def _read(self, queue: str, message_id: str, at_ms: int, body: bytes) -> DeadLetter:
        try:
            message = dramatiq.Message.decode(body)
        except Exception as exc:  # any undecodable body: that is the reason it is here
            cause = exc.__cause__ or exc
            reason = f"not a dramatiq message ({type(cause).__name__}: {str(cause)[:120]})"
            return DeadLetter(queue, message_id, at_ms, body, reason, None, (Item(None, "unreadable", problem=reason),))
        options = message.options or {}
        retries = options.get("retries")
        try:
            raw_items = _payload_items(message.args)
            problem = None
        except UnreadablePayload as exc:
            raw_items, problem = [], str(exc)
        items = self._states(raw_items) if problem is None else (Item(None, "unreadable", problem=problem),)
        if options.get("traceback"):
            reason = f"failed after {retries or 0} retries: {_last_line(str(options['traceback']))[:200]}"
        elif problem is not None:
            reason = problem
        elif any(item.problem for item in items):
            reason = next(item.problem for item in items if item.problem)  # type: ignore[assignment]
        else:
            reason = "no reason recorded (the worker's log at that time has it)"
        return DeadLetter(queue, message_id, at_ms, body, reason, retries, tuple(items))

    def _states(self, payloads: list[Any]) -> tuple[Item, ...]:
        readable: list[tuple[str, Any]] = []
        unreadable: dict[int, str] = {}
        for n, payload in enumerate(payloads):
            try:
                readable.append(read_payload(payload))
            except UnreadablePayload as exc:
                unreadable[n] = str(exc)
        with self.redis.pipeline(transaction=False) as pipe:
            for request_id, _ in readable:
                pipe.get(result_key(request_id))
                pipe.exists(keys.seen(request_id))
            answers = pipe.execute()
        states = iter(zip(answers[::2], answers[1::2], strict=True))
        reads = iter(readable)
        items = []
        for n, payload in enumerate(payloads):
            if n in unreadable:
                items.append(Item(None, "unreadable", problem=unreadable[n], payload=payload))
                continue
            request_id, data = next(reads)
            result, seen = next(states)
            if result is not None:
                status = json.loads(result).get("status")
                items.append(Item(request_id, "done", status=status, payload=data))
            elif seen:
                items.append(Item(request_id, "in flight", payload=data))
            else:
                items.append(Item(request_id, "no result", payload=data))
        return tuple(items)

    def replay(self, letter: DeadLetter) -> str:
        """Queue again the requests of ``letter`` that have no result and are not in flight.

        Returns ``replayed`` (the dead letter is removed unless it holds unreadable items),
        ``nothing to replay``, ``gone`` (replayed or dropped meanwhile) or ``changed`` (a request
        got a result or was accepted meanwhile: look again).
        """
        todo = [item for item in letter.items if item.state == "no result"]
        if not todo:
            return "nothing to replay"
        payload: Any = todo[0].payload if len(todo) == 1 else [item.payload for item in todo]
        message = request_message(letter.lane, payload)
        refs = self._replay.refs()
        checks = [
            ref
            for item in todo
            if item.request_id is not None
            for ref in (refs(keys.seen(item.request_id)), refs(result_key(item.request_id)))
        ]
        document: _ReplayDocument = {
            "id": letter.message_id,
            "sha1": hashlib.sha1(letter.body).hexdigest(),
            "message_id": message.message_id,
            "body": message.encode().decode(),
            "checks": checks,
            "remove": all(item.state != "unreadable" for item in letter.items),
        }
        return self._replay(self._keys(letter.queue), document, refs)

    def drop(self, letter: DeadLetter) -> bool:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.dead_letters(letter.queue), letter.message_id)
            pipe.hdel(keys.dead_letter_messages(letter.queue), letter.message_id)
            removed, _ = pipe.execute()
        return bool(removed)

    @staticmethod
    def _keys(queue: str) -> _ReplayKeys:
        return {
            "dead_letters": keys.dead_letters(queue),
            "dead_letter_messages": keys.dead_letter_messages(queue),
            "queue": keys.queue(queue),
            "queue_messages": keys.queue_messages(queue),
        }
