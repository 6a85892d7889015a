"""``sms-worker inbound``: the service OVH calls back (delivery reports, replies, STOP).

Its own process (its own Deployment behind an Ingress that routes ``/ovh/`` to it). It needs
Redis and the token, never OVH credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re

from worker.cli.common import load_settings, require_redis
from worker.errors import ConfigurationError

log = logging.getLogger(__name__)

#: What a token may be: long enough not to be guessed, and safe in a URL path as it is.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,128}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default SMS_WORKER_INBOUND_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default SMS_WORKER_INBOUND_PORT or 8090)")


def check_token(settings: object) -> str:
    """The configured token; ``ConfigurationError`` when it is missing or unfit for a URL."""
    token = getattr(settings, "inbound_token", None)
    if token is None:
        raise ConfigurationError(
            "SMS_WORKER_INBOUND_TOKEN is not set: the callback URLs need a secret token "
            "(16 to 128 of A-Z a-z 0-9 . _ ~ -; e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    value = token.get_secret_value()
    if not TOKEN_PATTERN.fullmatch(value):
        raise ConfigurationError("SMS_WORKER_INBOUND_TOKEN must be 16 to 128 of A-Z a-z 0-9 . _ ~ -")
    return str(value)


def run(args: argparse.Namespace) -> int:
    from worker.after_send.service import serve
    from worker.campaigns.callbacks import BulkMapper

    settings = load_settings(inbound_host=args.host, inbound_port=args.port)
    check_token(settings)
    require_redis(settings, "inbound")
    try:
        asyncio.run(serve(settings, bulk_mapper=BulkMapper(settings)))
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {settings.inbound_host}:{settings.inbound_port}: {exc}") from None
    return 0
