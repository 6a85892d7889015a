"""Faults on demand, each seen through the real python-ovh client."""

from __future__ import annotations

import time

import ovh.exceptions as oe
import pytest
import requests

from ovh_sandbox import FaultRule
from ovh_sandbox.control import SandboxControlError

pytestmark = pytest.mark.timeout(30)

FR1, FR2 = "+33612345678", "+33612345679"


def test_latency_is_added_to_every_call(sb, client) -> None:
    client.get("/sms")  # reads /auth/time first
    sb.control.set_faults(latency_ms=200, jitter_ms=50)
    started = time.monotonic()
    client.get("/sms")
    assert time.monotonic() - started >= 0.2
    sb.control.set_faults(latency_ms=0, jitter_ms=0)
    assert sb.control.faults()["latency_ms"] == 0


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_server_errors_do_nothing_and_raise_api_error(sb, client, send, kind) -> None:
    sb.control.add_fault(kind, next=1)
    with pytest.raises(oe.APIError) as caught:
        send(client, sb.service_name, [FR1])
    assert caught.value.response.status_code == int(kind)
    assert caught.value.query_id
    assert sb.control.sent() == []
    send(client, sb.service_name, [FR1])  # the next call is served
    assert [c["status"] for c in sb.control.calls()] == [int(kind), 200]
    assert sb.control.counters()["by_status"] == {kind: 1, "200": 1}


