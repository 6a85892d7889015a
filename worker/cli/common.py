"""What every command shares: settings parsed once, the production checks, tables for people.

Every failure a person can cause or meet (a bad variable, a Redis or OVH that does not answer)
becomes one line; ``worker.cli.main`` prints it and exits non-zero, never with a traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
from pydantic import ValidationError
from pydantic_settings import SettingsError

from contracts.redis_connection import connect
from worker.errors import ConfigurationError, UsageError

#: Longest a command waits to connect to Redis (seconds): an unreachable host fails fast.
REDIS_CONNECT_TIMEOUT_S = 5.0


def _variable(field: str) -> str:
    """The environment variable of a settings field (aliases are already variable names)."""
    return field if field.isupper() else f"SMS_WORKER_{field.upper()}"


def load_settings(**overrides: Any) -> Any:
    """``Settings`` from the environment, with the command line's non-None values on top."""
    from worker.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # One line, without the input values (a value may be a secret).
        problems = [
            f"{_variable(str(error['loc'][0])) if error['loc'] else 'settings'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigurationError(f"invalid configuration: {'; '.join(problems)}") from None
    except SettingsError as exc:  # a variable that should hold JSON does not
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigurationError(f"invalid configuration: {exc}{cause}") from None


def require_redis(settings: Any, command: str) -> str:
    """``REDIS_URL``, checked to be a Redis URL (the message never repeats it: it may hold a password)."""
    if not settings.redis_url:
        raise ConfigurationError(f"REDIS_URL is not set: sms-worker {command} needs the worker's Redis")
    url = str(settings.redis_url)
    try:
        connect(url).close()
    except ValueError as exc:
        raise ConfigurationError(f"REDIS_URL is malformed: {_without_password(str(exc), url)}") from None
    return url


def _without_password(text: str, url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def redis_for(settings: Any, command: str) -> redis.Redis:
    """A client of the worker's Redis that gives up connecting after ``REDIS_CONNECT_TIMEOUT_S``."""
    return connect(require_redis(settings, command), socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S)


#: What to set when OVH credentials are missing.
_CREDENTIALS_HELP = (
    "set OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET and OVH_CONSUMER_KEY (or OVH_CLIENT_ID and OVH_CLIENT_SECRET), "
    "or provide an ovh.conf"
)


def ovh_client(settings: Any, *, public: bool = False) -> Any:
    """python-ovh's client for ``settings``: credentials from settings, else python-ovh's own lookup.

    ``ConfigurationError`` with one line when ``OVH_ENDPOINT`` is not an endpoint python-ovh
    knows (nor a base URL) or when credentials are missing: which variable, never its value.
    ``public``: for OVH's unsigned routes, which need no credentials: python-ovh still wants
    keys to build a client, so placeholders stand in when none are configured (never sent).
    """
    import difflib

    import ovh.client
    import ovh.exceptions

    from worker.ovhcloud.client import is_base_url, make_client

    endpoint = settings.ovh_endpoint
    if not is_base_url(endpoint) and endpoint not in ovh.client.ENDPOINTS:
        names = [name for name in ovh.client.ENDPOINTS if not is_base_url(name)]
        close = difflib.get_close_matches(endpoint, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigurationError(
            f"OVH_ENDPOINT {endpoint!r} is not an OVH endpoint{hint}: give one of {', '.join(names)}, "
            "or a base URL such as http://127.0.0.1:8080/1.0 (the sandbox)"
        )
    timeout = (settings.ovh_connect_timeout_s, settings.ovh_read_timeout_s)
    try:
        client = make_client(endpoint, timeout=timeout, **settings.ovh_credentials())
    except ovh.exceptions.InvalidConfiguration as exc:
        if public:
            return make_client(endpoint, timeout=timeout, application_key="-", application_secret="-")
        raise ConfigurationError(f"OVH credentials are missing or incomplete ({exc}): {_CREDENTIALS_HELP}") from None
    if client._application_key and not client._consumer_key and not public:
        raise ConfigurationError(
            "OVH_CONSUMER_KEY is not set (nor in ovh.conf): the application key needs a consumer key, "
            "which OVH gives when the application's access is granted"
        )
    return client


def service_of(given: str | None, settings: Any) -> str:
    """The SMS account a command works on: ``--service``, else ``SMS_WORKER_SERVICE_NAME``."""
    from contracts.models import SERVICE_NAME_PATTERN

    service = given or settings.service_name
    if service is None:
        raise UsageError("no SMS account: pass --service or set SMS_WORKER_SERVICE_NAME")
    if not re.match(SERVICE_NAME_PATTERN, service):
        raise UsageError(f"--service {service!r} is not an OVH SMS account name")
    return str(service)


def check_ovh_credentials(settings: Any) -> None:
    """One line when OVH credentials are missing or ``OVH_ENDPOINT`` is wrong, before any call
    (Redis is optional for the admin commands): ``ovh_client``'s own checks."""
    ovh_client(settings)


def check_production_config(settings: Any, command: str) -> None:
    """Refuse to run without a broker or OVH credentials; never fall back to the sandbox."""
    require_redis(settings, command)
    ovh_client(settings)


def preflight(settings: Any) -> None:
    """Before ``sms-worker run`` starts: Redis answers, OVH accepts the credentials, the default
    sender exists and is enabled. Raises ``ConfigurationError`` (exit 2) with one line."""
    from worker.ops.readiness import NotReady, check_ovh, check_redis, redis_client

    client = redis_client(require_redis(settings, "run"))
    try:
        check_redis(client)
        check_ovh(
            ovh_client(settings), endpoint=settings.ovh_endpoint, service=settings.service_name, sender=settings.sender
        )
    except NotReady as exc:
        raise ConfigurationError(f"cannot start: {exc}") from None
    finally:
        client.close()


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def credits_cell(value: float | None) -> str:
    """Credits for a table: no limit as ``-``, whole numbers without decimals, never an exponent
    (1000000, not 1e+06), at most 6 decimals."""
    if value is None:
        return "-"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def ensure_confirmable(*, yes: bool, refusal: str) -> None:
    """``UsageError`` (``refusal`` and the hint to add ``--yes``) when there is neither ``--yes``
    nor a terminal on stdin to ask on: a script never gets a purchase it did not confirm."""
    if not yes and not sys.stdin.isatty():
        raise UsageError(f"{refusal}: no terminal to confirm on; add --yes to confirm in a script")


def confirmed(question: str, *, yes: bool, refusal: str) -> bool:
    """Whether the person agrees to ``question`` (asked on stderr, answered on stdin's terminal).

    ``yes`` (``--yes``, for scripts) agrees without asking; without a terminal nothing is assumed
    (``ensure_confirmable``). A ``y`` or ``yes`` agrees; anything else (Enter, end of input) does not.
    """
    ensure_confirmable(yes=yes, refusal=refusal)
    if yes:
        return True
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")
