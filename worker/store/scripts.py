"""Calling the Lua scripts kept beside this module (``lua/``): declared keys, one JSON document.

Each script has a typed wrapper (a ``Script`` subclass in the module that uses it) declaring
the names of its fixed ``KEYS``. Keys that depend on the data (a request's hash, its results
queue) are added to ``KEYS`` after the fixed ones through ``KeyRefs``, and the JSON document
refers to them by their index: scripts never build a key name themselves. Every script but the
rate limiter's gets the ``PRELUDE`` files first: ``lua/_common.lua`` (Redis time, dramatiq's
envelope, result keeping, requeueing) and ``lua/_campaign.lua`` (per-tag campaign statistics,
which settlement and delivery reports both update), since Redis scripts cannot call one another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, ClassVar

import redis


def source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return resources.files("worker.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


#: Files of ``lua/`` prepended, in this order, to every script loaded with ``common``.
PRELUDE = ("_common", "_campaign")


def load(client: redis.Redis, name: str, *, common: bool = True) -> Any:
    """Register ``lua/<name>.lua`` (after the ``PRELUDE`` files when ``common``) on ``client``."""
    text = "\n".join([*(source(part) for part in PRELUDE), source(name)]) if common else source(name)
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

    #: File name in ``lua/`` (without ``.lua``).
    NAME: ClassVar[str]
    #: Names of the fixed keys, in the order the script reads them (``KEYS[1]``, ``KEYS[2]``...).
    KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._script = load(client, self.NAME)

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
