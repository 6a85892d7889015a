"""``sms-worker campaign send`` through the CLI, against a worker and the sandbox."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis

from contracts.wire import lane_queue, messages_key, result_key
from tests.campaigns.cli import (
    COOKBOOK_CSV,
    COOKBOOK_MESSAGE,
    e164,
    merged,
    one_line_error,
    sms_worker,
    write_contacts,
)
from tests.waiting import wait_until
from worker.campaigns.rows import request_id


def test_a_campaign_from_the_cookbook_reaches_each_receiver_once_with_its_own_text(
    make_app, sandbox, sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given the cookbook's contacts file, 40 contacts long, with three rows that cannot be sent
    # (the cookbook's own "..." line, a number that is not one, a row without a first name)
    make_app()
    bad = "...\n0100 ;Nobody ;Bad ;1 rue nulle part\n0662000099 ;Noname ; ;2 rue montaigne Paris\n"
    contacts = write_contacts(tmp_path / "contacts.csv", 40, extra=bad)
    # When it is sent with the cookbook's message
    done = sms_worker(
        "campaign", "send", str(contacts), "--message", COOKBOOK_MESSAGE, "--tag", "spring", "--json",
        "--timeout", "90", env=sandbox_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    # Then every good row got its own merged text, once, with the campaign's tag and priority
    sent = sandbox.control.sent()
    assert Counter(s["receiver"] for s in sent) == Counter({e164(n): 1 for n in range(40)})
    assert {s["receiver"]: s["message"] for s in sent} == {e164(n): merged(n) for n in range(40)}
    assert {(s["tag"], s["priority"], s["noStopClause"]) for s in sent} == {("spring", "low", False)}
    assert summary["rows"] == 43 and summary["rejected"] == 3 and summary["queued"] == 40
    assert summary["results"] == {"sent": 40} and summary["waiting"] == 0
    assert summary["credits"] == sum(s["credits"] for s in sent) == summary["estimated_credits"] == 40
    # And the rejects file lists the three rows, with their fields, line and reason
    with open(summary["rejects_file"], encoding="utf-8", newline="") as file:
        rejects = list(csv.reader(file, delimiter=";"))
    assert rejects[0] == ["number", "lastname", "firstname", "address", "line", "reason"]
    assert [(row[4], row[5].split(":")[0]) for row in rejects[1:]] == [
        ("42", "'...'"),
        ("43", "'0100'"),
        ("44", "no value for #firstname#"),
    ]


def test_the_cookbook_file_as_written_is_read_with_its_spaces_and_sent(
    make_app, sandbox, sandbox_env, tmp_path: Path
) -> None:
    make_app()
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(COOKBOOK_CSV, encoding="utf-8")
    done = sms_worker("campaign", "send", str(contacts), "--message", COOKBOOK_MESSAGE, "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert sorted((s["receiver"], s["message"]) for s in sandbox.control.sent()) == [
        (e164(0), merged(0)),
        (e164(1), merged(1)),
    ]
    summary = json.loads(done.stdout)
    assert summary["tag"] == f"campaign-{summary['campaign_id']}" and summary["rejects_file"] is None


def _wait_for_results(client: redis.Redis, ids: list[str], timeout_s: float = 60) -> None:
    wait_until(lambda: all(client.mget([result_key(i) for i in ids])), timeout_s, "the results of the first rows")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["crash", "ctrl-c"])
def test_a_campaign_stopped_half_way_resumes_and_sends_nothing_twice(
    stop: signal.Signals, make_app, sandbox, sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a worker, and a contacts file that arrives through a pipe: the command can only get as
    # far as the rows written into it (the first 120 of 200; chunks of 50 are queued)
    make_app()
    total, written, chunk = 200, 120, 50
    whole = write_contacts(tmp_path / "contacts.csv", total)
    lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    fifo = tmp_path / "contacts.fifo"
    os.mkfifo(fifo)
    args = ["campaign", "send", "--message", COOKBOOK_MESSAGE, "--tag", "resume", "--campaign-id", "resume-test"]
    args += ["--chunk-rows", str(chunk), "--json"]
    first = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args, str(fifo)],
        env=sandbox_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with open(fifo, "w", encoding="utf-8") as pipe:
        pipe.writelines(lines[: 1 + written])
        pipe.flush()
        # When the first two chunks are sent and the command waits for more rows, it is stopped
        _wait_for_results(redis_client, [request_id("resume-test", n + 2) for n in range(2 * chunk)])
        first.send_signal(stop)
        _, stderr = first.communicate(timeout=30)
    if stop == signal.SIGINT:
        assert first.returncode == 130
        assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    assert len(sandbox.control.sent()) == 2 * chunk
    # And the same command is run again, on the whole file
    done = sms_worker(*args, "--timeout", "90", str(whole), env=sandbox_env)
    # Then the rest is sent, nothing twice, and the summary counts the earlier results
    assert done.returncode == 0, done.stderr
    sent = sandbox.control.sent()
    assert Counter(s["receiver"] for s in sent) == Counter({e164(n): 1 for n in range(total)})
    assert {s["receiver"]: s["message"] for s in sent} == {e164(n): merged(n) for n in range(total)}
    summary = json.loads(done.stdout)
    assert (summary["earlier"], summary["queued"], summary["results"]) == (2 * chunk, total - 2 * chunk, {"sent": 200})


def test_running_a_finished_campaign_again_sends_nothing(
    make_app, sandbox, sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    make_app()
    contacts = write_contacts(tmp_path / "contacts.csv", 5)
    args = ["campaign", "send", str(contacts), "--message", COOKBOOK_MESSAGE, "--json"]
    for _ in range(2):
        done = sms_worker(*args, env=sandbox_env)
        assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["queued"], summary["earlier"], summary["results"]) == (0, 5, {"sent": 5})
    # Even once the results are no longer kept (SMS_WORKER_RESULT_TTL_S), nothing is sent again
    redis_client.delete(*redis_client.keys(result_key("*")))
    done = sms_worker(*args, env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"] == {"result_expired": 5}
    assert len(sandbox.control.sent()) == 5


def test_a_number_listed_twice_is_sent_once(make_app, sandbox, sandbox_env, tmp_path: Path) -> None:
    make_app()
    contacts = write_contacts(tmp_path / "contacts.csv", 3, extra="+33662000001 ;Again ;Jean ;elsewhere\n")
    done = sms_worker("campaign", "send", str(contacts), "--message", "Hi #firstname#", "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert sorted(s["receiver"] for s in sandbox.control.sent()) == [e164(0), e164(1), e164(2)]
    rejects = Path(json.loads(done.stdout)["rejects_file"]).read_text(encoding="utf-8")
    assert "+33662000001 is already on line 3" in rejects


def test_dry_run_estimates_parts_and_credits_and_queues_nothing(
    sandbox, sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given 10 contacts, one of them abroad (Germany: 2 credits a part in the sandbox), and a
    # message long enough for two parts once merged
    contacts = write_contacts(tmp_path / "contacts.csv", 9, extra="+4915123456789 ;Weber ;Anna ;Berlin\n")
    message = COOKBOOK_MESSAGE + " " + "x" * 60
    done = sms_worker("campaign", "send", str(contacts), "--message", message, "--dry-run", "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["rejected"], summary["parts"]) == (10, 0, 20)
    assert summary["estimated_credits"] == 9 * 2 * 1 + 2 * 2
    # And it shows the first row's SMS as merged, as the README says, in JSON and in the table
    assert summary["example"] == {"line": 2, "text": merged(0) + " " + "x" * 60}
    table = sms_worker("campaign", "send", str(contacts), "--message", message, "--dry-run", env=sandbox_env)
    assert f"line 2             {merged(0)} {'x' * 60}" in table.stdout.splitlines()
    # Then nothing was queued or sent, and no request id was taken
    assert sandbox.control.sent() == []
    assert [k for k in redis_client.keys() if not k.startswith(b"sms-worker:rates")] == []


def test_at_sets_the_differed_period_in_minutes(make_app, sandbox, sandbox_env, tmp_path: Path) -> None:
    make_app()
    contacts = write_contacts(tmp_path / "contacts.csv", 2)
    at = (datetime.now().astimezone() + timedelta(minutes=10)).isoformat(timespec="seconds")
    done = sms_worker("campaign", "send", str(contacts), "--message", "Hi", "--at", at, "--json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert {s["differedPeriod"] for s in sandbox.control.sent()} == {10}
    assert json.loads(done.stdout)["differed_period"] == 10


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing file", "cannot read"),
        ("unknown placeholder", "has no 'coupon' column"),
        ("no number column", "no 'phone' column"),
        ("past time", "is in the past"),
        ("bad sender", "sender"),
        ("not UTF-8", "latin.csv is not utf-8-sig text"),
        ("empty file", "is empty"),
    ],
)
def test_mistakes_get_one_line_and_nothing_is_queued(
    case: str, expected: str, sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    contacts = write_contacts(tmp_path / "contacts.csv", 3)
    latin = tmp_path / "latin.csv"
    latin.write_text("number;firstname\n0662000000;Chloé\n", encoding="latin-1")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    args = {
        "missing file": [str(tmp_path / "nope.csv"), "--message", "Hi"],
        "unknown placeholder": [str(contacts), "--message", "Your code #coupon#"],
        "no number column": [str(contacts), "--message", "Hi", "--number-column", "phone"],
        "past time": [str(contacts), "--message", "Hi", "--at", "2001-01-01T09:00"],
        "bad sender": [str(contacts), "--message", "Hi", "--sender", "far too long a sender"],
        "not UTF-8": [str(latin), "--message", "Hi #firstname#"],
        "empty file": [str(empty), "--message", "Hi"],
    }[case]
    done = sms_worker("campaign", "send", *args, env=sandbox_env)
    assert done.returncode == 2
    assert expected in one_line_error(done)
    assert redis_client.dbsize() == 0
    assert not (tmp_path / "contacts.rejects.csv").exists()


def test_variants_comma_tab_bom_and_another_number_column(make_app, sandbox, sandbox_env, tmp_path: Path) -> None:
    make_app()
    variants = {
        "comma.csv": ("phone,firstname\n+33662000000,Pierre\n", "utf-8"),
        "tab.csv": ("Phone\tfirstname\n+33662000001\tJean\n", "utf-8"),
        "bom.csv": ('phone;firstname\n+33662000002;"Marie; la grande"\n', "utf-8-sig"),
    }
    for name, (text, encoding) in variants.items():
        path = tmp_path / name
        path.write_text(text, encoding=encoding)
        done = sms_worker(
            "campaign", "send", str(path), "--message", "Hi #firstname#", "--number-column", "phone", "--json",
            env=sandbox_env,
        )  # fmt: skip
        assert done.returncode == 0, (name, done.stderr)
    assert sorted((s["receiver"], s["message"]) for s in sandbox.control.sent()) == [
        (e164(0), "Hi Pierre"),
        (e164(1), "Hi Jean"),
        (e164(2), "Hi Marie; la grande"),
    ]


def test_without_a_worker_running_it_again_queues_nothing_twice(
    sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    contacts = write_contacts(tmp_path / "contacts.csv", 30)
    args = ["campaign", "send", str(contacts), "--message", "Hi #firstname#", "--no-wait", "--json"]
    first, again = (json.loads(sms_worker(*args, env=sandbox_env).stdout) for _ in range(2))
    assert (first["queued"], again["queued"], again["earlier"], again["waiting"]) == (30, 0, 30, 30)
    packs = [json.loads(body) for body in redis_client.hvals(messages_key(lane_queue("low")))]
    assert sum(len(p["args"][0]) if isinstance(p["args"][0], list) else 1 for p in packs) == 30


def test_another_encoding_is_read_when_named(sandbox_env, tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_text("number;firstname\n0662000000;Chloé\n", encoding="latin-1")
    args = ["campaign", "send", str(latin), "--message", "Hi #firstname#", "--dry-run", "--json"]
    done = sms_worker(*args, "--encoding", "latin-1", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["rows"], json.loads(done.stdout)["rejected"]) == (1, 0)


def test_the_campaign_id_as_the_summary_prints_it_resumes_that_campaign(
    sandbox_env, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a campaign queued with no worker running, whose summary prints its id
    contacts = write_contacts(tmp_path / "contacts.csv", 30)
    args = ["campaign", "send", str(contacts), "--message", "Hi #firstname#", "--no-wait"]
    first = sms_worker(*args, env=sandbox_env)
    assert first.returncode == 0, first.stderr
    (printed,) = [line.split()[1] for line in first.stdout.splitlines() if line.startswith("CAMPAIGN")]
    assert printed.startswith("campaign-")
    # When a row is added to the file (a new digest) and the campaign resumed with the id as printed
    write_contacts(contacts, 31)
    again = json.loads(sms_worker(*args, "--campaign-id", printed, "--json", env=sandbox_env).stdout)
    # Then it is the same campaign: only the new row is queued, under the same tag
    assert (again["campaign_id"], again["tag"]) == (printed.removeprefix("campaign-"), printed)
    assert (again["queued"], again["earlier"]) == (1, 30)
    packs = [json.loads(body) for body in redis_client.hvals("dramatiq:sms.low.msgs")]
    assert sum(len(p["args"][0]) if isinstance(p["args"][0], list) else 1 for p in packs) == 31
