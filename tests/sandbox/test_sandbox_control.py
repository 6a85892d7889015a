"""The control API checks its input, and the CLI serves a sandbox a python-ovh client can use."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from ovh_sandbox import SandboxControl, SandboxControlError
from ovh_sandbox.cli import add_arguments
from worker.ovhcloud.client import make_client

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/faults", {"latency_ms": -1}),
        ("PUT", "/faults", {"latency_ms": "fast"}),
        ("PUT", "/faults", {"bogus": 1}),
        ("PUT", "/faults", {"faults": [{"kind": "418", "next": 1}]}),
        ("PUT", "/faults", {"faults": [{"kind": "503"}]}),  # neither probability nor next
        ("PUT", "/faults", {"faults": [{"kind": "503", "probability": 0.5, "next": 1}]}),
        ("PUT", "/faults", {"faults": [{"kind": "503", "probability": 1.5}]}),
        ("PUT", "/faults", {"faults": [{"kind": "503", "next": 0}]}),
        ("PUT", "/faults", {"faults": [{"kind": "503", "next": 1, "scope": "some"}]}),
        ("PUT", "/faults", {"rate_limit_per_s": -2}),
        ("POST", "/faults", {"kind": "503", "next": 1, "colour": "red"}),
        ("PUT", "/credits", {"service": "sms-sandbox-1", "credits": -5}),
        ("PUT", "/credits", {"service": "sms-sandbox-1", "credits": "many"}),
        ("PUT", "/credits", {"service": "sms-sandbox-1"}),
        ("PUT", "/senders", {"service": "sms-sandbox-1", "sender": "X", "status": "maybe"}),
        ("PUT", "/invalid-receivers", {"receivers": [1, 2]}),
        ("PUT", "/failing-receivers", {"receivers": {"+33612345678": "23"}}),
        ("POST", "/consumer-keys", {"rules": [{"method": "PATCH", "path": "/*"}]}),
        ("POST", "/consumer-keys", {"rules": [{"method": "GET"}]}),
        ("POST", "/reset", {"accounts": "yes"}),
    ],
)
def test_bad_control_input_is_400(sb, method, path, body) -> None:
    with pytest.raises(SandboxControlError) as caught:
        sb.control._call(method, path, body)
    assert caught.value.status == 400
    assert sb.control.faults()["faults"] == []


def test_unknown_control_routes_and_accounts(sb) -> None:
    with pytest.raises(SandboxControlError) as caught:
        sb.control._call("GET", "/nothing-here")
    assert caught.value.status == 404
    with pytest.raises(SandboxControlError) as caught:
        sb.control.set_credits("no-such-account", 3)
    assert caught.value.status == 404
    with pytest.raises(SandboxControlError) as caught:
        sb.control._call("GET", "/sent", query={"who": "x"})
    assert caught.value.status == 400


def test_control_works_from_the_ovh_base_url_and_filters_sent(sb, client, send) -> None:
    control = SandboxControl(sb.base_url)
    assert control.health()["ok"] is True
    send(client, sb.service_name, ["+33612345678", "+33612345679"])
    assert [s["receiver"] for s in control.sent(receiver="+33612345679")] == ["+33612345679"]
    assert control.sent(service="other") == []
    calls = control.calls()
    assert [(c["consumer_key"], c["receivers"], c["status"], c["credits"]) for c in calls] == [
        (sb.credentials["consumer_key"], 2, 200, 2.0)
    ]
    counters = control.counters()
    assert (counters["jobs_calls"], counters["jobs_accepted"], counters["sms_sent"]) == (1, 1, 2)


def test_the_control_client_wants_an_http_url() -> None:
    with pytest.raises(ValueError):
        SandboxControl("ftp://example.com")


def test_cli_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--fault", "503:0.25", "--fault", "reset:x2@all", "--rate-limit", "5"])
    assert (args.host, args.port, args.rate_limit) == ("127.0.0.1", 8080, 5.0)
    assert [(f.kind, f.probability, f.next, f.scope) for f in args.fault] == [
        ("503", 0.25, None, "jobs"),
        ("reset", None, 2, "all"),
    ]
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault", "teapot:0.5"])
    assert parser.parse_args(["--fault", "slow:0.1", "--slow-s", "4-8"]).slow_s == (4.0, 8.0)
    assert parser.parse_args([]).slow_s == (5.0, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--slow-s", "soon"])


def test_python_m_worker_sandbox_serves_and_prints_what_to_export(tmp_path) -> None:
    # Given the sandbox started from the command line, from another directory than the repository
    process = subprocess.Popen(
        [sys.executable, "-m", "ovh_sandbox", "--port", "0", "--credits", "42"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", "".join(lines), re.MULTILINE))
        assert exports["OVH_ENDPOINT"].startswith("http://127.0.0.1:")
        # When a python-ovh client uses the printed values
        client = make_client(
            exports["OVH_ENDPOINT"],
            application_key=exports["OVH_APPLICATION_KEY"],
            application_secret=exports["OVH_APPLICATION_SECRET"],
            consumer_key=exports["OVH_CONSUMER_KEY"],
        )
        # Then it reaches the account, with the credits asked for
        assert client.get(f"/sms/{exports['SMS_WORKER_SERVICE_NAME']}")["creditsLeft"] == 42
        client._session.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
        process.stderr.close()


def test_every_address_the_banner_prints_answers() -> None:
    # Given `sms-worker sandbox` started from the command line
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = "".join(iter(process.stdout.readline, "Ctrl-C to stop.\n"))
        # When each control API address of the banner is asked
        (line,) = [line for line in banner.splitlines() if "control API" in line]
        urls = re.findall(r"http://\S+", line)
        assert len(urls) == 2
        for url in urls:
            with urllib.request.urlopen(url.rstrip(")"), timeout=10) as answer:
                # Then it answers, and the control API's root lists its routes
                assert answer.status == 200
                body = json.loads(answer.read())
                if url.endswith("/_sandbox/"):
                    assert "GET /_sandbox/sent" in body["routes"] and "GET /_sandbox/counters" in body["routes"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
