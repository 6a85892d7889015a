"""``sms-worker callbacks setup``: OVH's callbacks pointed at the inbound service, through the API."""

from __future__ import annotations

import json

import pytest

from tests.after_send.conftest import TOKEN, callbacks_setup
from worker.ovhcloud.client import make_client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(sandbox_env, redis_client) -> dict[str, str]:
    return {**sandbox_env, "SMS_WORKER_INBOUND_TOKEN": TOKEN}


def test_setup_sets_the_account_and_every_api_user(env, sandbox) -> None:
    # Given an account with two API users
    client = make_client(sandbox.base_url, **sandbox.credentials)
    sn = sandbox.service_name
    for login in ("alice", "bob"):
        client.post(f"/sms/{sn}/users", login=login, password="abcd1234")
    # When callbacks are set up for the inbound service's public URL
    done = callbacks_setup(env, "--url", "http://127.0.0.1:8090/", "--json")
    # Then the account has the three URLs, with the token, and each user its two
    assert done.returncode == 0, done.stderr
    account = client.get(f"/sms/{sn}")
    base = f"http://127.0.0.1:8090/ovh/{TOKEN}"
    assert account["callBack"] == f"{base}/delivery"
    assert account["stopCallBack"] == f"{base}/stop?service={sn}"
    assert account["smsResponse"]["cgiUrl"] == f"{base}/reply?service={sn}"
    assert account["smsResponse"]["responseType"] == "cgi"
    for login in ("alice", "bob"):
        user = client.get(f"/sms/{sn}/users/{login}")
        assert (user["callBack"], user["stopCallBack"]) == (f"{base}/delivery", f"{base}/stop?service={sn}")
    # and what it printed names each target but never the token
    printed = json.loads(done.stdout)
    assert [row["target"] for row in printed] == [sn, f"{sn}/users/alice", f"{sn}/users/bob"]
    assert TOKEN not in done.stdout + done.stderr and "/ovh/****/delivery" in done.stdout


def test_setup_refuses_plain_http_to_another_machine(env) -> None:
    done = callbacks_setup(env, "--url", "http://sms-inbound.example.com")
    assert done.returncode == 2
    assert "https://" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_setup_needs_the_token(env) -> None:
    done = callbacks_setup(
        {k: v for k, v in env.items() if k != "SMS_WORKER_INBOUND_TOKEN"}, "--url", "https://x.example.com"
    )
    assert done.returncode == 2 and "SMS_WORKER_INBOUND_TOKEN" in done.stderr


def test_setup_says_what_ovh_refused(env) -> None:
    done = callbacks_setup(env, "--url", "https://x.example.com", "--service", "sms-nope-1")
    assert done.returncode == 1
    assert "OVH refused" in done.stderr and "Traceback" not in done.stderr
