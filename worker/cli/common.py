"""What every command shares: settings parsed once, the production checks, tables for people."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigurationError


def load_settings(**overrides: Any) -> Any:
    """``Settings`` from the environment, with the command line's non-None values on top."""
    from ..settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None


def require_redis(settings: Any, command: str) -> str:
    if not settings.redis_url:
        raise ConfigurationError(f"REDIS_URL is not set: sms-worker {command} needs the worker's Redis")
    return str(settings.redis_url)


def check_production_config(settings: Any) -> None:
    """Refuse to run without a broker or OVH credentials; never fall back to the sandbox."""
    import ovh.exceptions

    from ..ovhcloud.client import make_client

    if not settings.redis_url:
        raise ConfigurationError("REDIS_URL is not set: sms-worker run needs the Redis broker the producers use")
    try:
        make_client(settings.ovh_endpoint)
    except (ovh.exceptions.InvalidConfiguration, ovh.exceptions.InvalidRegion) as exc:
        raise ConfigurationError(
            f"OVH credentials are missing or invalid ({exc}): set OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET and "
            "OVH_CONSUMER_KEY (or OVH_CLIENT_ID and OVH_CLIENT_SECRET), or provide an ovh.conf"
        ) from None


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def credits_cell(value: float | None) -> str:
    """Credits for a table: no limit as ``-``, whole numbers without decimals."""
    if value is None:
        return "-"
    return f"{round(value, 6):g}"
