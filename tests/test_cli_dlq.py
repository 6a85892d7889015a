"""``sms-worker dlq``: dead letters listed with their reason; a replay sends once, and only what has no result."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import redis

from contracts import SendRequest, SmsProducer
from contracts.wire import lane_queue, request_message
from tests.campaigns.cli import one_line_error, sms_worker
from tests.helpers import enqueue_raw
from tests.waiting import wait_until
from worker.store import keys

QUEUE = lane_queue("high")


def dead_letter(client: redis.Redis, payload: Any, **options: Any) -> str:
    """Put a message into the high lane's dead-letter queue, as dramatiq's nack leaves it."""
    message = request_message("high", payload, **options)
    client.hset(keys.dead_letter_messages(QUEUE), message.message_id, message.encode())
    client.zadd(keys.dead_letters(QUEUE), {message.message_id: int(time.time() * 1000)})
    return message.message_id


def request(request_id: str, receiver: str) -> dict[str, Any]:
    sent = SendRequest(request_id=request_id, message="Your code is 1234", receivers=[receiver], priority="high")
    return sent.model_dump(mode="json", exclude_none=True)


def _eventually_dead(client: redis.Redis, count: int) -> None:
    wait_until(lambda: client.zcard(keys.dead_letters(QUEUE)) >= count, what="the unreadable message's dead letter")


def test_a_replayed_dead_letter_is_sent_once_and_only_when_it_has_no_result(
    make_app, sandbox, sandbox_env, redis_client: redis.Redis
) -> None:
    # Given a worker, and four dead letters: a request that never got through (its retries ran
    # out), one that was sent all the same, one the worker has accepted and not finished, and a
    # message with no request id, which the worker itself dead-letters
    make_app()
    producer = SmsProducer(client=redis_client)
    producer.wait(producer.send("+33611000002", "Your code is 1234", request_id="dl-done", priority="high"), 30)
    traceback = "Traceback (most recent call last):\nredis.exceptions.ConnectionError: Error 111 connecting"
    new = dead_letter(redis_client, request("dl-new", "+33611000001"), retries=20, traceback=traceback)
    done = dead_letter(redis_client, request("dl-done", "+33611000002"))
    redis_client.set(keys.seen("dl-flight"), 1)
    flight = dead_letter(redis_client, request("dl-flight", "+33611000003"))
    enqueue_raw(redis_client, "high", {"message": "no id here"})
    _eventually_dead(redis_client, 4)
    # When they are listed, each has its state and reason
    listed = sms_worker("dlq", "list", "--json", env=sandbox_env)
    assert listed.returncode == 0, listed.stderr
    by_id = {d["id"]: d for d in json.loads(listed.stdout)}
    assert (by_id[new]["state"], by_id[done]["state"], by_id[flight]["state"]) == ("replayable", "done", "in flight")
    assert by_id[new]["reason"] == "failed after 20 retries: redis.exceptions.ConnectionError: Error 111 connecting"
    (unreadable,) = set(by_id) - {new, done, flight}
    assert by_id[unreadable] | {"id": None, "at_ms": None} == {
        "id": None,
        "at_ms": None,
        "lane": "high",
        "state": "unreadable",
        "reason": "payload has no readable request_id",
        "retries": None,
        "requests": [
            {"request_id": None, "state": "unreadable", "status": None, "problem": "payload has no readable request_id"}
        ],
    }
    # And all are replayed: only the one without a result goes back, and is sent
    replayed = sms_worker("dlq", "replay", "--all", "--json", env=sandbox_env)
    assert replayed.returncode == 0, replayed.stderr
    outcomes = {d["id"]: d["outcome"] for d in json.loads(replayed.stdout)}
    assert outcomes[new] == "replayed 1 request(s)"
    assert outcomes[done].startswith("left: every request has its result")
    assert outcomes[flight] == "left: accepted by the worker, no result yet"
    assert outcomes[unreadable].startswith("left: cannot be replayed")
    assert producer.wait("dl-new", 30).status == "sent"
    # When the same dead letter turns up again (a second copy) and is replayed by its id's prefix
    again = dead_letter(redis_client, request("dl-new", "+33611000001"))
    assert sms_worker("dlq", "replay", again[:8], env=sandbox_env).returncode == 0
    # Then nothing is sent twice
    assert Counter(s["receiver"] for s in sandbox.control.sent()) == {"+33611000001": 1, "+33611000002": 1}
    # And dead letters whose requests are done are dropped on request; the rest on --all --yes
    dropped = json.loads(sms_worker("dlq", "replay", "--all", "--drop-done", "--json", env=sandbox_env).stdout)
    assert {d["id"] for d in dropped if d["outcome"].startswith("dropped")} == {done, again}
    refused = sms_worker("dlq", "drop", "--all", env=sandbox_env)
    assert refused.returncode == 2 and "--yes" in one_line_error(refused)
    assert sms_worker("dlq", "drop", "--all", "--yes", env=sandbox_env).returncode == 0
    assert redis_client.zcard(keys.dead_letters(QUEUE)) == 0
    assert len(sandbox.control.sent()) == 2


def test_show_masks_receivers_and_ids_must_be_unique(redis_client: redis.Redis, sandbox_env) -> None:
    first = dead_letter(redis_client, request("dl-show", "+33611000009"))
    table = sms_worker("dlq", "show", first[:6], env=sandbox_env)
    assert table.returncode == 0 and "request_id dl-show" in table.stdout and "+33*******09" in table.stdout
    shown = sms_worker("dlq", "show", first[:6], "--json", env=sandbox_env)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["requests"][0]["receivers"] == ["+33*******09"]
    assert "Your code" not in shown.stdout and data["requests"][0]["message_chars"] == 17
    assert "Your code" in sms_worker("dlq", "show", first, "--raw", env=sandbox_env).stdout
    missing = sms_worker("dlq", "show", "ffffffff", env=sandbox_env)
    assert missing.returncode == 2 and "no dead letter" in one_line_error(missing)
    short = sms_worker("dlq", "replay", "ab", env=sandbox_env)
    assert short.returncode == 2 and "at least 4 characters" in one_line_error(short)
