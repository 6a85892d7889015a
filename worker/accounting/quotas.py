"""Per-user quotas of credits, shared by every replica through Redis.

A *user* is an OVH SMS API user login of an SMS account. Its quota state is one Redis hash
(``keys.quota``): ``quota`` (credits allotted), ``reserved`` (estimated for requests staged and
not yet settled) and ``spent`` (settled with OVH's ``totalCreditsRemoved``); the quota left is
``quota - reserved - spent``. A user without a ``quota`` is not limited by the worker (its
reserved and spent are still counted). The two steps that change ``reserved`` run in Lua:
``stage.lua`` reserves (with the dedupe and the staging, refusing a request the quota cannot
cover) and ``settle.lua`` settles. This module writes quotas and reads them.

Quotas come from configuration, applied by every worker at start (``apply_config``):
``SMS_WORKER_QUOTAS_FILE`` names a TOML file (or ``.json`` with the same shape), and
``SMS_WORKER_QUOTAS`` holds JSON entries that override the file's::

    [users.alice]                  # the OVH SMS API user login
    quota = 1000                   # credits; leave out for no limit
    alert_threshold = 100          # credits left at or below which a QuotaAlert is published
    alert_number = "+33612345678"  # the alert SMS goes there (SMS_WORKER_QUOTA_ALERT_SMS)
    service = "sms-ab12345-1"      # default: SMS_WORKER_SERVICE_NAME
    # login = "alice"              # default: the table's name

Applying an entry again changes nothing unless the entry changed (its digest is kept), so a
restarted replica does not undo ``sms-worker quotas sync``, which reads the quotas OVH holds
(``GET /sms/{sn}/users/{login}``) into the same hashes.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, Protocol, TypedDict

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.redis_connection import text
from worker.errors import ConfigurationError
from worker.store import keys, scripts

#: Slack on quota comparisons, in credits: float sums of rates must not refuse an exact fit.
EPSILON = 1e-9


class UserQuota(BaseModel):
    """One configured user: its quota and alert settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    login: str | None = Field(default=None, min_length=1, max_length=64, description="default: the entry's name")
    service: str | None = Field(default=None, min_length=1, max_length=64, description="default: the worker's")
    quota: float | None = Field(default=None, ge=0, description="credits; None: no limit")
    alert_threshold: float | None = Field(default=None, ge=0, description="credits left that trigger a QuotaAlert")
    alert_number: str | None = Field(default=None, min_length=1, max_length=32, description="receiver of alert SMS")

    def digest(self) -> str:
        return hashlib.sha1(self.model_dump_json().encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class QuotaState:
    """A user's quota as Redis holds it now."""

    service: str
    login: str
    quota: float | None
    reserved: float
    spent: float
    threshold: float | None
    armed: bool
    crossings: int
    alert_number: str | None
    ovh_quota: bool
    source: str | None

    @property
    def left(self) -> float | None:
        return None if self.quota is None else self.quota - self.reserved - self.spent


class QuotaConfig(Protocol):
    """Where configured quotas come from (``worker.settings.Settings`` is one)."""

    @property
    def quotas_file(self) -> Path | None: ...
    @property
    def quotas(self) -> dict[str, UserQuota]: ...
    @property
    def service_name(self) -> str | None: ...


def load_config(settings: QuotaConfig) -> list[UserQuota]:
    """The configured users, from ``quotas_file`` then ``quotas`` (env), service and login filled in."""
    entries: dict[str, Any] = {}
    if settings.quotas_file is not None:
        entries.update(_read_file(Path(settings.quotas_file)))
    entries.update(settings.quotas)
    users = []
    for name, entry in entries.items():
        try:
            user = entry if isinstance(entry, UserQuota) else UserQuota.model_validate(entry)
        except ValidationError as exc:
            raise ConfigurationError(f"quota of user {name!r}: {exc}") from None
        service = user.service or settings.service_name
        if service is None:
            raise ConfigurationError(f"quota of user {name!r}: no service and no SMS_WORKER_SERVICE_NAME")
        users.append(user.model_copy(update={"login": user.login or name, "service": service}))
    return users


def _read_file(path: Path) -> dict[str, Any]:
    try:
        content = path.read_text(encoding="utf-8")
        data = json.loads(content) if path.suffix == ".json" else tomllib.loads(content)
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigurationError(f"SMS_WORKER_QUOTAS_FILE {path}: {exc}") from None
    users = data.get("users", {}) if isinstance(data, dict) else None
    if not isinstance(users, dict) or set(data) - {"users"}:
        raise ConfigurationError(f"SMS_WORKER_QUOTAS_FILE {path}: expected only a [users.<login>] table per user")
    return users


def _number(raw: bytes | str | None) -> float | None:
    return None if raw is None else float(raw)


class _QuotaSetKeys(TypedDict):
    quota: str  # the user's hash
    quotas: str  # the set of quota hashes


class _QuotaSetDocument(TypedDict):
    service: str
    login: str
    mode: str  # "config" or "ovh"
    ovh_quota: bool
    source: str
    quota: NotRequired[float]
    threshold: NotRequired[float]
    alert_number: NotRequired[str]


class _QuotaSet(scripts.Script[_QuotaSetKeys, _QuotaSetDocument, int]):
    """quota_set.lua: set a user's quota and alert settings, keeping its reserved and spent; 1 when
    written, 0 when the config entry was already applied."""

    NAME = "quota_set"
    Keys = _QuotaSetKeys

    def reply(self, raw: Any) -> int:
        return int(raw)


class QuotaStore:
    """Reads and writes the quota hashes (reservation and settlement are in the Lua steps)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._set = _QuotaSet(client)

    def apply_config(self, users: Iterable[UserQuota]) -> int:
        """Write configured users whose entry changed since it was last applied; returns how many."""
        written = 0
        for user in users:
            assert user.service is not None and user.login is not None, "load_config fills them in"
            written += self._write(
                user.service, user.login, "config", user.quota, user.alert_threshold, user.alert_number,
                ovh_quota=False, source=f"config:{user.digest()}",
            )  # fmt: skip
        return written

    def set_from_ovh(self, service: str, login: str, user: dict[str, Any], *, alert_sms: bool = True) -> QuotaState:
        """Mirror an ``sms.User`` from OVH: its quota (when active) and alert threshold.

        An OVH alert threshold of 0 counts as no alert (the control panel's default). The alert
        number is kept when OVH notifies by SMS (``support`` ``sms`` or ``both``).
        """
        quota_info = user.get("quotaInformations") or {}
        alert_info = user.get("alertThresholdInformations") or {}
        active = quota_info.get("quotaStatus") == "active"
        quota_left = float(quota_info.get("quotaLeft") or 0.0) if active else None
        threshold = float(alert_info.get("alertThreshold") or 0) or None
        number = alert_info.get("alertNumber") or None
        if not (alert_sms and alert_info.get("support") in ("sms", "both")):
            number = None
        self._write(service, login, "ovh", quota_left, threshold, number, ovh_quota=active, source="ovh")
        state = self.get(service, login)
        assert state is not None
        return state

    def _write(
        self,
        service: str,
        login: str,
        mode: str,
        quota: float | None,
        threshold: float | None,
        alert_number: str | None,
        *,
        ovh_quota: bool,
        source: str,
    ) -> int:
        document: _QuotaSetDocument = {
            "service": service,
            "login": login,
            "mode": mode,
            "ovh_quota": ovh_quota,
            "source": source,
        }
        if quota is not None:
            document["quota"] = float(quota)
        if threshold is not None:
            document["threshold"] = float(threshold)
        if alert_number:
            document["alert_number"] = alert_number
        return self._set({"quota": keys.quota(service, login), "quotas": keys.QUOTAS}, document)

    def get(self, service: str, login: str) -> QuotaState | None:
        return self._read(keys.quota(service, login))

    def all(self) -> list[QuotaState]:
        found = [self._read(text(key)) for key in self.redis.smembers(keys.QUOTAS)]
        return sorted((s for s in found if s is not None), key=lambda s: (s.service, s.login))

    def forget(self, service: str, login: str) -> bool:
        """Remove a user's quota (the OVH user was deleted); ``True`` if there was one."""
        key = keys.quota(service, login)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.srem(keys.QUOTAS, key)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def ovh_holds_quota(self, service: str, login: str) -> bool:
        """Whether OVH itself holds this user's quota (then the account's creditsLeft does not pay)."""
        return self.redis.hget(keys.quota(service, login), "ovh_quota") == b"1"

    def _read(self, key: str) -> QuotaState | None:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(key).items()}
        if "service" not in raw:
            return None
        return QuotaState(
            service=raw["service"] or "",
            login=raw.get("login") or "",
            quota=_number(raw.get("quota")),
            reserved=_number(raw.get("reserved")) or 0.0,
            spent=_number(raw.get("spent")) or 0.0,
            threshold=_number(raw.get("threshold")),
            armed=raw.get("armed") == "1",
            crossings=int(raw.get("crossings") or 0),
            alert_number=raw.get("alert_number"),
            ovh_quota=raw.get("ovh_quota") == "1",
            source=raw.get("source"),
        )


def sync_from_ovh(
    store: QuotaStore, client: Any, service: str, logins: Iterable[str] | None = None, *, alert_sms: bool = True
) -> list[QuotaState]:
    """Read each user's quota from OVH (all the account's users when ``logins`` is None)."""
    names = list(logins) if logins is not None else client.get(f"/sms/{service}/users")
    return [
        store.set_from_ovh(service, login, client.get(f"/sms/{service}/users/{login}"), alert_sms=alert_sms)
        for login in names
    ]
