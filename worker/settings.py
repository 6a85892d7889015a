"""The worker's configuration, parsed once from the environment (pydantic-settings).

Names follow the ecosystem: ``REDIS_URL`` for the broker, python-ovh's own ``OVH_*`` variables
for OVH (read by python-ovh itself, with ``ovh.conf``), ``SMS_WORKER_*`` for the rest. Nested
values use ``__``: ``SMS_WORKER_LINGER_MS__MEDIUM=100``. Secrets may also come from files in
``SMS_WORKER_SECRETS_DIR`` (a Kubernetes secret volume), one file per variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.wire import DEFAULT_RESULTS_QUEUE, LANES

from .accounting.quotas import UserQuota

#: Per-lane linger (ms): how long a partly filled batch buffer waits for more identical sends.
DEFAULT_LINGER_MS = {"high": 0, "medium": 50, "low": 200, "veryLow": 500}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SMS_WORKER_",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=os.environ.get("SMS_WORKER_SECRETS_DIR") or None,
    )

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "SMS_WORKER_REDIS_URL"))
    ovh_endpoint: str = Field(default="ovh-eu", validation_alias=AliasChoices("OVH_ENDPOINT"))
    service_name: str | None = Field(default=None, description="OVH SMS account used when a request names none")
    sender: str | None = Field(default=None, description="OVH sender used when a request names none")
    default_region: str = Field(default="FR", description="region for receivers written without +country code")
    lanes: list[str] = Field(default=list(LANES), description="lanes this process consumes")
    linger_ms: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_LINGER_MS))
    max_receivers_per_call: int = Field(default=500, ge=1, le=1000)
    results_queue: str = DEFAULT_RESULTS_QUEUE
    result_ttl_s: int = Field(default=86_400, ge=60, description="how long a result stays readable by wait()")
    dedupe_ttl_s: int = Field(default=7 * 86_400, ge=60, description="how long a request id stays known")
    delivery_tracking_ttl_s: int = Field(
        default=3 * 86_400,
        ge=0,
        description="how long each sent SMS's OVH id stays mapped to its request and receiver (0: not kept)",
    )
    ovh_connect_timeout_s: float = Field(default=5.0, gt=0)
    ovh_read_timeout_s: float = Field(default=30.0, gt=0)
    retry_attempts: int = Field(default=5, ge=1, le=20, description="tries of one jobs call on safe failures")
    retry_max_wait_s: float = Field(default=30.0, gt=0)
    dispatchers: int = Field(default=4, ge=1, le=64, description="dispatch threads per process")
    # Accept is CPU-bound Python (validation, phonenumbers, JSON) and a pack costs one Redis round
    # trip, so more threads only fight for the GIL and delay the dispatchers: measured on 2 cores,
    # 1 thread gave both the best broadcast rate and the lowest code latency (benchmarks/README.md).
    # Scale with processes or replicas instead.
    threads: int = Field(default=1, ge=1, le=256, description="accept threads per process")
    poll_ms: int = Field(default=20, ge=5, le=1000, description="idle queue poll interval")
    # quotas and credits (see worker.accounting)
    quotas_file: Path | None = Field(default=None, description="TOML (or .json) file of per-user quotas")
    quotas: dict[str, UserQuota] = Field(
        default_factory=dict, description="per-user quotas as JSON, by login; override quotas_file entries"
    )
    rates_ttl_s: float = Field(default=86_400.0, gt=0, description="how long a destination's credit rate is kept")
    fallback_credit_rate: float = Field(
        default=1.0, gt=0, description="credits per part assumed while OVH's rate of a destination is unavailable"
    )
    account_credits_check: bool = Field(default=True, description="refuse sends the account's creditsLeft cannot pay")
    account_credits_refresh_s: float = Field(default=60.0, gt=0, description="how long creditsLeft is cached")
    quota_alert_sms: bool = Field(default=True, description="send an alert SMS to the user's alert number, if known")
    quota_alert_message: str = Field(
        default="SMS quota alert: user {user} of {service} has {quota_left} credits left (threshold {threshold}).",
        min_length=1,
        max_length=300,
        description="text of the alert SMS; placeholders {user}, {service}, {quota_left}, {threshold}",
    )
    quota_alerts_queue: str | None = Field(
        default=None, description="queue for QuotaAlert events; default: the reply_to of the request that crossed"
    )
    rate_limit: float = Field(
        default=1.0, gt=0, description="OVH jobs calls per second per consumer key, all replicas together"
    )
    rate_limit_burst: int = Field(default=1, ge=1, description="calls the rate limiter lets through at once")
    # after the send: delivery reports, replies and STOP (see worker.inbound), sender and blacklist checks
    delivery_mode: Literal["push", "pull", "off"] = Field(
        default="push",
        description="how delivery reports and replies reach the worker: push (OVH calls sms-worker inbound), "
        "pull (sms-worker run polls OVH), off",
    )
    inbound_host: str = Field(default="127.0.0.1", description="address sms-worker inbound listens on")
    inbound_port: int = Field(default=8090, ge=1, le=65535, description="port sms-worker inbound listens on")
    inbound_token: SecretStr | None = Field(
        default=None,
        description="secret in the callback URLs (/ovh/<token>/...): 16 to 128 of A-Z a-z 0-9 . _ ~ -; "
        "required by sms-worker inbound and sms-worker callbacks setup",
    )
    inbound_max_body_bytes: int = Field(
        default=16_384, ge=1024, le=1_048_576, description="largest callback body accepted (bytes); more is 413"
    )
    inbound_max_query_bytes: int = Field(
        default=4096, ge=256, le=8000, description="longest callback query string accepted (bytes); more is 414"
    )
    inbound_orphan_grace_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="how long a delivery report for an SMS id the worker does not know yet is kept, in case "
        "its settlement is still under way (seconds); then it is counted as an unknown id and dropped",
    )
    pull_spacing_s: float = Field(
        default=60.0,
        gt=0,
        description="pull mode: first poll of an SMS's receipt this long after it is sent (seconds); each later "
        "poll waits twice as long as the one before, up to an hour",
    )
    pull_max_polls: int = Field(default=10, ge=1, le=100, description="pull mode: polls of one SMS's receipt at most")
    pull_calls_per_min: int = Field(
        default=30,
        ge=1,
        description="pull mode: OVH calls per minute the pollers of every replica may make together (the budget)",
    )
    pull_incoming_s: float = Field(default=60.0, gt=0, description="pull mode: how often incoming SMS are polled")
    blacklist_sync_s: float = Field(
        default=300.0, gt=0, description="how often the account's OVH blacklist is read (seconds, one replica)"
    )
    ptt_cache_ttl_s: float = Field(
        default=86_400.0, gt=0, description="how long OVH's description of a ptt code (GET /sms/ptts) is kept"
    )
    sender_cache_ttl_s: float = Field(
        default=600.0, gt=0, description="how long the account's senders and their statuses are kept (seconds)"
    )
    sender_check: bool = Field(
        default=True, description="reject requests naming a sender OVH lists as missing or not enabled"
    )

    @field_validator("lanes", mode="before")
    @classmethod
    def _split_lanes(cls, value: object) -> object:
        if isinstance(value, str) and not value.startswith("["):
            return [lane.strip() for lane in value.split(",") if lane.strip()]
        return value

    @field_validator("lanes")
    @classmethod
    def _known_lanes(cls, value: list[str]) -> list[str]:
        unknown = [lane for lane in value if lane not in LANES]
        if unknown or not value:
            raise ValueError(f"lanes must be a non-empty subset of {', '.join(LANES)}; got {unknown or value}")
        return value

    @field_validator("linger_ms")
    @classmethod
    def _complete_linger(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(LANES)
        if unknown:
            raise ValueError(f"linger_ms: unknown lane {sorted(unknown)[0]!r}")
        if any(ms < 0 for ms in value.values()):
            raise ValueError("linger_ms: must be >= 0")
        return {**DEFAULT_LINGER_MS, **value}
