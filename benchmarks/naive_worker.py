"""The baseline: the SMS worker a user writes without this project.

One dramatiq actor per lane queue (the same ``sms.<lane>`` queues, actor names and message format
``SmsProducer`` writes), each calling ``POST /sms/{serviceName}/jobs`` through python-ovh once per
message: no batching of identical texts, no rate limiter (a 429 raises and dramatiq's default
``Retries`` middleware retries the message with its exponential backoff, 15 s at first), one
python-ovh client shared by the threads. Run it with the dramatiq CLI from the repository root:

    REDIS_URL=... OVH_ENDPOINT=... OVH_APPLICATION_KEY=... OVH_APPLICATION_SECRET=... \\
    OVH_CONSUMER_KEY=... SMS_WORKER_SERVICE_NAME=... SMS_WORKER_SENDER=... \\
        dramatiq naive_worker --path benchmarks -p 1 -t 8

``SmsProducer.publish`` packs consecutive requests of a lane into one message (a JSON array);
the naive actor fans a pack out into one message per request, as a dramatiq user would, so
each request still gets its own call and its own retries (retrying a whole pack after a 429
would send its first requests again).

Harness, not handicap: after a successful call it writes the request's ``SendResult`` under
``contracts.wire.result_key`` and pushes ``result_ready_key``, as this project's worker does, so
the benchmarks measure ``send()`` to result (``SmsProducer.wait``) the same way for both.
"""

from __future__ import annotations

import json
import os
import time

import dramatiq
import ovh
import ovh.client
import redis
from dramatiq.brokers.redis import RedisBroker

from contracts.wire import LANES, accept_actor_name, lane_queue, result_key, result_ready_key

REDIS_URL = os.environ["REDIS_URL"]
SERVICE_NAME = os.environ["SMS_WORKER_SERVICE_NAME"]
DEFAULT_SENDER = os.environ.get("SMS_WORKER_SENDER")
ENDPOINT = os.environ.get("OVH_ENDPOINT", "ovh-eu")
if ENDPOINT.startswith("http"):
    # the sandbox is reached by URL: python-ovh only knows endpoint names, so register it as one
    ovh.client.ENDPOINTS[ENDPOINT] = ENDPOINT

redis_client = redis.Redis.from_url(REDIS_URL)
dramatiq.set_broker(RedisBroker(client=redis_client))
client = ovh.Client(endpoint=ENDPOINT)  # keys from OVH_APPLICATION_KEY, ... as python-ovh reads them


def accept(payload: dict | list) -> None:
    """A request, or a pack of requests (``SmsProducer.publish``): one message per request."""
    if isinstance(payload, list):
        for request in payload:
            actors[request.get("priority", "medium")].send(request)
        return
    send_sms(payload)


def send_sms(request: dict) -> None:
    """One OVH call for one request, whatever it holds."""
    sent_at = time.time()
    report = client.post(
        f"/sms/{request.get('service_name') or SERVICE_NAME}/jobs",
        message=request["message"],
        receivers=request["receivers"],
        sender=request.get("sender") or DEFAULT_SENDER,
        noStopClause=request.get("no_stop_clause", False),
        priority=request.get("priority", "medium"),
    )
    # -- harness: the result SmsProducer.wait reads (as compact as the worker's) -----------------
    ids = report.get("ids") or []
    receivers = [
        {"receiver": number, "status": "sent", "ovh_id": ovh_id}
        for number, ovh_id in zip(report.get("validReceivers") or [], ids, strict=False)
    ]
    result = {
        "kind": "send_result",
        "version": 1,
        "request_id": request["request_id"],
        "status": "sent" if receivers else "failed",
        "service_name": request.get("service_name") or SERVICE_NAME,
        "receivers": receivers,
        "credits": float(report.get("totalCreditsRemoved") or 0.0),
        "accepted_at": sent_at,
        "finished_at": time.time(),
    }
    with redis_client.pipeline() as pipe:
        pipe.set(result_key(request["request_id"]), json.dumps(result), ex=86_400)
        pipe.lpush(result_ready_key(request["request_id"]), 1)
        pipe.expire(result_ready_key(request["request_id"]), 86_400)
        pipe.execute()


actors = {
    lane: dramatiq.actor(actor_name=accept_actor_name(lane), queue_name=lane_queue(lane))(accept) for lane in LANES
}
