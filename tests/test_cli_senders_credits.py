"""``sms-worker senders``, ``credits`` and ``rates`` through the CLI: what the sandbox holds after."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from typing import Any

import redis

from tests.campaigns.cli import one_line_error
from tests.quota_fixtures import ovh
from worker.store import keys


def sms_worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as a script runs it: no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def on_a_terminal(*args: str, env: dict[str, str], answer: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a person runs it, typing ``answer`` when asked."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            env=env,
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(terminal)
        os.write(controller, f"{answer}\n".encode())  # the terminal keeps the line until it is read
        stdout, stderr = process.communicate(timeout=60)
    finally:
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def no_secret_in(done: subprocess.CompletedProcess[str], sandbox: Any) -> None:
    secrets = (sandbox.credentials["application_secret"], sandbox.credentials["consumer_key"])
    assert not any(secret in done.stdout + done.stderr for secret in secrets)


# -- senders ---------------------------------------------------------------------------------------


def test_a_sender_is_declared_followed_and_deleted_through_the_cli(sandbox, sandbox_env, redis_client) -> None:
    sn, client = sandbox.service_name, ovh(sandbox)
    # When a sender is declared
    done = sms_worker(
        "senders", "add", "MyShop", "--reason", "our brand, Kbis attached", "--description", "the shop", "--json",
        env=sandbox_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    no_secret_in(done, sandbox)
    # Then OVH holds it, waiting for validation; the command says validation is manual and how to follow it
    [shown] = json.loads(done.stdout)
    assert shown == client.get(f"/sms/{sn}/senders/MyShop")
    assert (shown["status"], shown["description"]) == ("waitingValidation", "the shop")
    assert "validates senders by hand" in done.stderr and "sms-worker senders show MyShop" in done.stderr
    # And the worker's cache of senders knows it, so its replicas refuse requests from it at once
    assert redis_client.hget(keys.senders(sn), "MyShop") == b"waitingValidation"
    # When OVH's moderator refuses it, show and list say so, with OVH's comment
    sandbox.control.set_sender(sn, "MyShop", "refused", comment="No supporting document")
    done = sms_worker("senders", "show", "MyShop", env=sandbox_env)
    assert done.returncode == 0
    [row] = [line for line in done.stdout.splitlines() if line.startswith("MyShop")]
    assert "refused" in row and "No supporting document" in row
    listed = json.loads(sms_worker("senders", "list", "--json", env=sandbox_env).stdout)
    assert listed == [client.get(f"/sms/{sn}/senders/{name}") for name in client.get(f"/sms/{sn}/senders")]
    # When it is deleted (which needs --yes), OVH and the worker's cache forget it
    refused = sms_worker("senders", "delete", "MyShop", env=sandbox_env)
    assert refused.returncode == 2 and "--yes" in one_line_error(refused)
    assert "MyShop" in client.get(f"/sms/{sn}/senders")
    done = sms_worker("senders", "delete", "MyShop", "--yes", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert "MyShop" not in client.get(f"/sms/{sn}/senders")
    assert redis_client.hget(keys.senders(sn), "MyShop") == b"missing"


def test_sender_mistakes_get_one_line_before_ovh_is_called(sandbox, sandbox_env, redis_client) -> None:
    calls_before = sandbox.control.counters()["requests"]
    cases = [
        (["senders", "add", "MyShopIsTooLong", "--reason", "r"], "15 characters; OVH takes 11 at most"),
        (["senders", "add", "Caf\u00e9", "--reason", "r"], "'\u00e9' not allowed"),
        (["senders", "add", "My!Shop", "--reason", "r"], "'!' not allowed"),
        (["senders", "add", "12", "--reason", "r"], "3 to 15 digits"),
        (["senders", "add", " MyShop", "--reason", "r"], "no space at either end"),
        (["senders", "add", "MyShop"], "--reason"),
        (["senders", "add", "MyShop", "--reason", "r", "--description", "d" * 41], "--description: 40"),
        (["senders", "add", "MyShop", "--reason", "r" * 251], "--reason: 1 to 250"),
    ]
    for args, expected in cases:
        done = sms_worker(*args, env=sandbox_env)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in one_line_error(done), args
    assert sandbox.control.counters()["requests"] == calls_before
    # OVH's own refusals are one line too
    done = sms_worker("senders", "add", "SANDBOX", "--reason", "r", env=sandbox_env)
    assert done.returncode == 1 and "OVH refused the call: ResourceConflictError" in one_line_error(done)
    done = sms_worker("senders", "show", "Nobody", env=sandbox_env)
    assert done.returncode == 1 and "ResourceNotFoundError" in one_line_error(done)


# -- credits ---------------------------------------------------------------------------------------


def test_credits_are_priced_then_ordered_only_with_a_confirmation(sandbox, sandbox_env) -> None:
    sn, client = sandbox.service_name, ovh(sandbox)
    sandbox.control.set_credits(sn, 10)
    # The price of 1,000 credits: OVH's quote, no order
    done = sms_worker("credits", "price", "--quantity", "1000", "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    quote = json.loads(done.stdout)
    assert quote["order"] == client.get(f"/order/sms/{sn}/credits", quantity=1000)
    assert quote["ordered"] is False and sandbox.control.orders() == []
    table = sms_worker("credits", "price", "--quantity", "1000", env=sandbox_env)
    assert "72.00 \u20ac" in table.stdout and "60.00 \u20ac" in table.stdout
    # A script that does not confirm orders nothing, and is told why
    done = sms_worker("credits", "order", "--quantity", "1000", env=sandbox_env)
    assert done.returncode == 2
    assert "not ordered: no terminal to confirm on; add --yes" in one_line_error(done)
    # A person who answers no orders nothing; the question gave the price
    done = on_a_terminal("credits", "order", "--quantity", "1000", env=sandbox_env, answer="n")
    assert done.returncode == 1 and "72.00 \u20ac with tax? [y/N]" in done.stderr
    assert sandbox.control.orders() == []
    # A person who answers yes gets a purchase order and its link
    done = on_a_terminal("credits", "order", "--quantity", "1000", env=sandbox_env, answer="y")
    assert done.returncode == 0, done.stderr
    [order] = sandbox.control.orders()
    assert (order["quantity"], order["paid"]) == (1000, False)
    assert order["url"] in done.stdout and str(order["orderId"]) in done.stdout
    no_secret_in(done, sandbox)
    # A script confirms with --yes
    done = sms_worker("credits", "order", "--quantity", "500", "--yes", "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    ordered = json.loads(done.stdout)
    assert ordered["ordered"] is True and ordered["order"]["url"] == sandbox.control.orders()[1]["url"]
    # Credits arrive once the order is paid, not before
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 10.0
    sandbox.control.pay_order(order["orderId"])
    shown = json.loads(sms_worker("credits", "--json", env=sandbox_env).stdout)
    assert shown["credits_left"] == 1010.0
    # Quantities OVH does not sell are refused before anything is asked
    done = sms_worker("credits", "order", "--quantity", "10000000", "--yes", env=sandbox_env)
    assert done.returncode == 2 and "100 to 1,000,000" in one_line_error(done)
    assert len(sandbox.control.orders()) == 2


def test_the_automatic_top_up_is_set_with_a_confirmation_and_turned_off(sandbox, sandbox_env) -> None:
    sn, client = sandbox.service_name, ovh(sandbox)
    for args, code, expected in [
        (["--below", "50", "--amount", "300", "--yes"], 2, "one of 100, 200, 250, 500, 1000, 5000, 10000"),
        (["--below", "50"], 2, "give --below and --amount, or --off"),
        (["--off", "--amount", "100"], 2, "--off takes neither"),
        (["--below", "50", "--amount", "1000"], 2, "not set: no terminal to confirm on"),
    ]:
        done = sms_worker("credits", "auto-topup", *args, env=sandbox_env)
        assert done.returncode == code and expected in one_line_error(done), args
    assert client.get(f"/sms/{sn}")["automaticRecreditAmount"] is None
    done = sms_worker("credits", "auto-topup", "--below", "50", "--amount", "1000", "--yes", "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["auto_topup"] == {"amount": 1000, "below": 50.0}
    account = client.get(f"/sms/{sn}")
    assert (account["automaticRecreditAmount"], account["creditThresholdForAutomaticRecredit"]) == (1000, 50.0)
    table = sms_worker("credits", env=sandbox_env)
    assert "1,000 credits when fewer than 50 are left" in table.stdout
    done = sms_worker("credits", "auto-topup", "--off", env=sandbox_env)
    assert done.returncode == 0 and "automatic top-up  off" in done.stdout
    assert client.get(f"/sms/{sn}")["automaticRecreditAmount"] is None


def test_credits_are_transferred_only_with_a_confirmation(sandbox, sandbox_env) -> None:
    sn, client = sandbox.service_name, ovh(sandbox)
    sandbox.control.set_credits(sn, 100)
    sandbox.control.add_account("sms-other-1", credits=0)
    cases = [
        (["--to", sn, "--amount", "5", "--yes"], 2, "that is the account the credits come from"),
        (["--to", "sms-other-1", "--amount", "0", "--yes"], 2, "a number of credits above 0"),
        (["--to", "bad/name", "--amount", "5", "--yes"], 2, "not an OVH SMS account name"),
        (["--to", "sms-other-1", "--amount", "5"], 2, "not transferred from"),
        (["--to", "sms-other-1", "--amount", "500", "--yes"], 1, "OVH refused the call: APIError: Not enough credits"),
        (["--to", "sms-nowhere-1", "--amount", "5", "--yes"], 1, "ResourceNotFoundError"),
    ]
    for args, code, expected in cases:
        done = sms_worker("credits", "transfer", *args, env=sandbox_env)
        assert done.returncode == code and expected in one_line_error(done), args
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 100.0
    done = sms_worker(
        "credits", "transfer", "--to", "sms-other-1", "--amount", "30", "--yes", "--json", env=sandbox_env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"from": sn, "to": "sms-other-1", "credits": 30.0, "credits_left": 70.0}
    assert (client.get(f"/sms/{sn}")["creditsLeft"], client.get("/sms/sms-other-1")["creditsLeft"]) == (70.0, 30.0)


# -- rates -----------------------------------------------------------------------------------------


def test_rates_per_destination_need_no_credentials(sandbox, sandbox_env, redis_client: redis.Redis) -> None:
    client = ovh(sandbox)
    done = sms_worker("rates", "--country", "fr,BE,de", "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        client.get("/sms/rates/destinations", _need_auth=False, country=c) for c in ("fr", "be", "de")
    ]
    # without OVH credentials (public rates), as a table
    anonymous = {k: v for k, v in sandbox_env.items() if k not in ("OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET",
                                                                   "OVH_CONSUMER_KEY")}  # fmt: skip
    done = sms_worker("rates", "--country", "be", env=anonymous)
    assert done.returncode == 0, done.stderr
    [row] = [line.split() for line in done.stdout.splitlines() if line.startswith("Belgium")]
    assert row[1:3] == ["BE", "1.5"]
    # by default: the default region's, and every country the worker has priced
    redis_client.hset(keys.RATES, "it", json.dumps({"credit": 1.5, "at": 0}))
    done = sms_worker("rates", "--json", env=sandbox_env)
    assert [r["countryCode"] for r in json.loads(done.stdout)] == ["fr", "it"]
    for args, expected in [(["--country", "fra"], "two-letter ISO codes"), (["--country", ","], "two-letter")]:
        done = sms_worker("rates", *args, env=sandbox_env)
        assert done.returncode == 2 and expected in one_line_error(done)
    done = sms_worker("rates", "--country", "xx", env=sandbox_env)
    assert done.returncode == 1 and "CountryEnum" in one_line_error(done)
