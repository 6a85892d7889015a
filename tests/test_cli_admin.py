"""``sms-worker users`` and ``sms-worker account`` through the CLI: what the sandbox holds after."""

from __future__ import annotations

import json
import os
import re

import redis

from tests.campaigns.cli import one_line_error, sms_worker
from tests.quota_fixtures import ovh
from worker.accounting.quotas import QuotaStore


def test_users_created_and_updated_through_the_cli_are_what_the_sandbox_holds(
    sandbox, sandbox_env, redis_client: redis.Redis
) -> None:
    client = ovh(sandbox)
    users = f"/sms/{sandbox.service_name}/users"
    # When a user is created with a quota, an SMS alert, callbacks and IP restrictions
    done = sms_worker(
        "users", "create", "alice", "--quota", "100", "--alert-threshold", "10", "--alert-support", "sms",
        "--alert-number", "0612345678", "--callback", "https://example.org/dlr", "--stop-callback",
        "https://example.org/stop", "--ip", "192.0.2.1", "--ip", "192.0.2.2", "--json", env=sandbox_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Then the sandbox holds exactly that, with the password printed once (and never in the output)
    alice = client.get(f"{users}/alice")
    password = re.search(r"password of alice: ([A-Za-z0-9]{8}) ", done.stderr)
    assert password is not None and alice["password"] == password.group(1)
    assert alice["quotaInformations"] == {"quotaLeft": 100.0, "quotaStatus": "active"}
    assert alice["alertThresholdInformations"] == {
        "alertEmail": "",
        "alertNumber": "+33612345678",
        "alertThreshold": 10,
        "support": "sms",
    }
    assert (alice["callBack"], alice["stopCallBack"]) == ("https://example.org/dlr", "https://example.org/stop")
    assert alice["ipRestrictions"] == ["192.0.2.1", "192.0.2.2"]
    shown = json.loads(done.stdout)
    assert shown == {k: v for k, v in alice.items() if k != "password"}, "one user: an object"
    # And the worker's own quota follows OVH's
    store = QuotaStore(redis_client)
    state = store.get(sandbox.service_name, "alice")
    assert state is not None
    assert (state.quota, state.threshold, state.alert_number, state.ovh_quota) == (100.0, 10.0, "+33612345678", True)
    # When the quota is raised and the IP restriction lifted
    done = sms_worker("users", "update", "alice", "--quota", "250", "--no-ip-restriction", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    alice = client.get(f"{users}/alice")
    assert alice["quotaInformations"] == {"quotaLeft": 250.0, "quotaStatus": "active"}
    assert alice["ipRestrictions"] == []
    assert alice["callBack"] == "https://example.org/dlr"  # untouched
    state = store.get(sandbox.service_name, "alice")
    assert state is not None and state.quota == 250.0
    assert "alice" in done.stdout and "250" in done.stdout and password.group(1) not in done.stdout
    # And list and show agree with the sandbox
    listed = json.loads(sms_worker("users", "list", "--json", env=sandbox_env).stdout)
    assert [u["login"] for u in listed] == client.get(users) == ["alice"]
    assert "password" not in listed[0]
    shown = json.loads(sms_worker("users", "show", "alice", "--json", env=sandbox_env).stdout)
    assert shown == {k: v for k, v in alice.items() if k != "password"}, "one user: an object"
    # When the user is deleted (which needs --yes), it is gone from OVH and from the worker
    refused = sms_worker("users", "delete", "alice", env=sandbox_env)
    assert refused.returncode == 2 and "--yes" in one_line_error(refused)
    done = sms_worker("users", "delete", "alice", "--yes", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert client.get(users) == []
    assert store.get(sandbox.service_name, "alice") is None


def test_users_mistakes_and_refusals_get_one_line(sandbox, sandbox_env, redis_url: str) -> None:
    cases = [
        (["users", "show", "nobody"], 1, "OVH refused the call: ResourceNotFoundError"),
        (["users", "create", "bad/login"], 2, "login 'bad/login'"),
        (["users", "create", "bob", "--password", "short"], 2, "8 letters and digits"),
        (["users", "update", "bob", "--ip", "300.1.1.1"], 2, "--ip"),
        (["users", "update", "bob", "--alert-number", "12"], 2, "--alert-number"),
    ]
    for args, code, expected in cases:
        done = sms_worker(*args, env=sandbox_env)
        assert done.returncode == code, (args, done.stderr)
        assert expected in one_line_error(done), args
    no_credentials = {k: v for k, v in os.environ.items() if not k.startswith("OVH_")}
    done = sms_worker("users", "list", env={**no_credentials, "SMS_WORKER_SERVICE_NAME": "sms-x-1"})
    assert done.returncode == 2 and "OVH credentials are missing" in one_line_error(done)


def test_account_shows_credits_senders_and_the_workers_quotas(sandbox, sandbox_env, redis_client) -> None:
    # Given a user with a quota, created through the CLI
    assert sms_worker("users", "create", "carol", "--quota", "40", env=sandbox_env).returncode == 0
    # When the account is shown
    done = sms_worker("account", "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    # Then it is what the sandbox holds, and what the worker holds
    account = ovh(sandbox).get(f"/sms/{sandbox.service_name}")
    assert (shown["credits_left"], shown["credits_held_by_quotas"]) == (account["creditsLeft"], 40.0)
    assert {s["sender"]: s["status"] for s in shown["senders"]} == {
        "PENDINGSNDR": "waitingValidation",
        "SANDBOX": "enable",
        "SandboxInfo": "enable",
    }
    assert [(u["login"], u["quota"], u["reserved"], u["spent"]) for u in shown["worker"]["users"]] == [
        ("carol", 40.0, 0.0, 0.0)
    ]
    table = sms_worker("account", env=sandbox_env)
    assert table.returncode == 0 and "waitingValidation" in table.stdout and "carol" in table.stdout
