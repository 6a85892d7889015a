"""Loading the Lua scripts kept beside this module (``lua/``).

Scripts that publish results get ``lua/_publish.lua`` prepended (dramatiq's envelope and the
result keeping), since Redis scripts cannot call one another.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis


def source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return resources.files("worker.store").joinpath("lua", f"{name}.lua").read_text("utf-8")


def load(client: redis.Redis, name: str, *, publishes: bool = False) -> Any:
    """Register ``lua/<name>.lua`` (with the publishing prelude when ``publishes``) on ``client``."""
    text = source("_publish") + source(name) if publishes else source(name)
    return client.register_script(text)
