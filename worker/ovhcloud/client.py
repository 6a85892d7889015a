"""Build a python-ovh ``Client`` for an endpoint name or a base URL.

python-ovh only accepts endpoint names from ``ovh.client.ENDPOINTS``; the sandbox (and any
proxy) is reached by a base URL such as ``http://127.0.0.1:8080/1.0``. ``ENDPOINTS`` is the
library's own lookup table, so registering the URL there (under itself) keeps every other
behaviour of the client: signing, the ``OVH_*`` environment variables and ``ovh.conf``
sections (named after the endpoint) all work unchanged.
"""

from __future__ import annotations

from typing import Any

import ovh
import ovh.client
import ovh.exceptions

#: Connect and read timeouts (seconds) for calls to OVH. python-ovh defaults to 180 s, far
#: longer than a worker should wait; a read timeout on a POST is an ambiguous failure.
DEFAULT_TIMEOUT = (5.0, 30.0)


def is_base_url(endpoint: str) -> bool:
    return endpoint.startswith(("http://", "https://"))


def make_client(endpoint: str | None = None, *, timeout: Any = DEFAULT_TIMEOUT, **credentials: Any) -> ovh.Client:
    """Return an ``ovh.Client``; ``endpoint`` is a name (``ovh-eu``) or an ``http(s)://.../1.0`` URL.

    ``credentials`` are python-ovh's own keyword arguments (``application_key``,
    ``application_secret``, ``consumer_key``, ``client_id``, ``client_secret``); those left out
    come from the environment or ``ovh.conf``, as with python-ovh.
    """
    if endpoint and is_base_url(endpoint):
        base = endpoint.rstrip("/")
        ovh.client.ENDPOINTS.setdefault(base, base)
        endpoint = base
    return ovh.Client(endpoint=endpoint, timeout=timeout, **credentials)


def describe_error(exc: BaseException) -> str:
    """One line for a python-ovh or requests error: its class, OVH's message, the query id.

    python-ovh puts the query id on a second line and wraps transport errors in ``HTTPError``
    with the cause as second argument; logs and commands want one line and the cause.
    """
    if isinstance(exc, ovh.exceptions.HTTPError) and len(exc.args) > 1:
        return describe_error(exc.args[1]) if isinstance(exc.args[1], BaseException) else str(exc.args[1])
    message = " ".join((exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)).split())
    query_id = getattr(exc, "query_id", None)
    detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{detail} (OVH query id {query_id})" if query_id else detail