def test_429_carries_retry_after(sb, client, send) -> None:
    sb.control.add_fault("429", next=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(oe.APIError) as caught:
            send(client, sb.service_name, [FR1])
        assert caught.value.response.status_code == 429
        assert caught.value.response.headers["Retry-After"] == "3"
    assert send(client, sb.service_name, [FR1])["validReceivers"] == [FR1]


def test_faults_apply_to_jobs_posts_unless_scoped_to_all(sb, client, send) -> None:
    sb.control.add_fault("503", next=1)
    assert client.get("/sms") == [sb.service_name]  # a GET is not a jobs call
    with pytest.raises(oe.APIError):
        send(client, sb.service_name, [FR1])
    sb.control.add_fault("503", next=1, scope="all")
    with pytest.raises(oe.APIError):
        client.get("/sms")


def test_a_fault_for_one_receiver_spares_every_other_call(sb, client, send) -> None:
    # Given a fault for the next call sending to FR2 only
    sb.control.add_fault("503", next=1, receiver=FR2)
    # Then calls to others go through, and the first call to FR2 (among others) takes the fault
    send(client, sb.service_name, [FR1])
    assert client.get("/sms") == [sb.service_name]
    with pytest.raises(oe.APIError):
        send(client, sb.service_name, [FR1, FR2])
    send(client, sb.service_name, [FR2])  # the rule was used up
    assert [c["status"] for c in sb.control.calls()] == [200, 503, 200]
    with pytest.raises(SandboxControlError, match="receiver"):  # a rule needs a number
        sb.control.add_fault("503", next=1, receiver="")


def test_per_key_rate_limit(sb, clients, send) -> None:
    sb.control.set_faults(rate_limit_per_s=2, rate_limit_burst=2)
    client = clients(sb)
    send(client, sb.service_name, [FR1])
    send(client, sb.service_name, [FR1])
    with pytest.raises(oe.APIError) as caught:
        send(client, sb.service_name, [FR1])
    assert caught.value.response.status_code == 429
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    # Another consumer key has its own budget
    other = clients(sb, consumer_key=sb.control.create_consumer_key([("POST", "/sms/*"), ("GET", "/*")]))
    send(other, sb.service_name, [FR2])
    # And the first key gets tokens back with time (2 a second)
    time.sleep(0.6)
    send(client, sb.service_name, [FR1])
    assert [c["status"] for c in sb.control.calls()] == [200, 200, 429, 200, 200]
    sb.control.set_faults(rate_limit_per_s=0)  # off
    for _ in range(5):
        send(client, sb.service_name, [FR1])


def test_a_reset_closes_the_connection_before_anything_is_done(sb, client, send) -> None:
    sb.control.add_fault("reset", next=1)
    with pytest.raises(oe.HTTPError) as caught:
        send(client, sb.service_name, [FR1])
    assert isinstance(caught.value.args[1], requests.ConnectionError)
    assert sb.control.sent() == []
    assert [c["status"] for c in sb.control.calls()] == ["reset"]
    assert send(client, sb.service_name, [FR1])["validReceivers"] == [FR1]  # the client reconnects


def test_accepted_then_timed_out_sends_but_never_answers(sb, clients, send) -> None:
    # Given the next jobs call is carried out but never answered
    sb.control.add_fault("timeout_after_accept", next=1)
    client = clients(sb, timeout=(2.0, 0.5))
    client.get("/sms")
    # When a client sends with a short read timeout
    started = time.monotonic()
    with pytest.raises(oe.HTTPError) as caught:
        send(client, sb.service_name, [FR1, FR2])
    # Then it times out, yet the SMS were sent and paid for: a blind retry would send twice
    assert isinstance(caught.value.args[1], requests.ReadTimeout)
    assert time.monotonic() - started < 2.0
    assert [s["receiver"] for s in sb.control.sent()] == [FR1, FR2]
    assert [c["status"] for c in sb.control.calls()] == ["timeout"]
    assert sb.control.counters()["sms_sent"] == 2
    assert client.get(f"/sms/{sb.service_name}")["creditsLeft"] == 1_000_000 - 2
    assert len(client.get(f"/sms/{sb.service_name}/outgoing", receiver=FR1)) == 1


def test_a_held_call_is_released_after_hold_s(make_sandbox, clients, send) -> None:
    sandbox = make_sandbox(hold_s=0.3)
    sandbox.control.add_fault("timeout_after_accept", next=1)
    client = clients(sandbox, timeout=(2.0, 5.0))
    with pytest.raises(oe.HTTPError) as caught:  # the connection is closed with no answer
        send(client, sandbox.service_name, [FR1])
    assert isinstance(caught.value.args[1], requests.ConnectionError)
    assert len(sandbox.control.sent()) == 1


def test_probabilistic_faults_are_reproducible_for_a_seed(make_sandbox, clients, send) -> None:
    def statuses(seed: int) -> list[object]:
        sandbox = make_sandbox(seed=seed, faults=[{"kind": "503", "probability": 0.5}])
        client = clients(sandbox)
        for _ in range(20):
            try:
                send(client, sandbox.service_name, [FR1])
            except oe.APIError:
                pass
        return [c["status"] for c in sandbox.control.calls()]

    first = statuses(3)
    assert first == statuses(3)
    assert 1 <= first.count(503) <= 19
    assert first != statuses(4)


def test_faults_given_at_start(make_sandbox, clients, send) -> None:
    sandbox = make_sandbox(faults=[FaultRule("502", next=1)], latency_ms=100)
    client = clients(sandbox)
    with pytest.raises(oe.APIError):
        send(client, sandbox.service_name, [FR1])
    started = time.monotonic()
    send(client, sandbox.service_name, [FR1])
    assert time.monotonic() - started >= 0.1


def test_clear_faults_and_reset(sb, client, send) -> None:
    sb.control.set_faults(latency_ms=10, faults=[{"kind": "503", "probability": 1.0}], rate_limit_per_s=100)
    sb.control.clear_faults()
    assert sb.control.faults()["faults"] == [] and sb.control.faults()["rate_limit_per_s"] is None
    send(client, sb.service_name, [FR1])
    sb.control.add_fault("500", probability=1.0)
    sb.control.reset()
    assert sb.control.faults()["faults"] == []
    assert sb.control.sent() == [] and sb.control.calls() == [] and sb.control.counters()["jobs_calls"] == 0
    assert client.get(f"/sms/{sb.service_name}")["creditsLeft"] == 1_000_000 - 1  # accounts kept
    sb.control.reset(accounts=True)
    assert client.get(f"/sms/{sb.service_name}")["creditsLeft"] == 1_000_000
    assert client.get(f"/sms/{sb.service_name}/outgoing") == []


@pytest.mark.parametrize("kind", ["proxy_503", "proxy_429"])
def test_proxy_faults_answer_an_html_page_python_ovh_cannot_read(sb, client, send, kind) -> None:
    sb.control.add_fault(kind, next=1, retry_after=2)
    with pytest.raises(oe.InvalidResponse):
        send(client, sb.service_name, [FR1])
    [call] = sb.control.calls()
    assert call["status"] == int(kind[-3:])
    assert sb.control.sent() == []


def test_faults_scoped_to_all_cover_the_clock_route(sb) -> None:
    from worker.ovhcloud.client import make_client

    sb.control.add_fault("503", next=1, scope="all")
    fresh = make_client(sb.base_url, **sb.credentials)
    with pytest.raises(oe.APIError):
        fresh.get("/sms")  # its first request reads /auth/time, which answers 503
    assert fresh.get("/sms") == [sb.service_name]


def test_a_slow_call_is_carried_out_after_its_delay_even_when_the_client_gave_up(sb, clients, send) -> None:
    # Given OVH will take 1.5 s before carrying out the next jobs call
    sb.control.add_fault("slow", next=1, delay_s=1.5)
    client = clients(sb, timeout=(2.0, 0.3))
    client.get("/sms")
    # When a client with a 0.3 s read timeout sends
    with pytest.raises(oe.HTTPError) as caught:
        send(client, sb.service_name, [FR1])
    # Then it times out before anything is sent...
    assert isinstance(caught.value.args[1], requests.ReadTimeout)
    assert sb.control.sent() == []
    # ...and the SMS is sent all the same once the delay has passed
    deadline = time.monotonic() + 10
    while not sb.control.sent() and time.monotonic() < deadline:
        time.sleep(0.05)
    [sms] = sb.control.sent()
    assert sms["receiver"] == FR1
    [call] = sb.control.calls()
    assert call["delayed_s"] == 1.5
    assert call["ended"] - call["time"] >= 1.5


def test_a_client_that_waits_for_a_slow_call_gets_its_answer(sb, clients, send) -> None:
    sb.control.add_fault("slow", next=1, delay_s=0.3)
    client = clients(sb, timeout=(2.0, 5.0))
    started = time.monotonic()
    assert send(client, sb.service_name, [FR1])["validReceivers"] == [FR1]
    assert time.monotonic() - started >= 0.3
    assert [c["status"] for c in sb.control.calls()] == [200]


def test_slow_delays_are_drawn_in_their_range_and_reproducible_for_a_seed(make_sandbox, clients, send) -> None:
    def delays(seed: int) -> list[float]:
        sandbox = make_sandbox(
            seed=seed, faults=[{"kind": "slow", "probability": 1.0, "delay_s": 0.01, "delay_max_s": 0.05}]
        )
        client = clients(sandbox)
        for _ in range(5):
            send(client, sandbox.service_name, [FR1])
        return [c["delayed_s"] for c in sandbox.control.calls()]

    first = delays(5)
    assert first == delays(5)
    assert all(0.01 <= d <= 0.05 for d in first) and len(set(first)) > 1


@pytest.mark.parametrize(
    ("fields", "error"),
    [({"delay_s": -1}, "delay_s must be"), ({"delay_s": 2, "delay_max_s": 1}, "delay_max_s must be")],
)
def test_a_slow_fault_with_a_wrong_delay_is_refused(sb, fields, error) -> None:
    from ovh_sandbox.control import SandboxControlError

    with pytest.raises(SandboxControlError, match=error) as caught:
        sb.control.add_fault("slow", next=1, **fields)
    assert caught.value.status == 400
