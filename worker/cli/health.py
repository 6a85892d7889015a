"""``sms-worker health [--ready]``: an exec probe for Kubernetes, or a check for a person.

Asks the worker running beside it: ``GET /healthz`` (or ``/readyz`` with ``--ready``) on
``127.0.0.1:$SMS_WORKER_METRICS_PORT``; prints its one-line answer and exits 0 when healthy,
1 when not. Without a metrics port there is no process to ask: it checks that Redis answers and
that at least one worker holds a lease there (an ``sms-worker run`` is alive).
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request

from worker.cli.common import load_settings, require_redis
from worker.errors import ConfigurationError

#: Longest the probe waits for an answer (seconds); keep it below the probe's own timeout.
TIMEOUT_S = 5.0

#: Addresses that mean "every interface": the probe then asks over loopback.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ready", action="store_true", help="ask /readyz (Redis, OVH, sender) instead of /healthz")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.metrics_port is None:
        return _workers_alive(settings)
    if settings.metrics_port == 0:
        raise ConfigurationError("SMS_WORKER_METRICS_PORT is 0 (any free port): health needs the port the worker uses")
    host = "127.0.0.1" if settings.metrics_host in _WILDCARDS else settings.metrics_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    url = f"http://{host}:{settings.metrics_port}/{'readyz' if args.ready else 'healthz'}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            print(_line(response.read()))
            return 0
    except urllib.error.HTTPError as exc:  # 503: the worker says what is wrong
        print(f"{exc.code}: {_line(exc.read())}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"no worker answers on {url}: {reason}")
        return 1


def _line(body: bytes) -> str:
    return " ".join(body.decode(errors="replace").split())


def _workers_alive(settings: object) -> int:
    """Without a metrics port: Redis answers and at least one worker holds a lease in it."""
    from worker.attempts.lease import live_workers
    from worker.ops.readiness import NotReady, check_redis, redis_client

    client = redis_client(require_redis(settings, "health"))
    try:
        check_redis(client)
        workers = live_workers(client)
    except NotReady as exc:
        print(exc)
        return 1
    finally:
        client.close()
    if not workers:
        print("no worker is running: Redis answers, but no sms-worker run holds a lease in it")
        return 1
    print(f"{len(workers)} worker(s) hold a lease in Redis (SMS_WORKER_METRICS_PORT is not set: no endpoint to ask)")
    return 0
