"""The worker's exception tree. Retries live in one layer (``worker.ovhcloud.retries``) and key off it.

::

    SmsWorkerError
    ├── ConfigurationError        refuse to start: missing broker or credentials
    │   └── UsageError            a command was given input it cannot use (a file, an option)
    ├── UnreadablePayload         no request id can be read: dead-letter queue
    ├── Rejection                 the request itself cannot be sent: its ``rejected`` result says why
    └── GatewayError              a jobs call did not succeed (carries OVH's details)
        ├── RetryableError        surely not carried out (connect error, 429, 503): retry
        ├── PermanentError        OVH refused (400, 403, 404, ...): ``failed`` result
        └── AmbiguousError        may have been carried out (read timeout, reset after the
                                  request left, 500/502): never resent blindly
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.models import ErrorInfo, ReceiverOutcome


class SmsWorkerError(Exception):
    """Base of every error raised on purpose by the worker."""


class ConfigurationError(SmsWorkerError):
    """The process cannot run with this configuration."""


class UsageError(ConfigurationError):
    """A command was given a file or an option it cannot use: one line, exit 2, nothing done."""


class UnreadablePayload(SmsWorkerError):
    """A queued message carries no readable request id; it goes to the dead-letter queue."""


class Rejection(SmsWorkerError):
    """The request cannot be sent, for a fault of its own (or a refusal that goes away: the code
    says so); carries what its ``rejected`` result says: ``error`` and the receivers' ``outcomes``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        outcomes: Sequence[ReceiverOutcome] = (),
        credits_needed: float | None = None,
        credits_left: float | None = None,
    ):
        super().__init__(message)
        self.error = ErrorInfo(
            code=code, message=message, field=field, credits_needed=credits_needed, credits_left=credits_left
        )
        self.outcomes = list(outcomes)


class GatewayError(SmsWorkerError):
    def __init__(
        self,
        message: str,
        *,
        ovh_class: str | None = None,
        status: int | None = None,
        query_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.ovh_class = ovh_class
        self.status = status
        self.query_id = query_id
        self.retry_after_s = retry_after_s


class RetryableError(GatewayError):
    """The call surely did not take effect; trying again is safe."""


class PermanentError(GatewayError):
    """OVH answered and refused; trying again would get the same answer."""


class AmbiguousError(GatewayError):
    """The call may have taken effect; only a reconciliation may decide to resend."""


class NoSlot(RetryableError):
    """No background rate-limit slot in time (or the worker is stopping): nothing was called."""
