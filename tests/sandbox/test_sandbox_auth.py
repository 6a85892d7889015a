"""Signed requests, checked as OVH does: each failure raises the matching python-ovh exception."""

from __future__ import annotations

import ovh.exceptions as oe
import pytest

from ovh_sandbox.auth import signature

pytestmark = pytest.mark.timeout(30)


def test_signature_matches_python_ovh_test_vectors() -> None:
    secret, consumer, ts = "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk", "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY", "1457018875"
    url = "https://eu.api.ovh.com/1.0/auth"
    assert signature(secret, consumer, "GET", url, "", ts) == "$1$e9556054b6309771395efa467c22e627407461ad"
    body = '{"a":"b","c":"d"}'
    assert signature(secret, consumer, "POST", url, body, ts) == "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1"


def test_auth_time_is_an_unsigned_bare_integer(sb, clients, clock) -> None:
    client = clients(sb)
    response = client.raw_call("GET", "/auth/time", need_auth=False)
    assert response.status_code == 200
    assert response.text.isdigit()
    assert response.headers["X-Ovh-QueryId"]


def test_signed_calls_succeed_and_carry_a_query_id(sb, client) -> None:
    response = client.raw_call("GET", "/sms")
    assert response.status_code == 200
    assert response.json() == [sb.service_name]
    assert response.headers["X-Ovh-QueryId"]


def test_unknown_application_key_is_invalid_key(sb, clients) -> None:
    with pytest.raises(oe.InvalidKey) as caught:
        clients(sb, application_key="not-the-key").get("/sms")
    assert caught.value.response.status_code == 403
    assert caught.value.query_id


def test_unknown_consumer_key_is_invalid_credential(sb, clients) -> None:
    with pytest.raises(oe.InvalidCredential) as caught:
        clients(sb, consumer_key="no-such-consumer-key").get("/sms")
    assert caught.value.response.status_code == 403
    assert caught.value.query_id


def test_wrong_secret_is_an_invalid_signature(sb, clients) -> None:
    with pytest.raises(oe.BadParametersError) as caught:
        clients(sb, application_secret="not-the-secret").post(
            f"/sms/{sb.service_name}/jobs", message="x", receivers=["+33612345678"], sender="SANDBOX"
        )
    assert caught.value.response.status_code == 400
    assert caught.value.response.json()["errorCode"] == "INVALID_SIGNATURE"
    assert caught.value.query_id
    assert sb.control.sent() == []
    assert [c["status"] for c in sb.control.calls()] == [400]


def test_a_skewed_timestamp_is_refused(make_sandbox, clients, clock) -> None:
    # Given a client that read the sandbox's time once
    sandbox = make_sandbox(clock=clock)
    client = clients(sandbox)
    assert client.get("/sms") == [sandbox.service_name]
    # When the server's clock jumps ten minutes ahead (the client's delta is now stale)
    clock.advance(600)
    # Then its signed calls are out of time
    with pytest.raises(oe.BadParametersError) as caught:
        client.get("/sms")
    assert caught.value.response.json()["errorCode"] == "QUERY_TIME_OUT"
    # And a new client, reading /auth/time again, is fine
    assert clients(sandbox).get("/sms") == [sandbox.service_name]


def test_a_call_outside_the_keys_rules_is_not_granted(sb, clients) -> None:
    read_only = sb.control.create_consumer_key([("GET", "/sms/*")])
    client = clients(sb, consumer_key=read_only)
    assert client.get(f"/sms/{sb.service_name}")["name"] == sb.service_name
    with pytest.raises(oe.NotGrantedCall) as caught:
        client.post(f"/sms/{sb.service_name}/jobs", message="x", receivers=["+33612345678"], sender="SANDBOX")
    assert caught.value.response.status_code == 403
    with pytest.raises(oe.NotGrantedCall):
        client.get("/sms")  # "/sms/*" does not cover "/sms" itself, as on OVH
    assert sb.control.sent() == []


def test_a_revoked_key_is_an_invalid_credential(sb, clients) -> None:
    key = sb.control.create_consumer_key([("GET", "/*")])
    client = clients(sb, consumer_key=key)
    assert client.get("/sms")
    assert sb.control.revoke_consumer_key(key) is True
    with pytest.raises(oe.InvalidCredential):
        client.get("/sms")


def test_unknown_routes_and_objects_are_not_found(sb, client) -> None:
    with pytest.raises(oe.ResourceNotFoundError) as caught:
        client.get("/sms/no-such-account")
    assert caught.value.query_id
    with pytest.raises(oe.ResourceNotFoundError):
        client.get(f"/sms/{sb.service_name}/no-such-collection")
    with pytest.raises(oe.ResourceNotFoundError):
        client.get(f"/sms/{sb.service_name}/outgoing/12345")


def test_a_schema_route_the_sandbox_does_not_serve_says_so(sb, client) -> None:
    with pytest.raises(oe.APIError) as caught:
        client.get(f"/sms/{sb.service_name}/phonebooks")
    assert caught.value.response.status_code == 501
    assert "does not implement" in str(caught.value)


def test_rates_need_no_authentication(sb, clients) -> None:
    anonymous = clients(sb, consumer_key="unknown")
    response = anonymous.raw_call("GET", "/sms/rates/destinations?country=fr", need_auth=False)
    assert response.status_code == 200
    assert response.json()["credit"] == 1.0
