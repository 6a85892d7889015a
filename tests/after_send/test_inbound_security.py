"""The inbound service against what the internet may send it: 4xx, never a 500, never an event.

``sms-worker inbound`` runs as its own process; every call goes over loopback with a real HTTP
client (or a raw socket, for what no client would send).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from contracts.wire import queue_key
from tests.after_send.conftest import TOKEN, track
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

FR = "+33612345678"
#: Planted in malformed input: it must never come back in an answer.
MARK = "ECHO-<script>x</script>"


def all_queued(redis_client) -> int:
    """Messages on every dramatiq queue of this Redis."""
    return sum(redis_client.llen(key) for key in redis_client.keys(queue_key("*")) if redis_client.type(key) == b"list")


def test_a_wrong_token_is_404_whatever_else_is_right(start_inbound, redis_client) -> None:
    # Given an SMS the worker knows
    service = start_inbound()
    track(redis_client, 1001, FR)
    # When callbacks with wrong tokens (or a right token on an unknown kind) arrive
    wrong = [
        service.url("delivery", token=TOKEN[:-1] + "X"),
        service.url("delivery", token=TOKEN + "X"),
        service.url("delivery", token=TOKEN[:-1]),
        service.url("delivery", token="x"),
        service.url("reply", token=TOKEN.upper()),
        service.url("dlr"),
        service.base + f"/ovh/{TOKEN}/delivery/more",
        service.base + "/ovh/delivery",
    ]
    answers = [requests.get(url, params={"id": 1001, "ptt": 4}, timeout=5) for url in wrong]
    answers += [requests.put(url, timeout=5) for url in wrong[:2]]
    # Then each is a 404, says nothing, and nothing is published
    assert {a.status_code for a in answers} == {404}
    assert all(TOKEN not in a.text for a in answers)
    assert all_queued(redis_client) == 0
    assert service.counter("sms_inbound_callbacks_total", kind="unknown", outcome="not_found") >= 7


def test_only_get_and_post_are_answered(start_inbound) -> None:
    service = start_inbound()
    for method in ("PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
        answer = requests.request(method, service.url("delivery"), timeout=5)
        assert answer.status_code == 405, method
        assert answer.headers["Allow"] == "GET, POST"
    assert requests.post(service.base + "/healthz", timeout=5).status_code == 405


def test_sizes_are_bounded(start_inbound, redis_client) -> None:
    service = start_inbound(SMS_WORKER_INBOUND_MAX_BODY_BYTES="2048", SMS_WORKER_INBOUND_MAX_QUERY_BYTES="512")
    track(redis_client, 1002, FR)
    # a query string over the limit, a body over the limit, a request line over aiohttp's own
    long_query = requests.get(service.url("delivery"), params={"id": 1002, "ptt": 4, "pad": "x" * 600}, timeout=5)
    big_body = requests.post(service.url("delivery"), data={"id": 1002, "ptt": 4, "pad": "x" * 4000}, timeout=5)
    huge_line = requests.get(service.url("delivery") + "?pad=" + "x" * 10_000, timeout=5)
    assert (long_query.status_code, big_body.status_code, huge_line.status_code) == (414, 413, 400)
    assert "xxxx" not in huge_line.text and TOKEN not in huge_line.text
    assert all_queued(redis_client) == 0


MALFORMED_DELIVERIES = [
    {},  # nothing
    {"ptt": "4"},  # no id
    {"id": "abc", "ptt": "4"},
    {"id": "-5", "ptt": "4"},
    {"id": "0", "ptt": "4"},
    {"id": "1" * 30, "ptt": "4"},
    {"id": "1003"},  # neither ptt nor a DLR code
    {"id": "1003", "ptt": "99999"},
    {"id": "1003", "ptt": MARK},
    {"id": "1003", "dlr": "1000"},
    {"id": "1003", "ptt": "4", "descriptionDlr": "x" * 300},
    {"id": "1003", "ptt": "4", "date": "y" * 100},
]


@pytest.mark.parametrize("params", MALFORMED_DELIVERIES, ids=lambda p: ",".join(p) or "empty")
def test_malformed_delivery_parameters_are_400(start_inbound_once, redis_client, params) -> None:
    service = start_inbound_once
    track(redis_client, 1003, FR)
    for answer in (
        requests.get(service.url("delivery"), params=params, timeout=5),
        requests.post(service.url("delivery"), data=params, timeout=5),
    ):
        assert answer.status_code == 400, answer.text
        assert answer.text == "400: Bad Request"
    assert all_queued(redis_client) == 0


@pytest.fixture
def start_inbound_once(start_inbound):
    return start_inbound()


def test_malformed_requests_of_every_kind_are_400(start_inbound, redis_client) -> None:
    service = start_inbound()
    track(redis_client, 1004, FR)
    delivery, reply, stop = service.url("delivery"), service.url("reply"), service.url("stop")
    answers = [
        requests.get(delivery + "?id=1004&id=1005&ptt=4", timeout=5),  # one name, two values
        requests.get(delivery + "?id=1004&ptt=%FF", timeout=5),  # not UTF-8
        requests.post(delivery, data=b"id=1004&ptt=4", headers={"Content-Type": "text/plain"}, timeout=5),
        requests.post(delivery, json={"id": 1004, "ptt": 4}, timeout=5),
        requests.post(
            delivery,
            data="&".join(f"p{n}=1" for n in range(60)),
            timeout=5,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        requests.post(reply, data={"message": "hello"}, timeout=5),  # no number
        requests.post(reply, data={"senderid": MARK, "message": "hello"}, timeout=5),
        requests.post(reply, data={"senderid": FR, "message": "x" * 2000}, timeout=5),
        requests.post(reply, data={"senderid": FR, "message": "hi", "service": "../etc"}, timeout=5),
        requests.get(stop, timeout=5),
        requests.get(stop, params={"senderid": "12"}, timeout=5),
    ]
    assert [a.status_code for a in answers] == [400] * len(answers)
    assert all(MARK not in a.text and "xxxx" not in a.text for a in answers)
    assert all_queued(redis_client) == 0
    assert service.counter("sms_inbound_callbacks_total", kind="reply", outcome="rejected") == 4


def test_a_burst_of_forged_and_malformed_calls_gets_4xx_and_no_event(start_inbound, redis_client) -> None:
    # Given real SMS ids the worker knows
    service = start_inbound()
    for n in range(20):
        track(redis_client, 2000 + n, f"+336123450{n:02d}")
    bad_token = service.url("delivery", token="forged-token-0123456789")
    calls = []
    for n in range(600):
        sms = 2000 + n % 20
        calls += [
            ("get", bad_token, {"params": {"id": sms, "ptt": 4, "dlr": 1}}),
            ("post", service.url("reply", token="guess" * 5), {"data": {"senderid": FR, "message": "STOP"}}),
            ("get", service.url("delivery"), {"params": {"id": "x" * (n % 7), "ptt": MARK}}),
            ("post", service.url("stop"), {"data": {"senderid": "not-a-number"}}),
        ]

    def call(spec: tuple) -> int:
        method, url, kwargs = spec
        return getattr(requests, method)(url, timeout=10, **kwargs).status_code

    # When they all arrive at once, from 16 clients
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(call, calls))
    # Then every one got a 4xx, and nothing was published
    assert all(400 <= s < 500 for s in statuses)
    assert statuses.count(404) == 1200
    assert all_queued(redis_client) == 0
    assert service.counter("sms_inbound_events_published_total", event="delivery_report") == 0
    # and the service still answers real callbacks
    assert requests.get(service.url("delivery"), params={"id": 2000, "ptt": 4}, timeout=5).status_code == 200
    assert all_queued(redis_client) == 1


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_what_no_http_client_sends_is_400_without_echo_nor_log(start_inbound) -> None:
    service = start_inbound()
    port = int(service.base.rsplit(":", 1)[1])
    path = f"/ovh/{TOKEN}/delivery"
    garbage = [
        f"G<script>ET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
        f"GET {path} HTTP/9.1\r\nHost: a\r\n\r\n".encode(),
        f"GET {path} HTTP/1.1\r\nHost: a\r\nX<s>: \x01<b>\r\n\r\n".encode(),
        f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: abc<x>\r\n\r\n".encode(),
        f"GET {path}?{'x' * 9000} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS to a plain HTTP port
    ]
    for data in garbage:
        answer = raw(port, data)
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], answer[:80]
        assert b"<" not in answer and TOKEN.encode() not in answer and b"xxxx" not in answer
    # and the service's own output never carried the token
    service.process.terminate()
    assert TOKEN not in service.output()


def test_unknown_ids_are_counted_not_errors(start_inbound, redis_client) -> None:
    # Given a service that waits 1 s for an SMS id to be recorded
    service = start_inbound()
    # When a report comes for an id the worker never recorded
    answer = requests.get(service.url("delivery"), params={"id": 987654, "ptt": 4, "dlr": 1}, timeout=5)
    # Then OVH gets a 200, and once the grace period is over the id is counted, nothing published
    assert answer.status_code == 200
    wait_until(lambda: service.counter("sms_inbound_unknown_ids_total") == 1, timeout=15)
    assert all_queued(redis_client) == 0
    assert service.counter("sms_inbound_callbacks_total", kind="delivery", outcome="parked") == 1


def test_a_report_that_arrives_before_settlement_is_published_when_the_sms_is_recorded(
    start_inbound, redis_client
) -> None:
    service = start_inbound(SMS_WORKER_INBOUND_ORPHAN_GRACE_S="30")
    assert requests.get(service.url("delivery"), params={"id": 4242, "ptt": 4}, timeout=5).status_code == 200
    track(redis_client, 4242, FR, request_id="late-settle")
    wait_until(lambda: all_queued(redis_client) == 1)
    assert service.counter("sms_inbound_unknown_ids_total") == 0


def test_health_readiness_and_metrics(start_inbound) -> None:
    service = start_inbound()
    assert requests.get(service.base + "/healthz", timeout=5).text == "alive"
    assert requests.get(service.base + "/readyz", timeout=5).status_code == 200
    metrics = requests.get(service.base + "/metrics", timeout=5)
    assert metrics.status_code == 200 and "sms_inbound_unknown_ids_total 0.0" in metrics.text


def test_without_redis_it_is_alive_not_ready_and_answers_503(start_inbound) -> None:
    service = start_inbound(ready=False, REDIS_URL="redis://127.0.0.1:9/0")  # nothing listens there
    assert requests.get(service.base + "/readyz", timeout=5).status_code == 503
    answer = requests.get(service.url("delivery"), params={"id": 1, "ptt": 4}, timeout=10)
    assert answer.status_code == 503


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "SMS_WORKER_INBOUND_TOKEN is not set"), ("short", "must be 16 to 128"), ("x" * 20 + "/", "must be")],
)
def test_no_token_no_service(inbound_env, token, message) -> None:
    environ = {k: v for k, v in inbound_env.items() if k != "SMS_WORKER_INBOUND_TOKEN"}
    if token is not None:
        environ["SMS_WORKER_INBOUND_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "inbound"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
