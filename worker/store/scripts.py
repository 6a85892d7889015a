"""Calling Lua scripts: declared keys, one JSON document, each file beside the Python that owns it.

Each script has a typed wrapper (a ``Script`` subclass in the module that uses it) declaring its
file (``NAME``, read from the ``lua/`` folder of the wrapper's own package), the names of its
fixed ``KEYS`` and the shared files it needs first (``PRELUDE``). Keys that depend on the data
(a request's hash, its results queue) are added to ``KEYS`` after the fixed ones through
``KeyRefs``, and the JSON document refers to them by their index: scripts never build a key
name themselves.

Shared files live in ``worker/store/lua/`` and are prepended, since Redis scripts cannot call
one another: ``_common.lua`` (Redis time, dramatiq's envelope, result keeping, requeueing) for
every script but the rate limiter's, ``_campaign.lua`` (per-tag campaign statistics) only
for the scripts that update them (``CAMPAIGN_PRELUDE``), and ``_usage.lua`` (consumption per day,
user, tag and sender) for settlement only (``SETTLE_PRELUDE``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar

import redis

#: The package whose ``lua/`` folder holds the shared files.
SHARED = "worker.store"
#: Prelude of most scripts: Redis time, dramatiq's envelope, result keeping.
COMMON_PRELUDE: tuple[str, ...] = ("_common",)
#: Prelude of the scripts that update a tag's campaign statistics.
CAMPAIGN_PRELUDE: tuple[str, ...] = ("_common", "_campaign")
#: Prelude of settle.lua: the campaign statistics and the consumption per period it keeps.
SETTLE_PRELUDE: tuple[str, ...] = (*CAMPAIGN_PRELUDE, "_usage")


def source(package: str, name: str) -> str:
    """The text of ``<package>/lua/<name>.lua``."""
    return resources.files(package).joinpath("lua", f"{name}.lua").read_text("utf-8")


def load(client: redis.Redis, package: str, name: str, *, prelude: tuple[str, ...] = COMMON_PRELUDE) -> Any:
    """Register ``<package>/lua/<name>.lua``, after the shared ``prelude`` files, on ``client``."""
    text = "\n".join([*(source(SHARED, part) for part in prelude), source(package, name)])
    return client.register_script(text)


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


class Script:
    """A Lua script with declared fixed ``KEYS`` and one JSON document as its only argument."""

    #: File name in the ``lua/`` folder of the subclass's package (without ``.lua``).
    NAME: ClassVar[str]
    #: Names of the fixed keys, in the order the script reads them (``KEYS[1]``, ``KEYS[2]``...).
    KEYS: ClassVar[tuple[str, ...]] = ()
    #: Shared files prepended (``worker/store/lua/``).
    PRELUDE: ClassVar[tuple[str, ...]] = COMMON_PRELUDE

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        package = type(self).__module__.rpartition(".")[0]
        self._script = load(client, package, self.NAME, prelude=self.PRELUDE)

    def refs(self) -> KeyRefs:
        """A ``KeyRefs`` whose indexes follow this script's fixed keys."""
        return KeyRefs(offset=len(self.KEYS))

    def run(
        self,
        keys: Mapping[str, str],
        document: Mapping[str, Any],
        refs: KeyRefs | None = None,
        client: Any = None,
    ) -> Any:
        """Call the script: ``keys`` must name exactly the declared ``KEYS``; ``client`` may be a pipeline."""
        if set(keys) != set(self.KEYS):
            raise ValueError(f"{self.NAME}.lua takes keys {self.KEYS}, not {tuple(keys)}")
        names = [keys[name] for name in self.KEYS] + (refs.names if refs is not None else [])
        return self._script(keys=names, args=[json.dumps(document, separators=(",", ":"))], client=client)
