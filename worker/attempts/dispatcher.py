"""The dispatch stage: take a rate-limit slot, claim what is due, make the jobs call, settle.

Dispatchers are threads in every worker process, each looping: find the most urgent due buffer
of its lanes (highest lane first), take a slot from the shared rate limiter for that lane, then
claim up to one call's receivers into an attempt (``worker.attempts.lifecycle``) and call OVH.
Claiming after the slot is granted means that under saturation the limiter, not the linger,
decides when a call leaves, and the call carries everything due for its key at that moment.

A call's tries (tenacity, ``worker.retries``): before each try the worker checks its lease
locally (a paused worker wakes up unable to call); a try that surely did not reach OVH puts the
attempt back to "claimed" before the backoff; a retry takes a new slot and marks the attempt
"calling" again. OVH's answer is recorded on the attempt and the attempt settled, both retried
until Redis answers; an ambiguous failure hands the attempt to the reconcilers. On stop, a
dispatcher finishes the call in hand, and gives back one it cannot finish.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from contracts.wire import LANES
from worker.attempts.lease import Lease
from worker.attempts.lifecycle import Attempt, Attempts, Outcome, Owner
from worker.attempts.settlement import from_failure, from_report
from worker.attempts.steps import Settled, Step
from worker.batching.buffers import Buffers, Idle
from worker.errors import AmbiguousError, PermanentError, RetryableError
from worker.ops.telemetry import Telemetry
from worker.ovhcloud.gateway import OvhGateway
from worker.ovhcloud.jobs import JobCall, SendingReport
from worker.ovhcloud.rate_limit import ACQUIRE_TIMEOUT_S, RateLimiter
from worker.retries import REDIS_OUTAGE, call_with_retries, until_redis_answers
from worker.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest a dispatcher sleeps before looking at the buffers again (seconds).
MAX_IDLE_S = 2.0
#: Share of ``SMS_WORKER_RECONCILE_GRACE_S`` the "calling" mark of a try may take to come back for
#: the try to leave. The try's deadline (when OVH may still carry it out: the connect and read
#: timeouts, plus the grace) counts from when Redis ran the mark, and the request leaves when its
#: reply is back: a reply held longer (a stall, a slow network) is asked again, which moves the
#: try's start to then. Half the grace (5 s by default) leaves the other half as the margin.
LATE_MARK_SHARE = 0.5
#: Times a late "calling" mark is asked again before the call is given back unsent.
LATE_MARK_ASKS = 10

#: Longest a dispatcher waits for a slot of a lane below the top one it serves before looking at
#: the buffers again (seconds): a code that arrives meanwhile is claimed by the first dispatcher
#: to look, not left waiting for the process's top-lane dispatcher while that one is in a slow
#: call (up to the read timeout).
RELOOK_S = 0.25


def liveness_interval_s(settings: Settings) -> float:
    """Longest a healthy dispatcher goes between two liveness ticks (seconds).

    It ticks every loop and every try of a call; between two ticks lie at most a rate-limit
    slot wait, one try (connect and read timeouts) and tenacity's wait, plus half a minute.
    """
    if settings.dispatch_liveness_s is not None:
        return settings.dispatch_liveness_s
    try_s = settings.ovh_connect_timeout_s + settings.ovh_read_timeout_s
    return ACQUIRE_TIMEOUT_S + try_s + settings.retry_max_wait_s + 30.0


class _GiveBack(Exception):
    """The call cannot go on now (stopping, no slot, lease too short): nothing was sent."""


class _FencedOut(Exception):
    """This worker no longer owns the attempt: whoever took it over finishes it."""

    def __init__(self, step: Step) -> None:
        super().__init__(step.value)
        self.step = step


@dataclass
class _Tries:
    """How many tries a call has made so far (the number of the last one)."""

    n: int = 0


class Dispatcher:
    """Claims due batches and sends them; ``run`` is the body of a dispatcher thread."""

    def __init__(
        self,
        settings: Settings,
        buffers: Buffers,
        attempts: Attempts,
        gateway: OvhGateway,
        limiter: RateLimiter,
        lease: Lease,
        *,
        lanes: list[str] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.buffers = buffers
        self.attempts = attempts
        self.gateway = gateway
        self.limiter = limiter
        self.lease = lease
        served = lanes or settings.lanes
        self.lanes = [lane for lane in LANES if lane in served]  # highest priority first
        self.telemetry = telemetry or Telemetry()
        self.calls = 0
        self._stop = threading.Event()

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        loop = threading.current_thread().name
        self.telemetry.liveness.register(loop, liveness_interval_s(self.settings))
        failing_since: float | None = None
        while not stop.is_set():
            self.telemetry.tick(loop)
            try:
                self.run_once(stop)
                failing_since = None
            except REDIS_OUTAGE as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.error("dispatcher lost Redis (%s); retrying every second", exc)
                stop.wait(1.0)
            except Exception:
                log.exception("dispatcher error; going on in 1 s")
                stop.wait(1.0)
        self.telemetry.liveness.unregister(loop)

    def run_once(self, stop: threading.Event) -> bool:
        """Send one due batch, or wait for one; ``True`` when a call was made."""
        owner = self.lease.owner()
        if owner is None:  # no valid lease: nothing may be claimed until the lease thread has one
            stop.wait(0.2)
            return False
        found = self.buffers.peek(self.lanes)
        if isinstance(found, Idle):
            next_due = found.next_due_ms
            wait = MAX_IDLE_S if next_due is None else min(max((next_due - self._redis_ms()) / 1000, 0.001), MAX_IDLE_S)
            self.buffers.wait_for_work(self.lanes, wait)
            return False
        lane, batch_key = found.lane, found.batch_key
        patience_s = ACQUIRE_TIMEOUT_S if lane == self.lanes[0] else RELOOK_S
        if not self.limiter.acquire(lane, timeout_s=patience_s, stop=stop):
            return False
        call_id = uuid.uuid4().hex  # the claim's token: sent again after a lost reply, it finds its attempt
        claimed = self._redis(
            lambda: self.attempts.claim(
                owner,
                lane,
                batch_key,
                call_id,
                linger_ms=self.settings.linger_ms[lane],
                max_receivers=self.settings.max_receivers_per_call,
            ),
            "claim a call",
        )
        if not isinstance(claimed, Attempt):  # another dispatcher took it, or the lease is gone
            self.limiter.release()
            return False
        self.send(claimed, owner)
        return True

    def _redis_ms(self) -> int:
        seconds, micros = self.buffers.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- one call ---------------------------------------------------------------------------------

    def send(self, attempt: Attempt, owner: Owner) -> None:
        """Make the jobs call of a claimed attempt (slot held for its first try) and settle it."""
        started = time.monotonic()
        kind = "sent"
        outcome: Outcome | None = None
        tries = _Tries()
        try:
            report = call_with_retries(
                self._tries(attempt, owner, tries),
                budget_s=self.settings.retry_budget_s[attempt.lane],
                max_wait_s=self.settings.retry_max_wait_s,
                attempts=self.settings.retry_attempts,
                stop=self._stop,
            )
        except _GiveBack as exc:
            kind = "given_back"
            log.info("call %s given back unsent: %s", attempt.call_id, exc, extra={"call_id": attempt.call_id})
            self._redis(lambda: self.attempts.release(owner, attempt), "give back a call")
        except _FencedOut as exc:
            kind = "fenced_out"
            log.warning(
                "call %s: this worker lost its lease or the attempt (%s); it is finished elsewhere",
                attempt.call_id,
                exc.step.value,
                extra={"call_id": attempt.call_id},
            )
        except RetryableError as exc:
            if self._stop.is_set():  # stopped while waiting to retry: the attempt is "claimed"
                kind = "given_back"
                self._redis(lambda: self.attempts.release(owner, attempt), "give back a call")
            else:
                kind = "failed"
                outcome = from_failure(attempt, exc, self.settings.results_queue)
                self._settle(attempt, owner, outcome, None)
        except PermanentError as exc:
            kind = "failed"
            outcome = from_failure(attempt, exc, self.settings.results_queue)
            self._settle(attempt, owner, outcome, None)
        except AmbiguousError as exc:
            kind = "ambiguous"
            self._ambiguous(attempt, owner, tries.n, exc.message)
        except Exception as exc:
            # A fault of ours during the call: whether it left is unknown, so it is reconciled.
            log.exception("call %s failed unexpectedly", attempt.call_id, extra={"call_id": attempt.call_id})
            kind = "ambiguous"
            self._ambiguous(attempt, owner, tries.n, f"internal error during the jobs call: {type(exc).__name__}")
        else:
            outcome = from_report(attempt, report, self.settings.results_queue)
            self._settle(attempt, owner, outcome, report)
        self.calls += 1
        settlements = outcome.settlements if outcome is not None else []
        self.telemetry.jobs_call(
            attempt.call_id,
            attempt.lane,
            len(attempt.entries),
            settlements,
            time.monotonic() - started,
            outcome=None if kind in ("sent", "failed") else kind,
        )

    def _tries(self, attempt: Attempt, owner: Owner, tries: _Tries) -> Callable[[], SendingReport]:
        """One try of the jobs call; every try after the first takes its own slot. Each try's
        number is the token of its steps (``call``, ``uncall``, ``ambiguous``)."""
        body: JobCall = {**attempt.meta.body, "receivers": [entry.receiver for entry in attempt.entries]}
        # Left on the lease when a try starts: enough to connect and send before other workers
        # may take the attempt over (half a lease at most; the refresh keeps four fifths left).
        margin_s = min(self.settings.ovh_connect_timeout_s, self.settings.lease_s / 2)
        budget_s = self.settings.retry_budget_s[attempt.lane]
        # Longest the owner may then take before its next try: the backoff, and a slot.
        next_try_ms = int((min(self.settings.retry_max_wait_s, budget_s) + ACQUIRE_TIMEOUT_S) * 1000)
        started = time.monotonic()

        def one_try() -> SendingReport:
            tries.n += 1
            number = tries.n
            if number > 1:
                try:
                    granted = self.limiter.acquire(attempt.lane, timeout_s=ACQUIRE_TIMEOUT_S, stop=self._stop)
                except REDIS_OUTAGE as exc:
                    raise _GiveBack(f"Redis does not answer ({exc})") from exc
                if not granted:
                    raise _GiveBack("no rate-limit slot for the retry")
            step = self._mark_calling(owner, attempt.call_id, number)
            if not step.done:
                raise _FencedOut(step)
            # The local fence: after a pause, only this check (made after the Redis one) tells.
            if not self.lease.valid(owner, margin_s=margin_s):
                raise _GiveBack("the lease is about to expire")
            self.telemetry.tick(threading.current_thread().name)
            cap = self.settings.retry_attempts
            last = (cap is not None and number >= cap) or time.monotonic() - started >= budget_s
            try:
                with self.telemetry.jobs_try(attempt.lane, last=last):
                    report = self.gateway.send_job(attempt.service, attempt.login, body)
            except RetryableError as exc:
                # Surely not carried out: back to "claimed" before the backoff, so a worker that
                # dies while waiting leaves a call that never left, not an ambiguous one.
                step = self._redis(
                    lambda: self.attempts.uncall(owner, attempt.call_id, number, next_step_ms=next_try_ms),
                    "mark a try as not sent",
                )
                if not step.done:
                    raise _FencedOut(step) from exc
                if exc.status == 429:
                    retry_after_s = exc.retry_after_s
                    self._feedback(lambda: self.limiter.on_rate_limited(retry_after_s))
                raise
            except PermanentError:
                self._feedback(self.limiter.on_success)  # OVH answered, and not with 429
                raise
            self._feedback(self.limiter.on_success)
            return report

        return one_try

    def _mark_calling(self, owner: Owner, call_id: str, number: int) -> Step:
        """``call`` for try ``number``, right before it leaves, asked again (the same token: it
        answers ``Step.ALREADY`` and moves the try's start to then) while its reply comes back
        later than ``LATE_MARK_SHARE`` of the grace, so the request leaves within that of the start
        its deadline counts from. ``_GiveBack`` after ``LATE_MARK_ASKS`` late replies in a row."""
        late_s = LATE_MARK_SHARE * self.settings.reconcile_grace_s
        for _ in range(LATE_MARK_ASKS):
            asked = time.monotonic()
            step = self._redis(lambda: self.attempts.call(owner, call_id, number), "mark a try as calling")
            if not step.done or time.monotonic() - asked <= late_s:
                return step
            log.info("call %s: its calling mark came back late; marking it again", call_id, extra={"call_id": call_id})
        raise _GiveBack(f"Redis answered later than {late_s} s {LATE_MARK_ASKS} times: too slow to start a call")

    def _settle(self, attempt: Attempt, owner: Owner, outcome: Outcome, report: SendingReport | None) -> None:
        """Settle the attempt with what the call did, retried until Redis answers (the same step
        sent again after a lost reply says it was applied). Fenced out (the lease expired, the
        attempt was taken over), OVH's answer is recorded on the attempt instead: whoever took it
        over settles from it."""
        reply = self._redis(lambda: self.attempts.settle(attempt, outcome, owner=owner), "settle a call")
        if isinstance(reply, Settled):
            self.telemetry.results(reply.published)
            return
        if report is not None:
            self._redis(lambda: self.attempts.answer(attempt.call_id, report), "record OVH's answer")
        log.warning(
            "call %s: not settled by this worker (%s); OVH's answer is on the attempt for whoever took it over",
            attempt.call_id,
            reply,
            extra={"call_id": attempt.call_id},
        )

    def _ambiguous(self, attempt: Attempt, owner: Owner, try_number: int, reason: str) -> None:
        log.warning(
            "call %s may have been carried out (%s): reconciling with OVH",
            attempt.call_id,
            reason,
            extra={"call_id": attempt.call_id},
        )
        self._redis(
            lambda: self.attempts.ambiguous(owner, attempt.call_id, try_number, reason),
            "hand a call to reconciliation",
        )

    @staticmethod
    def _feedback(step: Callable[[], None]) -> None:
        """Tell the rate limiter how OVH answered: best effort, it must never lose an answer."""
        try:
            step()
        except REDIS_OUTAGE as exc:
            log.warning("rate limiter not told how OVH answered: %s", exc)

    def _redis(self, step: Callable[[], T], what: str) -> T:
        """Run an idempotent Redis step through an outage of up to ``redis_outage_s``."""
        return until_redis_answers(step, outage_s=self.settings.redis_outage_s, what=what)
