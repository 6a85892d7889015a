"""``sms-worker send`` as a developer would use it, against a running worker."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest


def test_send_and_wait_prints_the_result(make_app, redis_url, sandbox) -> None:
    make_app()
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "send",
            "--to",
            "+33612345678",
            "--message",
            "Hello from the CLI",
            "--priority",
            "high",
            "--wait",
            "--timeout",
            "30",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    request_id, rest = done.stdout.split("\n", 1)
    result = json.loads(rest)
    assert (result["request_id"], result["status"]) == (request_id, "sent")
    assert [s["message"] for s in sandbox.control.sent()] == ["Hello from the CLI"]


def test_send_refuses_bad_input_before_queueing(redis_url, redis_client) -> None:
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "send", "--to", "+33612345678", "--message", ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "message" in done.stderr
    assert redis_client.dbsize() == 0


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "worker.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_send_wait_without_a_worker_says_the_request_stays_queued(redis_url, redis_client) -> None:
    # Given no worker running, when a send waits for its result
    done = cli("send", "--to", "+33612345678", "--message", "Hello", "--wait", "--timeout", "0.5",
               env={**os.environ, "REDIS_URL": redis_url})  # fmt: skip
    # Then one line says the request stays queued (and not to send it again), with a non-zero exit
    line = one_line(done)
    request_id = done.stdout.strip()
    assert f"no result for {request_id}" in line and "stays queued" in line and "do not send it again" in line
    assert done.returncode == 3
    assert redis_client.llen("dramatiq:sms.medium") == 1


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--message", "x" * 2000], "--message is too long: message needs 14 SMS parts"),
        (["--message", ""], "--message is empty"),
        (["--message", "   "], "--message is empty"),
        (["--message", "Hello #firstname#"], "--message uses #firstname#, which no --var gives"),
        (["--message", "Hello", "--var", "firstname=Jo"], "--var firstname: the message has no #firstname#"),
        (["--message", "Hello", "--sender", "a sender far too long"], "--sender: String should have at most 16"),
        (["--message", "Hello", "--tag", "t" * 129], "--tag: String should have at most 128 characters"),
        (["--message", "Hello", "--to", "12"], "--to '12': not a valid phone number"),
    ],
    ids=["2000 chars", "empty", "blank", "unknown variable", "unused variable", "sender", "tag", "number"],
)
def test_send_checks_what_campaign_send_checks_before_queueing(redis_url, redis_client, options, expected) -> None:
    done = cli("send", "--to", "+33612345678", *options, env={**os.environ, "REDIS_URL": redis_url})
    assert done.returncode == 2
    assert one_line(done).startswith(f"sms-worker: {expected}")
    assert redis_client.dbsize() == 0


def test_send_fills_variables_given_with_var(make_app, redis_url, sandbox) -> None:
    make_app()
    done = cli("send", "--to", "+33612345678", "--message", "Hello #name#, code #code#", "--var", "name=Jo",
               "--var", "code=42", "--wait", "--timeout", "30", env={**os.environ, "REDIS_URL": redis_url})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [s["message"] for s in sandbox.control.sent()] == ["Hello Jo, code 42"]


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def test_every_option_of_every_command_has_a_help_text() -> None:
    from worker.cli import build_parser

    missing = [
        f"{command} {'/'.join(a.option_strings) or a.dest}" for command, a in _options(build_parser()) if not a.help
    ]
    assert missing == []
    send_help = cli("send", "--help", env=dict(os.environ)).stdout
    for option in ("--message MESSAGE", "--sender SENDER", "--tag TAG"):
        (line,) = [line for line in send_help.splitlines() if line.strip().startswith(option)]
        assert len(line.strip()) > len(option) + 10, f"{option} has no help: {line!r}"


@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["campaign", "send", "contacts.csv", "--message", "Hi", "--priorty", "high"], "sms-worker campaign send"),
        (["users", "show", "alice", "--jsn"], "sms-worker users show"),
        (["send", "--to", "+33612345678", "--message", "Hi", "--wiat"], "sms-worker send"),
        (["dlq", "list", "--all"], "sms-worker dlq list"),
    ],
)
def test_an_unknown_option_gets_the_usage_of_its_own_subcommand(args, usage) -> None:
    done = cli(*args, env=dict(os.environ))
    # one line naming the subcommand, the option it does not know, and where its usage is
    assert done.returncode == 2
    bad = args[-2] if args[-1] == "high" else args[-1]
    assert done.stderr.splitlines() == [
        f"{usage}: unrecognized arguments: {' '.join(args[args.index(bad) :])} (see {usage} --help)"
    ]
