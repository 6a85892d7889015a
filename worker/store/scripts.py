"""Calling Lua scripts: one typed wrapper, named keys, one JSON document, a typed reply.

Every script the worker runs is a ``Script`` subclass in the module that uses it, declaring:

- ``NAME``: its file, read from the ``lua/`` folder of the subclass's own package;
- ``Keys``: a ``TypedDict`` of its fixed keys. The script reads them by name: the wrapper puts a
  table ``KEY`` (``KEY.attempt``, ``KEY.lease``...) at the top of the script, built from those
  names, so no script reads ``KEYS[n]`` by position, and a name the wrapper did not declare is
  an error the first time the script reads it;
- the type of its one argument, a JSON document (a ``TypedDict``: optional fields are left out,
  never ``null``, which Lua would read as true; encoded with orjson, UTF-8 as it is), and
  ``reply``, which turns what Redis answers into a small typed result.

Keys that depend on the data (a request's hash, its results queue) are added after the fixed
ones through ``KeyRefs``; the document refers to them by their index (``KEYS[doc.req]``).
Scripts never build a key name themselves.

Shared files live in ``worker/store/lua/`` and are prepended, since Redis scripts cannot call
one another: ``_common.lua`` (Redis time, dramatiq's envelope, result keeping, requeueing) for
every script but the rate limiter's, ``_campaign.lua`` (per-tag campaign statistics) only
for the scripts that update them (``CAMPAIGN_PRELUDE``), and ``_usage.lua`` (consumption per day,
user, tag and sender) for settlement only (``SETTLE_PRELUDE``).

A script is called the same way on a synchronous client (``script(keys, document)``) and on an
asyncio one (``await script.call_async(keys, document)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar, Generic, TypeVar

import orjson
import redis
import redis.asyncio

from contracts.redis_connection import text as text  # the one decoder; the wrappers' callers use scripts.text

#: The package whose ``lua/`` folder holds the shared files.
SHARED = "worker.store"
#: Prelude of most scripts: Redis time, dramatiq's envelope, result keeping.
COMMON_PRELUDE: tuple[str, ...] = ("_common",)
#: Prelude of the scripts that update a tag's campaign statistics.
CAMPAIGN_PRELUDE: tuple[str, ...] = ("_common", "_campaign")
#: Prelude of settle.lua: the campaign statistics and the consumption per period it keeps.
SETTLE_PRELUDE: tuple[str, ...] = (*CAMPAIGN_PRELUDE, "_usage")

KeysT = TypeVar("KeysT", bound=Mapping[str, object])
DocT = TypeVar("DocT", bound=Mapping[str, object])
ReplyT = TypeVar("ReplyT")


def source(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua``."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text("utf-8")


def json_text(value: object) -> str:
    """Compact JSON of a document or of a JSON text inside one (orjson: the send path encodes one
    per request and per call, and the standard library's encoder took a fifth of its CPU)."""
    return orjson.dumps(value).decode()


def key_table(names: tuple[str, ...]) -> str:
    """The Lua that names a script's fixed keys: ``KEY.<name>`` is ``KEYS[<position>]``, and
    reading a name not declared raises (before the script can write anything with it)."""
    fields = ", ".join(f"{name} = KEYS[{n}]" for n, name in enumerate(names, start=1))
    return (
        "-- KEY: this script's fixed keys by name (worker/store/scripts.py builds this line)\n"
        f"local KEY = setmetatable({{{fields}}}, {{__index = function(_, name)\n"
        '    error("no key named " .. tostring(name) .. " is declared for this script", 2)\nend})'
    )


class KeyRefs:
    """The data-dependent part of a call's ``KEYS``: each distinct key once, referred to by index.

    ``refs(name)`` returns the 1-based position the key will have in ``KEYS`` (as Lua indexes
    it), after the script's fixed keys.
    """

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self.names: list[str] = []
        self._at: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        at = self._at.get(name)
        if at is None:
            self.names.append(name)
            at = self._at[name] = self.offset + len(self.names)
        return at


class Script(Generic[KeysT, DocT, ReplyT]):
    """A Lua script with named fixed keys, one JSON document as its only argument, a typed reply."""

    #: File name in the ``lua/`` folder of the subclass's package (without ``.lua``).
    NAME: ClassVar[str]
    #: The fixed keys, by name, in the order they are passed (a ``TypedDict``).
    Keys: ClassVar[type[Mapping[str, object]]]
    #: Their names (from ``Keys``).
    KEYS: ClassVar[tuple[str, ...]] = ()
    #: Shared files prepended (``worker/store/lua/``).
    PRELUDE: ClassVar[tuple[str, ...]] = COMMON_PRELUDE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = cls.__dict__.get("Keys")
        if declared is not None:
            cls.KEYS = tuple(declared.__annotations__)

    def __init__(self, client: redis.Redis | redis.asyncio.Redis) -> None:
        self.redis = client
        self._script: Any = client.register_script(self.text())

    @classmethod
    def package(cls) -> str:
        return cls.__module__.rpartition(".")[0]

    @classmethod
    def text(cls) -> str:
        """The script as Redis runs it: the shared files, the key table, the script's own file."""
        parts = [source(SHARED, part) for part in cls.PRELUDE]
        return "\n".join([*parts, key_table(cls.KEYS), source(cls.package(), cls.NAME)])

    def refs(self) -> KeyRefs:
        """A ``KeyRefs`` whose indexes follow this script's fixed keys."""
        return KeyRefs(offset=len(self.KEYS))

    def reply(self, raw: Any) -> ReplyT:
        """What Redis answered, as this script's result type."""
        raise NotImplementedError

    def _arguments(self, keys: KeysT, document: DocT, refs: KeyRefs | None) -> dict[str, list[Any]]:
        if keys.keys() != set(self.KEYS):
            raise ValueError(f"{self.NAME}.lua takes keys {self.KEYS}, not {tuple(keys)}")
        names = [keys[name] for name in self.KEYS] + (refs.names if refs is not None else [])
        return {"keys": names, "args": [orjson.dumps(document)]}

    def __call__(self, keys: KeysT, document: DocT, refs: KeyRefs | None = None) -> ReplyT:
        """Run the script on a synchronous client."""
        return self.reply(self._script(**self._arguments(keys, document, refs)))

    async def call_async(self, keys: KeysT, document: DocT, refs: KeyRefs | None = None) -> ReplyT:
        """Run the script on an asyncio client."""
        return self.reply(await self._script(**self._arguments(keys, document, refs)))
