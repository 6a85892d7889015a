"""``sms-worker run``: one worker process (accept actors, dispatchers) until SIGTERM.

It checks first that Redis answers, that OVH accepts the credentials and that the default
sender is usable, and exits 2 with one line otherwise: a worker that would only loop on
errors is better not started (Kubernetes shows the line and backs off).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from contracts.wire import LANES
from worker.cli.common import check_production_config, load_settings, preflight
from worker.errors import ConfigurationError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", help=f"comma-separated subset of {','.join(LANES)} (default: all)")
    parser.add_argument("--threads", type=int, help="accept threads (default SMS_WORKER_THREADS or 1)")
    parser.add_argument("--dispatchers", type=int, help="dispatch threads (default SMS_WORKER_DISPATCHERS or 4)")


def run(args: argparse.Namespace) -> int:
    from worker.app import build_app

    settings = load_settings(lanes=args.lanes, threads=args.threads, dispatchers=args.dispatchers)
    check_production_config(settings, "run")
    if not settings.service_name:
        raise ConfigurationError(
            "SMS_WORKER_SERVICE_NAME is not set: name the OVH SMS account (sms-xx11111-1) the worker sends through; "
            "without it every request that names none would be rejected"
        )
    preflight(settings)
    # Accept threads are CPU-bound; dispatchers wait on Redis and OVH. A shorter GIL switch
    # interval (default 5 ms) lets a dispatcher whose answer arrived run sooner, which is what
    # keeps one-time codes fast while a campaign is being accepted.
    sys.setswitchinterval(0.001)
    app = build_app(settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():  # a second signal: leave at once; the lease hands what is left to others
            os._exit(128 + signum)
        stop.set()
        app.request_stop()  # also ends a wait still under way in app.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        app.start()
    except OSError as exc:  # the metrics port is taken or not ours to bind
        app.stop()
        raise ConfigurationError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} (SMS_WORKER_METRICS_PORT): {exc}"
        ) from None
    log.info(
        "consuming lanes %s with %d threads and %d dispatchers",
        ",".join(settings.lanes),
        settings.threads,
        settings.dispatchers,
        extra={"metrics_port": app.ops.port} if app.ops is not None else {},
    )
    stop.wait()
    log.info("stopping: draining for up to %g s (a second signal exits at once)", settings.drain_s)
    finished = app.stop()
    log.info("stopped%s", "" if finished else " (calls still in flight are left to the lease)")
    return 0
