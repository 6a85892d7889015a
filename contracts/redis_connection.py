"""The one way to connect to the worker's Redis: a URL, standalone or Sentinel, TLS, ACL.

Every client of the project is made here (``connect``, ``connect_async``): the worker's (its
dramatiq broker, Lua scripts, threads), the inbound service's, every command's and
``SmsProducer``'s. The URL is all there is to configure (``REDIS_URL``), so a producer in any
service reaches the same Redis the same way:

=======================================================================  ===========================
``redis://[[user]:password@]host[:port][/db][?options]``                  a standalone server
``rediss://...?ssl_ca_certs=/etc/redis-ca/ca.crt``                        over TLS, a private CA
``redis+sentinel://[[user]:password@]h1[:port],h2[:port]/name[/db][?...]``  the primary Sentinel names
``rediss+sentinel://...``                                                 TLS to the data nodes and the Sentinels
``unix:///run/redis.sock?db=0``                                           a local socket
=======================================================================  ===========================

- ``user:password@`` authenticates to the data nodes (an ACL user; ``:password@`` the default
  user). Sentinel port 26379 when left out; IPv6 in brackets (``[::1]:26379``).
- ``options`` are redis-py's URL options (``ssl_ca_certs``, ``ssl_cert_reqs``,
  ``ssl_check_hostname``, ``ssl_certfile``/``ssl_keyfile`` for client certificates,
  ``socket_timeout``, ``db``, ...), parsed by redis-py itself; with Sentinel, ``ssl_*`` and
  ``socket_*`` apply to the Sentinels too (one CA for the topology), ``sentinel_username`` and
  ``sentinel_password`` authenticate to the Sentinels (their own ``requirepass`` or ACL), and
  ``sentinel_ssl=false`` turns TLS off towards the Sentinels only.

A Sentinel client follows a failover: each (re)connect, including one inside a command's
retries, asks the Sentinels where the primary is (redis-py 8 reuses the old address on a
reconnect within a command's retries, issue #3874); a thread asks them every ``WATCH_EVERY_S``
too, so that a graceful failover does not leave the client writing to the old primary until it
is demoted; a primary that answers ``READONLY`` (demoted) or ``NOREPLICAS``
(``min-replicas-to-write`` not met) is left and asked for again; commands are retried for up to
``SENTINEL_RETRIES`` tries (``SENTINEL_BACKOFF_*``: about 5 s in all) while the Sentinels elect
a new primary. An asyncio client has no thread: its owner runs ``watch_async`` as a task.

(redis-py's Sentinel classes are untyped: the calls into them carry ``type: ignore[no-untyped-call]``.)

Replies are bytes (redis-py's default): dramatiq's broker, which shares the worker's client,
reads message bodies as bytes. ``text`` is the one place a reply becomes a ``str``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection, SentinelManagedSSLConnection

#: URL schemes naming a primary through Sentinels (``rediss+``: TLS).
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: Port of a Sentinel written without one.
DEFAULT_SENTINEL_PORT = 26379
#: Tries of a command on a Sentinel client while the primary changes, and the backoff between
#: them (seconds, exponential with jitter): 8 tries within about 5 s, longer than an election.
SENTINEL_RETRIES = 8
SENTINEL_BACKOFF_BASE_S = 0.05
SENTINEL_BACKOFF_CAP_S = 1.0

#: How often a Sentinel client asks the Sentinels where the primary is, between commands
#: (seconds): after a graceful failover the old primary takes writes until it is demoted (10 to
#: 16 s later), and only a new connection would ask; idle connections to it are dropped when
#: the answer changes, connections in use when they are given back.
WATCH_EVERY_S = 0.5

#: URL options for the Sentinels only (not passed to the data nodes).
_SENTINEL_ONLY = {"sentinel_username", "sentinel_password", "sentinel_ssl"}
#: Prefixes of the data-node options shared with the Sentinel connections.
_SHARED_PREFIXES = ("ssl_", "socket_")
_TRUE = {"1", "true", "yes", "on"}


def text(raw: object) -> str:
    """A Redis reply as text (replies are bytes: see the module's docstring)."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


@dataclass(frozen=True)
class SentinelUrl:
    """A ``redis+sentinel://`` URL, parsed."""

    sentinels: list[tuple[str, int]]
    service_name: str
    #: For the data nodes (``Sentinel.master_for``): credentials, db, TLS, timeouts.
    connection_kwargs: dict[str, Any]
    #: For the Sentinels themselves.
    sentinel_kwargs: dict[str, Any]


def _host_port(part: str) -> tuple[str, int]:
    if part.startswith("["):  # [v6]:port
        host, _, rest = part[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif part.count(":") == 1:
        host, _, port = part.partition(":")
    else:
        host, port = part, ""
    if not host:
        raise ValueError("a Sentinel host is empty")
    try:
        return unquote(host), int(port) if port else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ValueError(f"Sentinel port {port!r} is not a number") from None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``ValueError`` (never quoting the URL: it may hold a password) when it cannot be read."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SENTINEL_SCHEMES:
        raise ValueError(f"not a Sentinel URL (schemes {', '.join(s + '://' for s in SENTINEL_SCHEMES)})")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.split("#", 1)[0].partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    sentinels = [_host_port(part.strip()) for part in hosts.split(",") if part.strip()]
    if not sentinels:
        raise ValueError("no Sentinel host: redis+sentinel://host:26379[,host2:26379]/primary-name[/db]")
    segments = [unquote(segment) for segment in path.split("/") if segment]
    if not segments or len(segments) > 2:
        raise ValueError("the path is the primary's name as the Sentinels know it, then the db: /mymaster/0")
    pairs = parse_qsl(query)
    sentinel_only = {k: v for k, v in pairs if k in _SENTINEL_ONLY}
    data_query = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs if k not in _SENTINEL_ONLY and k != "ssl")
    ssl = scheme == "rediss+sentinel" or any(k == "ssl" and v.lower() in _TRUE for k, v in pairs)
    # redis-py reads credentials, db and options exactly as for a redis:// URL.
    standalone = f"redis://{userinfo + '@' if userinfo else ''}sentinel-primary"
    standalone += f"/{quote(segments[1])}" if len(segments) == 2 else ""
    standalone += f"?{data_query}" if data_query else ""
    kwargs = parse_url(standalone)  # type: ignore[no-untyped-call]
    for name in ("host", "port", "connection_class"):
        kwargs.pop(name, None)
    if ssl:
        kwargs["ssl"] = True
    shared = {k: v for k, v in kwargs.items() if k.startswith(_SHARED_PREFIXES)}
    if ssl and sentinel_only.get("sentinel_ssl", "true").lower() in _TRUE:
        shared["ssl"] = True
    else:
        shared = {k: v for k, v in shared.items() if not k.startswith("ssl_")}
    if "sentinel_username" in sentinel_only:
        shared["username"] = sentinel_only["sentinel_username"]
    if "sentinel_password" in sentinel_only:
        shared["password"] = sentinel_only["sentinel_password"]
    return SentinelUrl(sentinels, segments[0], kwargs, shared)


def _demoted(exc: redis.ResponseError) -> bool:
    """A primary that cannot take writes any more: a failover is under way or done. Redis 6.2
    wraps the error of a writing Lua script (``Error running script ... -READONLY ...``)."""
    message = str(exc)
    return message.startswith(("NOREPLICAS", "READONLY")) or "-NOREPLICAS" in message or "-READONLY" in message


class _FollowingConnection(SentinelManagedConnection):
    """Asks the Sentinels on every (re)connect; leaves a primary that refuses writes."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            # SentinelManagedConnection.connect: ask the Sentinels, then connect
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except redis.ResponseError as exc:
            # READONLY inside a Lua script, or NOREPLICAS, arrive as plain ResponseErrors.
            if self.connection_pool.is_master and _demoted(exc):
                self.disconnect()  # type: ignore[no-untyped-call]
                raise redis.ConnectionError(f"the primary refuses writes ({exc}): asking the Sentinels") from exc
            raise


class _FollowingSSLConnection(_FollowingConnection, SentinelManagedSSLConnection):
    pass


class _FollowingPool(SentinelConnectionPool):
    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        ssl = kwargs.pop("ssl", False)
        kwargs.setdefault("connection_class", _FollowingSSLConnection if ssl else _FollowingConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]


class _AsyncFollowingConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except redis.ResponseError as exc:
            if self.connection_pool.is_master and _demoted(exc):
                await self.disconnect()
                raise redis.ConnectionError(f"the primary refuses writes ({exc}): asking the Sentinels") from exc
            raise


class _AsyncFollowingSSLConnection(
    _AsyncFollowingConnection,
    redis.asyncio.sentinel.SentinelManagedSSLConnection,
):
    pass


class _AsyncFollowingPool(redis.asyncio.sentinel.SentinelConnectionPool):
    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        ssl = kwargs.pop("ssl", False)
        kwargs.setdefault("connection_class", _AsyncFollowingSSLConnection if ssl else _AsyncFollowingConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=SENTINEL_BACKOFF_BASE_S, cap=SENTINEL_BACKOFF_CAP_S)


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for ``url`` (see the module's docstring); ``options`` are redis-py's keyword
    arguments (``socket_timeout``...), on top of the URL's. Nothing is contacted yet: a URL that
    cannot be read raises ``ValueError`` here, an unreachable Redis at the first command."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    kwargs = {"retry": Retry(_backoff(), SENTINEL_RETRIES), **parsed.connection_kwargs, **options}
    sentinel_kwargs = {**parsed.sentinel_kwargs}
    for name in ("socket_timeout", "socket_connect_timeout"):  # a command's bounds also bound the Sentinels
        if name in options:
            sentinel_kwargs.setdefault(name, options[name])
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(parsed.service_name, connection_pool_class=_FollowingPool, **kwargs)  # type: ignore[no-untyped-call]
    watcher = threading.Thread(
        target=_watch, args=(weakref.ref(client.connection_pool),), name="redis-sentinel-watch", daemon=True
    )
    watcher.start()
    return client


def _watch(pool: weakref.ref[SentinelConnectionPool]) -> None:
    """Ask the Sentinels for the primary every ``WATCH_EVERY_S`` while the client lives (see there)."""
    while True:
        time.sleep(WATCH_EVERY_S)
        alive = pool()
        if alive is None:
            return
        try:
            alive.get_master_address()  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError):
            pass  # no Sentinel answers, or no primary yet: the next command says so itself
        del alive


def connect_async(url: str, **options: Any) -> redis.asyncio.Redis:
    """``connect`` for asyncio (the inbound service)."""
    if not is_sentinel_url(url):
        return redis.asyncio.Redis.from_url(url, **options)
    parsed = parse_sentinel_url(url)
    retry = redis.asyncio.retry.Retry(_backoff(), SENTINEL_RETRIES)
    kwargs = {"retry": retry, **parsed.connection_kwargs, **options}
    sentinel_kwargs = {**parsed.sentinel_kwargs}
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in options:
            sentinel_kwargs.setdefault(name, options[name])
    sentinel = redis.asyncio.sentinel.Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: redis.asyncio.Redis = sentinel.master_for(
        parsed.service_name, connection_pool_class=_AsyncFollowingPool, **kwargs
    )
    return client


async def watch_async(client: redis.asyncio.Redis, stop: asyncio.Event) -> None:
    """``connect``'s watcher for an asyncio client, until ``stop`` is set (a task of the owner's
    loop); returns at once for a client that does not go through Sentinels."""
    pool = client.connection_pool
    if not isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
        return
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), WATCH_EVERY_S)
        except TimeoutError:
            pass
        try:
            await pool.get_master_address()  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError):
            pass  # no Sentinel answers, or no primary yet: the next command says so itself
