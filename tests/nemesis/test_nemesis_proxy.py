"""The nemesis itself: each fault does what it says, seen from a real client and the real server.

Redis faults are checked against the server directly (the test's own client does not go through
the proxy): a lost reply means the command ran and the client was not told.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ovh.exceptions
import pytest
import redis

from tests.nemesis.framing import http_request_end, http_request_line, resp_command_label, resp_message_end
from tests.nemesis.schedule import Fault, Nemesis, ScheduleBuilder, proxy_handler
from worker.errors import AmbiguousError
from worker.ovhcloud.client import make_client
from worker.ovhcloud.gateway import OvhGateway

pytestmark = pytest.mark.timeout(60)

INCR = "return redis.call('incr', KEYS[1])"
FR1 = "+33612345678"


def via(proxy: Any, socket_timeout: float = 5.0) -> redis.Redis:
    return redis.Redis.from_url(proxy.url("redis", "/0"), socket_timeout=socket_timeout)


@pytest.fixture
def redis_proxy(make_proxy, redis_url, redis_client):
    return make_proxy(redis_url, "resp", name="redis")


def test_traffic_goes_through_untouched(redis_proxy, redis_client) -> None:
    client = via(redis_proxy)
    client.set("k", "v")
    incr = client.register_script(INCR)
    with client.pipeline(transaction=True) as pipe:
        pipe.get("k").incr("n").lrange("missing", 0, -1)
        assert pipe.execute() == [b"v", 1, []]
    assert incr(keys=["n"]) == 2
    assert redis_client.get("n") == b"2"
    assert redis_proxy.errors == []


def test_a_dropped_reply_leaves_the_script_run_once_and_the_client_told_nothing(redis_proxy, redis_client) -> None:
    client = via(redis_proxy)
    incr = client.register_script(INCR)
    assert incr(keys=["n"]) == 1
    # When the next EVALSHA's reply is dropped (and the connection closed)
    redis_proxy.drop_replies(1, matching="EVALSHA")
    client.set("other", "x")  # not an EVALSHA: goes through
    with pytest.raises(redis.ConnectionError):
        incr(keys=["n"])
    # Then Redis ran it, once; the client learnt nothing; the next call gets its answer
    assert redis_client.get("n") == b"2"
    assert incr(keys=["n"]) == 3
    assert redis_proxy.stats["replies_dropped"] == 1 and redis_proxy.pending_drops() == 0


def test_a_drop_can_let_some_replies_through_first(redis_proxy, redis_client) -> None:
    client = via(redis_proxy)
    incr = client.register_script(INCR)
    incr(keys=["n"])
    redis_proxy.drop_replies(1, matching="EVALSHA", after=2)
    assert [incr(keys=["n"]), incr(keys=["n"])] == [2, 3]
    with pytest.raises(redis.ConnectionError):
        incr(keys=["n"])
    assert redis_client.get("n") == b"4"


def test_a_dropped_reply_without_close_is_a_timeout(redis_proxy, redis_client) -> None:
    client = via(redis_proxy, socket_timeout=0.3)
    client.ping()
    redis_proxy.drop_replies(1, close=False)
    with pytest.raises(redis.TimeoutError):
        client.incr("n")
    assert redis_client.get("n") == b"1"
    assert client.incr("n") == 2


def test_a_held_reply_past_the_client_timeout_is_lost_though_the_command_ran(redis_proxy, redis_client) -> None:
    client = via(redis_proxy, socket_timeout=0.3)
    client.ping()
    redis_proxy.hold_replies(1.0)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.incr("n")
    assert time.monotonic() - started < 0.9
    assert redis_client.get("n") == b"1"
    # a reply held less than the timeout arrives late but whole
    patient = via(redis_proxy, socket_timeout=3.0)
    assert patient.incr("n") == 2
    assert time.monotonic() - started >= 0.9
    assert client.incr("n") == 3  # after the hold: through again
    assert redis_proxy.stats["replies_held"] >= 2


def test_a_drop_can_target_one_script(redis_proxy, redis_client) -> None:
    client = via(redis_proxy)
    incr, other = client.register_script(INCR), client.register_script("return 7")
    assert incr(keys=["n"]) == 1
    redis_proxy.drop_replies(1, matching=f"EVALSHA {incr.sha}")
    assert other() == 7
    with pytest.raises(redis.ConnectionError):
        incr(keys=["n"])
    assert redis_client.get("n") == b"2"


def test_holds_can_target_one_command(redis_proxy) -> None:
    client = via(redis_proxy, socket_timeout=0.3)
    incr = client.register_script(INCR)
    redis_proxy.hold_replies(2.0, matching="EVALSHA")
    assert client.incr("plain") == 1
    with pytest.raises(redis.TimeoutError):
        incr(keys=["n"])


def test_reset_closes_every_connection_mid_request(redis_proxy, redis_client) -> None:
    client = via(redis_proxy, socket_timeout=3.0)
    client.ping()
    redis_proxy.hold_replies(2.0)
    resets: list[int] = []
    timer = threading.Timer(0.3, lambda: resets.append(redis_proxy.reset()))
    timer.start()
    with pytest.raises(redis.ConnectionError):
        client.incr("n")  # carried out; its connection reset before the reply came
    timer.join()
    assert resets == [1] and redis_client.get("n") == b"1"


def test_a_blackhole_loses_requests_then_lets_traffic_through(redis_proxy, redis_client) -> None:
    client = via(redis_proxy, socket_timeout=0.3)
    client.ping()
    redis_proxy.blackhole(0.8)
    with pytest.raises(redis.TimeoutError):
        client.incr("n")
    assert redis_client.get("n") is None  # never reached Redis
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            assert client.incr("n") == 1
            break
        except (redis.TimeoutError, redis.ConnectionError):
            time.sleep(0.05)
    else:
        raise AssertionError("traffic did not resume after the blackhole")


def test_a_healing_blackhole_delivers_late(redis_proxy, redis_client) -> None:
    client = via(redis_proxy, socket_timeout=0.3)
    client.ping()
    redis_proxy.blackhole(0.8, late=True)
    with pytest.raises(redis.TimeoutError):
        client.incr("n")  # the client gives up...
    deadline = time.monotonic() + 5
    while redis_client.get("n") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.get("n") == b"1"  # ...and Redis runs it later all the same


@pytest.fixture
def ovh_proxy(make_proxy, sandbox):
    return make_proxy(sandbox.base_url, "http", name="ovh")


def post(client: Any, sandbox: Any) -> Any:
    return client.post(
        f"/sms/{sandbox.service_name}/jobs", message="Hi", receivers=[FR1], sender="SANDBOX", noStopClause=True
    )


def test_a_held_jobs_call_reaches_ovh_only_when_released(ovh_proxy, sandbox) -> None:
    client = make_client(ovh_proxy.url("http", "/1.0"), timeout=(2, 5), **sandbox.credentials)
    assert client.get("/sms") == [sandbox.service_name]
    ovh_proxy.hold_requests(matching=r"^POST .*/jobs$")
    with pytest.raises(ovh.exceptions.HTTPError):
        post(client, sandbox)  # reset after sending: "may have been carried out"
    assert client.get("/sms") == [sandbox.service_name]  # other requests go through
    assert sandbox.control.sent() == [] and ovh_proxy.held_requests() == [f"POST /1.0/sms/{sandbox.service_name}/jobs"]
    assert ovh_proxy.release_requests() == 1
    assert [s["receiver"] for s in sandbox.control.sent()] == [FR1]
    assert post(client, sandbox)["validReceivers"] == [FR1]  # no longer held


def test_a_discarded_jobs_call_never_reaches_ovh(ovh_proxy, sandbox) -> None:
    client = make_client(ovh_proxy.url("http", "/1.0"), timeout=(2, 5), **sandbox.credentials)
    ovh_proxy.hold_requests(matching="POST")
    with pytest.raises(ovh.exceptions.HTTPError):
        post(client, sandbox)
    assert ovh_proxy.discard_requests() == 1
    assert sandbox.control.sent() == [] and sandbox.control.calls() == []


def test_a_jobs_reply_dropped_after_ovh_acted_is_ambiguous_to_the_gateway(ovh_proxy, sandbox) -> None:
    gateway = OvhGateway(lambda: make_client(ovh_proxy.url("http", "/1.0"), timeout=(2, 5), **sandbox.credentials))
    gateway.get("/sms")
    ovh_proxy.drop_replies(1, matching="^POST")
    with pytest.raises(AmbiguousError):
        gateway.send_job(sandbox.service_name, None, {"message": "Hi", "receivers": [FR1], "sender": "SANDBOX"})
    assert [s["receiver"] for s in sandbox.control.sent()] == [FR1]
    assert gateway.get("/sms") == [sandbox.service_name]


def test_framing_splits_pipelined_resp_and_http() -> None:
    replies = b"+OK\r\n$3\r\nabc\r\n*2\r\n:1\r\n*-1\r\n$-1\r\n%1\r\n+k\r\n$1\r\nv\r\n"
    ends = []
    at = 0
    while (end := resp_message_end(replies, at)) is not None:
        ends.append(replies[at:end])
        at = end
    assert ends == [b"+OK\r\n", b"$3\r\nabc\r\n", b"*2\r\n:1\r\n*-1\r\n", b"$-1\r\n", b"%1\r\n+k\r\n$1\r\nv\r\n"]
    assert resp_message_end(b"*2\r\n$3\r\nGET\r\n$1\r") is None
    assert resp_command_label(b"*3\r\n$7\r\nevalsha\r\n$2\r\nAB\r\n$1\r\n0\r\n") == "EVALSHA ab"
    assert resp_command_label(b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n") == "GET"
    request = b"POST /1.0/sms/x/jobs HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
    assert http_request_end(request[:-1]) is None and http_request_end(request + b"GET") == len(request)
    assert http_request_line(request) == "POST /1.0/sms/x/jobs"


def test_a_seed_draws_one_schedule() -> None:
    def draw(seed: int) -> Any:
        builder = ScheduleBuilder(seed)
        for at in builder.times(5, within=(5, 60), apart=11):
            builder.add(at, "redis", "hold_replies", seconds=builder.uniform(6, 10))
        builder.add(builder.uniform(0, 60), "ovh", "reset")
        return builder.build()

    first = draw(16)
    assert first == draw(16) and first != draw(17)
    holds = [f for f in first.faults if f.action == "hold_replies"]
    assert len(holds) == 5 and first.count("redis", "hold_replies") == 5
    assert all(5 <= f.at_s <= 60 and 6 <= f.kwargs["seconds"] <= 10 for f in holds)
    assert all(b.at_s - a.at_s >= 11 - 0.1 for a, b in zip(holds, holds[1:], strict=False))
    assert "hold_replies(seconds=" in str(first)


def test_the_nemesis_runs_a_schedule_in_order_and_reports_a_failing_handler(redis_proxy) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def record(fault: Fault) -> None:
        with lock:
            seen.append(fault.action)

    builder = ScheduleBuilder(1)
    builder.add(0.2, "log", "second")
    builder.add(0.1, "log", "first")
    builder.add(0.3, "redis", "drop_replies", count=2)
    Nemesis(builder.build(), {"log": record, "redis": proxy_handler(redis_proxy)}).start().join(5)
    assert seen == ["first", "second"] and redis_proxy.pending_drops() == 2

    builder = ScheduleBuilder(1)
    builder.add(0.0, "redis", "shutdown")
    with pytest.raises(ValueError, match="cannot 'shutdown'"):
        Nemesis(builder.build(), {"redis": proxy_handler(redis_proxy)}).start().join(5)
    with pytest.raises(ValueError, match="no handler"):
        Nemesis(builder.build(), {})
