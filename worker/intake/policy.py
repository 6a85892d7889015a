"""Checks made before any credit is reserved: the sender, and the blacklist.

Called by the accept stage for each request (``Policy.screen``), they never call OVH and read
Redis at most once per queue message and account (``new_pack``): the senders and the blacklist
are kept by ``worker.ovhcloud.senders`` and ``worker.ovhcloud.blacklist``, refreshed in the
background.

- **Sender**: a request naming (or defaulting to) a sender OVH lists as missing or not enabled is
  rejected, ``sender_not_allowed`` (``sender_check``). A sender not known yet is allowed.
- **Blacklist**: a commercial send (``no_stop_clause`` false) is not sent to numbers that opted
  out (STOP) or are on the account's OVH blacklist: their outcome is ``blacklisted``, nothing is
  reserved nor spent for them; a request all of whose receivers are blacklisted is rejected,
  ``blacklisted``. Non-commercial sends (codes, notifications) are not held back.
"""

from __future__ import annotations

import logging
import threading

from contracts.models import ReceiverOutcome, SendRequest
from worker.errors import Rejection
from worker.ovhcloud.blacklist import Blacklist
from worker.ovhcloud.senders import ENABLED, Senders
from worker.phones import Receiver
from worker.settings import Settings

log = logging.getLogger(__name__)

#: Why a receiver is blacklisted, as its outcome says.
BLACKLISTED_REASON = "opted out (STOP) or on the account's blacklist: commercial SMS are not sent to it"


class Policy:
    def __init__(self, settings: Settings, *, blacklist: Blacklist, senders: Senders) -> None:
        self.settings = settings
        self.blacklist = blacklist
        self.senders = senders
        self._services: set[str] = set() if settings.service_name is None else {settings.service_name}
        self._services_lock = threading.Lock()  # added to by accept threads, read by background ones
        self._local = threading.local()

    def services(self) -> list[str]:
        """The accounts requests used so far (and the default one): the background keeps them."""
        with self._services_lock:
            return sorted(self._services)

    def new_pack(self) -> None:
        """A new queue message: the next blacklist check of each account re-reads its generation."""
        self._local.fresh = set()

    def screen(
        self, request: SendRequest, service: str, valid: list[Receiver]
    ) -> tuple[list[Receiver], list[ReceiverOutcome]]:
        """``(receivers to send to, outcomes of those set aside)``; ``Rejection`` when none is left."""
        if service not in self._services:
            with self._services_lock:
                self._services.add(service)
        sender = request.sender or self.settings.sender
        if self.settings.sender_check and sender is not None:
            status = self.senders.status(service, sender)
            if status is not None and status != ENABLED:
                raise Rejection(
                    "sender_not_allowed",
                    f"sender: {sender!r} cannot be used on {service} (OVH status: {status})",
                    field="sender",
                )
        if request.no_stop_clause:
            return valid, []
        fresh: set[str] | None = getattr(self._local, "fresh", None)  # None: outside a pack, always re-read
        numbers = [r.e164 or "" for r in valid]
        blocked = self.blacklist.blocked(service, numbers, fresh=fresh is None or service not in fresh)
        if fresh is not None:
            fresh.add(service)
        if not blocked:
            return valid, []
        outcomes = [
            ReceiverOutcome(receiver=r.e164 or r.given, status="blacklisted", reason=BLACKLISTED_REASON)
            for r in valid
            if r.e164 in blocked
        ]
        kept = [r for r in valid if r.e164 not in blocked]
        log.info("request %s: %d receivers blacklisted on %s", request.request_id, len(outcomes), service)
        if not kept:
            raise Rejection(
                "blacklisted",
                "receivers: every receiver opted out (STOP) or is on the account's blacklist",
                field="receivers",
                outcomes=outcomes,
            )
        return kept, outcomes
