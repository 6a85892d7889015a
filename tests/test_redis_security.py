"""Redis over TLS with a private CA, and as an ACL user: the worker, the producer and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.redis_connection import connect
from devstack.embedded_redis import EmbeddedRedis
from tests.tls_proxy import TlsProxy, make_ca


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=env, capture_output=True, text=True,
                          timeout=90)  # fmt: skip


def send_and_wait(env: dict[str, str]) -> dict[str, Any]:
    done = cli("send", "--to", "+33612345678", "--message", "Hello", "--wait", "--timeout", "60", env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.split("\n", 1)[1])
    return result


def test_tls_with_a_private_ca(make_app: Callable[..., Any], sandbox: Any, sandbox_env: dict[str, str],
                               tmp_path: Path) -> None:  # fmt: skip
    ca, cert, key = make_ca(tmp_path)
    with EmbeddedRedis() as server, TlsProxy(server.port, cert, key) as proxy:
        url = f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={ca}"
        # Given a worker whose every client goes through TLS, verifying the server with the CA file
        app = make_app(redis_url=url)
        # When the CLI's producer sends over TLS too, then the SMS is sent
        assert send_and_wait({**sandbox_env, "REDIS_URL": url})["status"] == "sent"
        assert [s["message"] for s in sandbox.control.sent()] == ["Hello"]
        # And a client that does not trust the CA is refused, in one line
        done = cli("health", env={**sandbox_env, "REDIS_URL": f"rediss://127.0.0.1:{proxy.port}/0"})
        assert done.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stdout.upper(), done.stdout + done.stderr
        app.stop()


def test_an_acl_user_with_a_password(make_app: Callable[..., Any], sandbox: Any, sandbox_env: dict[str, str]) -> None:
    with EmbeddedRedis() as server:
        # Given a Redis whose default user is off and whose one user is the worker's
        admin = connect(server.url)
        admin.execute_command("ACL", "SETUSER", "sms", "on", ">s3cret-pw", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
        admin.close()
        url = f"redis://sms:s3cret-pw@127.0.0.1:{server.port}/0"
        # When a worker and the CLI use that user, then the SMS is sent
        app = make_app(redis_url=url)
        assert send_and_wait({**sandbox_env, "REDIS_URL": url})["status"] == "sent"
        # And a wrong password is one line that does not repeat it
        done = cli("quotas", env={**sandbox_env, "REDIS_URL": f"redis://sms:not-it@127.0.0.1:{server.port}/0"})
        assert done.returncode == 1
        assert done.stderr.startswith("sms-worker: Redis refused the password in REDIS_URL"), done.stderr
        assert "not-it" not in done.stderr and done.stderr.count("\n") == 1
        app.stop()
