"""The worker's configuration, parsed once from the environment (pydantic-settings).

Names follow the ecosystem: ``REDIS_URL`` for the broker, python-ovh's own ``OVH_*`` variables
for OVH, ``SMS_WORKER_*`` for the rest. Nested values use ``__``:
``SMS_WORKER_LINGER_MS__MEDIUM=100``. Secrets may also come from files in
``SMS_WORKER_SECRETS_DIR`` (a Kubernetes secret volume), one file per variable, named after it
(``OVH_CONSUMER_KEY``, ``REDIS_URL``...). OVH credentials read here are handed to python-ovh
explicitly; those left unset are still looked up by python-ovh itself (environment, ``ovh.conf``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.wire import DEFAULT_RESULTS_QUEUE, LANES
from worker import quiet_hours
from worker.accounting.quotas import UserQuota

#: Per-lane linger (ms): how long a partly filled batch buffer waits for more identical sends.
DEFAULT_LINGER_MS = {"high": 0, "medium": 50, "low": 200, "veryLow": 500}
#: Per-lane retry budget (s): a one-time code is worth little after a quarter of a minute; bulk
#: sends can wait out an OVH incident of minutes.
DEFAULT_RETRY_BUDGET_S = {"high": 15.0, "medium": 120.0, "low": 300.0, "veryLow": 600.0}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SMS_WORKER_",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=os.environ.get("SMS_WORKER_SECRETS_DIR") or None,
    )

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "SMS_WORKER_REDIS_URL"))
    ovh_endpoint: str = Field(default="ovh-eu", validation_alias=AliasChoices("OVH_ENDPOINT"))
    # OVH credentials under python-ovh's own names; never logged or printed (SecretStr).
    ovh_application_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("OVH_APPLICATION_KEY"))
    ovh_application_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OVH_APPLICATION_SECRET")
    )
    ovh_consumer_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("OVH_CONSUMER_KEY"))
    ovh_client_id: SecretStr | None = Field(default=None, validation_alias=AliasChoices("OVH_CLIENT_ID"))
    ovh_client_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("OVH_CLIENT_SECRET"))
    service_name: str | None = Field(default=None, description="OVH SMS account used when a request names none")
    sender: str | None = Field(default=None, description="OVH sender used when a request names none")
    default_region: str = Field(default="FR", description="region for receivers written without +country code")
    # NoDecode: SMS_WORKER_LANES=high,low is split by _split_lanes, not parsed as JSON.
    lanes: Annotated[list[str], NoDecode] = Field(default=list(LANES), description="lanes this process consumes")
    linger_ms: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_LINGER_MS))
    max_receivers_per_call: int = Field(default=500, ge=1, le=1000)
    results_queue: str = DEFAULT_RESULTS_QUEUE
    result_ttl_s: int = Field(default=86_400, ge=60, description="how long a result stays readable by wait()")
    dedupe_ttl_s: int = Field(default=7 * 86_400, ge=60, description="how long a request id stays known")
    request_ttl_s: int = Field(
        default=7 * 86_400,
        ge=3600,
        description="safety TTL of a request in flight (its result skeleton, counters, outcomes so far)",
    )
    results_queue_max_length: int = Field(
        default=100_000,
        ge=0,
        description="events a results queue holds at most; past it the oldest are dropped (0: no cap)",
    )
    delivery_tracking_ttl_s: int = Field(
        default=3 * 86_400,
        ge=0,
        description="how long each sent SMS's OVH id stays mapped to its request and receiver (0: not kept)",
    )
    campaign_stats_ttl_s: int = Field(
        default=30 * 86_400,
        ge=0,
        description="how long a tag's campaign statistics are kept after its last SMS or delivery report "
        "(sms-worker campaign report; 0: not kept)",
    )
    usage_ttl_s: int = Field(
        default=400 * 86_400,
        ge=0,
        description="how long a day's SMS and credits per user, tag and sender are kept after its last "
        "settlement (sms-worker usage; 0: not kept)",
    )
    usage_timezone: str = Field(
        default="Europe/Paris", description="the zone whose days sms-worker usage counts (an IANA name)"
    )
    ovh_connect_timeout_s: float = Field(default=5.0, gt=0)
    ovh_read_timeout_s: float = Field(default=30.0, gt=0)
    retry_budget_s: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_RETRY_BUDGET_S),
        description="per lane: how long a jobs call keeps retrying failures that surely sent nothing "
        "(429, 503, connect errors), from its first try (seconds)",
    )
    retry_attempts: int | None = Field(
        default=None, ge=1, le=1000, description="tries of one jobs call at most, besides the budget (None: no count)"
    )
    retry_max_wait_s: float = Field(default=30.0, gt=0)
    dispatchers: int = Field(default=4, ge=1, le=64, description="dispatch threads per process")
    # Accept is CPU-bound Python (validation, phonenumbers, JSON) and a pack costs one Redis round
    # trip, so more threads only fight for the GIL and delay the dispatchers: measured on 2 cores,
    # 1 thread gave both the best broadcast rate and the lowest code latency (benchmarks/README.md).
    # Scale with processes or replicas instead.
    threads: int = Field(default=1, ge=1, le=256, description="accept threads per process")
    poll_ms: int = Field(
        default=1000, ge=5, le=4000, description="longest a consumer blocks on an idle queue before looking again (ms)"
    )
    # quotas and credits (see worker.accounting)
    quotas_file: Path | None = Field(default=None, description="TOML (or .json) file of per-user quotas")
    quotas: dict[str, UserQuota] = Field(
        default_factory=dict, description="per-user quotas as JSON, by login; override quotas_file entries"
    )
    rates_ttl_s: float = Field(
        default=86_400.0,
        gt=0,
        description="after how long a destination's credit rate is read again (it is used meanwhile)",
    )
    rate_wait_s: float = Field(
        default=600.0,
        gt=0,
        description="how long a request whose destination's credit rate OVH has not told yet waits for it "
        "(its message retried while the rate is read) before it is refused with rate_unknown (seconds)",
    )
    rates_prefetch: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="countries (ISO codes) whose credit rates are read at start, besides the default region's",
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
    rate_limit_headroom: float = Field(
        default=0.9,
        ge=0.0,
        le=1000.0,
        description="calls' worth of the rate limit that only the high lane may take (one-time codes): "
        "bulk lanes leave it in the bucket, so a code does not wait a slot interval behind a campaign",
    )
    # attempts, leases, reconciliation, drain (see worker.attempts.lifecycle and worker.attempts.reconcile)
    lease_s: float = Field(
        default=15.0,
        ge=1.0,
        le=300.0,
        description="a worker's lease (seconds): its attempts are taken over within a fifth of this after it expires",
    )
    drain_s: float = Field(
        default=20.0,
        ge=0.0,
        le=600.0,
        description="on SIGTERM, how long in-flight calls get to finish and settle (keep it under the pod's grace)",
    )
    reconcile_grace_s: float = Field(
        default=10.0,
        ge=0.0,
        description="after a call became ambiguous, how long OVH's records get to show it before its "
        "missing receivers count as proven absent and are sent again",
    )
    reconcile_deadline_s: float = Field(
        default=3600.0,
        gt=0.0,
        description="after this long unresolved (OVH's records unreadable), an ambiguous receiver ends unknown",
    )
    reconcile_max_lookups: int = Field(
        default=1000, ge=1, description="SMS records read at most in one look at an ambiguous call"
    )
    reconcilers: int = Field(default=1, ge=0, le=16, description="reconciler threads per process")
    redis_outage_s: float = Field(
        default=300.0,
        gt=0.0,
        description="how long staging and settlement keep retrying while Redis does not answer",
    )
    # operations (see worker.ops)
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="port of /metrics, /healthz and /readyz (None: off; 0: any free one)"
    )
    metrics_host: str = Field(default="0.0.0.0", description="address the metrics port binds")
    log_format: Literal["text", "json"] = Field(default="text", description="one line per record: text or JSON")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    dispatch_liveness_s: float | None = Field(
        default=None,
        gt=0,
        description="longest a dispatch loop may go without progress before /healthz fails, in seconds "
        "(default: the longest a healthy jobs call try can take, from the OVH timeouts and retry waits)",
    )
    # after the send: delivery reports, replies and STOP (see worker.after_send), sender and blacklist checks
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
    pull_max_pending: int = Field(
        default=50_000,
        ge=1,
        description="pull mode: SMS whose receipt is awaited, at most; past it the oldest are no longer "
        "polled (counted in sms_worker_pull_receipts_dropped_total)",
    )
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

    # quiet hours of commercial sends (see worker.quiet_hours); campaigns (see worker.campaigns.bulk)
    quiet_hours_enabled: bool = Field(
        default=True, description="hold commercial sends (no_stop_clause false) due in the quiet hours"
    )
    quiet_hours_window: str = Field(default="20:00-08:00", description="local times no commercial SMS leaves")
    quiet_hours_closed_days: str = Field(default="sun", description="weekdays closed all day: mon,...,sun or empty")
    quiet_hours_holidays: str = Field(
        default="FR", description="country (ISO code, or CC-SUBDIVISION such as FR-57) whose public holidays are closed"
    )
    quiet_hours_timezone: str = Field(default="Europe/Paris", description="the zone the window is read in")
    bulk_document_rows: int = Field(
        default=50_000,
        ge=1,
        le=500_000,
        description="rows per receivers document of a bulk campaign (one OVH jobs call each)",
    )
    bulk_document_ttl_s: int = Field(
        default=7 * 86_400,
        ge=600,
        description="how long a bulk campaign's documents and records live in Redis (and its document URLs work)",
    )
    inbound_public_url: str | None = Field(
        default=None,
        description="the URL OVH reaches sms-worker inbound at (https://host[:port]); bulk campaigns' "
        "receivers documents are served under it",
    )

    breaker_threshold: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of failed SMS over the window at which a bulk campaign is paused (1: never)",
    )
    breaker_window_s: float = Field(default=300.0, gt=0, description="the circuit breaker's window (seconds)")
    breaker_min_outcomes: int = Field(
        default=50, ge=1, description="outcomes in the window before the circuit breaker may trip"
    )

    def quiet_hours(self) -> quiet_hours.QuietHours:
        """The quiet-hours rule these settings describe (``QuietHoursError`` when it cannot be used)."""
        start, end = quiet_hours.parse_window(self.quiet_hours_window)
        country, _, subdivision = self.quiet_hours_holidays.strip().upper().partition("-")
        return quiet_hours.QuietHours(
            enabled=self.quiet_hours_enabled,
            timezone=self.quiet_hours_timezone,
            start=start,
            end=end,
            closed_days=quiet_hours.parse_days(self.quiet_hours_closed_days),
            country=country,
            subdivision=subdivision or None,
        )

    def ovh_credentials(self) -> dict[str, str]:
        """The OVH credentials set here, as python-ovh's keyword arguments (secrets revealed: pass, never log)."""
        fields = {
            "application_key": self.ovh_application_key,
            "application_secret": self.ovh_application_secret,
            "consumer_key": self.ovh_consumer_key,
            "client_id": self.ovh_client_id,
            "client_secret": self.ovh_client_secret,
        }
        return {name: value.get_secret_value() for name, value in fields.items() if value is not None}

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("lanes", "rates_prefetch", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """``a,b`` or a JSON list ``["a", "b"]``."""
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError('not a JSON list; write a,b or ["a", "b"]') from None
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("usage_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from worker.accounting.usage import zone

        zone(value)  # ValueError with the reason when the zone is unknown
        return value

    @field_validator("lanes")
    @classmethod
    def _known_lanes(cls, value: list[str]) -> list[str]:
        unknown = [lane for lane in value if lane not in LANES]
        if unknown or not value:
            raise ValueError(f"lanes must be a non-empty subset of {', '.join(LANES)}; got {unknown or value}")
        return value

    @field_validator("retry_budget_s")
    @classmethod
    def _complete_budget(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(LANES)
        if unknown:
            raise ValueError(f"retry_budget_s: unknown lane {sorted(unknown)[0]!r}")
        if any(s < 0 for s in value.values()):
            raise ValueError("retry_budget_s: must be >= 0")
        return {**DEFAULT_RETRY_BUDGET_S, **value}

    @field_validator("linger_ms")
    @classmethod
    def _complete_linger(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(LANES)
        if unknown:
            raise ValueError(f"linger_ms: unknown lane {sorted(unknown)[0]!r}")
        if any(ms < 0 for ms in value.values()):
            raise ValueError("linger_ms: must be >= 0")
        return {**DEFAULT_LINGER_MS, **value}
