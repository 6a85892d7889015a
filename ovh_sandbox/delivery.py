"""How an outgoing SMS's ``deliveryReceipt`` and ``ptt`` evolve over time.

Each SMS gets a plan when it is accepted, drawn from a generator seeded by (sandbox seed, SMS
id), so the same seed gives the same outcomes and times. Its status is computed from the
elapsed time whenever it is read; there is no background thread.

===================  ===============  ======  ====================================
phase                deliveryReceipt  ptt     sentAt / deliveredAt
===================  ===============  ======  ====================================
before ``sent_at``   0 (pending)      0       null / null
before ``final_at``  4 (pending)      3       set / null
delivered            1 (success)      4       set / set
failed               2 (failed)       final   set / null
===================  ===============  ======  ====================================

``ptt`` 0 ("no operator status yet") is the sandbox's own code for an SMS not handed to an
operator yet; the others are OVHcloud's.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

#: ptt code -> (description, sms.PttDurationTypeEnum), from OVHcloud's SMS users guide.
PTTS: dict[int, tuple[str, str]] = {
    0: ("Pending: not handed to an operator yet (sandbox)", "temporary"),
    1: ("Not yet delivered due to a phone-related problem, delivery is being re-tried", "temporary"),
    2: ("Not yet delivered due to an operator-related problem, delivery is being re-tried", "temporary"),
    3: ("Accepted by the operator", "temporary"),
    4: ("Delivered", "permanent"),
    5: ("Undelivered, no detailed information related to the failure is known", "permanent"),
    6: ("Cannot determine whether this message has been delivered or has failed", "indeterminated"),
    8: ("Expired within the operator's SMSC, no reason for failure", "permanent"),
    20: ("Undeliverable in its current form", "permanent"),
    21: ("Subscriber credit problem, message expired", "permanent"),
    23: ("Incorrect, invalid, blacklisted or permanently barred MSISDN", "permanent"),
    24: ("Subscriber temporarily absent", "temporary"),
    25: ("Temporary condition in the operator network", "temporary"),
    26: ("Temporary phone-related error (SIM card full, memory exceeded...)", "temporary"),
    27: ("Handset permanently incompatible with this type of message", "permanent"),
    28: ("Rejected on suspicion of SPAM", "permanent"),
    29: ("Content not permitted on the network or shortcode", "permanent"),
    33: ("Adult content refused by a parental lock", "permanent"),
    39: ("New operator failure", "permanent"),
    73: ("Ported combinations unreachable", "permanent"),
    74: ("MSISDN roaming", "permanent"),
    76: ("Ported combinations blocked for the client", "permanent"),
    202: ("Ported combinations blocked for the client, contact support", "permanent"),
}

#: Final ptt codes drawn for a failed SMS.
FAILURE_PTTS = (5, 8, 20, 23, 24, 26, 27)

DLR_PENDING, DLR_DELIVERED, DLR_FAILED, DLR_SUBMITTED = 0, 1, 2, 4

#: DLR code -> the text OVH sends as ``descriptionDlr`` (OVHcloud's SMS users guide).
DLR_TEXT = {0: "Pending", 1: "Success", 2: "Failed", 4: "Pending", 8: "Buffered", 16: "Error"}

#: A reply that asks for no more SMS: STOP, as the mention OVH appends says.
_STOP = re.compile(r"\s*stop\b", re.IGNORECASE)

#: Texts of the replies the sandbox makes up (seeded reactions).
REPLY_TEXTS = ("Yes", "No", "OK, thanks", "Merci", "Call me back")


def is_stop(message: str) -> bool:
    return _STOP.match(message) is not None


def reaction(
    seed: int, sms_id: int, *, commercial: bool, for_response: bool, reply_rate: float, stop_rate: float
) -> str | None:
    """What the receiver of a delivered SMS sends back, drawn from (seed, id): ``"STOP"`` (only
    to a commercial SMS: it carries the STOP mention), a reply text (only to an SMS sent with
    ``senderForResponse``: it came from a number that takes replies), or None."""
    if not (reply_rate or stop_rate):
        return None
    rng = random.Random(f"{seed}:{sms_id}:reaction")
    draw = rng.random()
    if commercial and draw < stop_rate:
        return "STOP"
    if for_response and draw < stop_rate + reply_rate:
        return rng.choice(REPLY_TEXTS)
    return None


@dataclass(frozen=True)
class DeliveryPlan:
    sent_at: float  # unix time the SMS is handed to the operator
    final_at: float  # unix time of the final receipt
    delivered: bool
    final_ptt: int


@dataclass(frozen=True)
class DeliveryStatus:
    delivery_receipt: int
    ptt: int
    sent_at: float | None
    delivered_at: float | None


def plan(
    seed: int,
    sms_id: int,
    start: float,
    *,
    delay_s: tuple[float, float],
    failure_rate: float,
    forced_ptt: int | None = None,
) -> DeliveryPlan:
    """The fate of one SMS due at ``start``; ``forced_ptt`` makes it fail with that code."""
    rng = random.Random(f"{seed}:{sms_id}")
    low, high = delay_s
    sent_at = start + rng.uniform(0.0, low)
    final_at = sent_at + rng.uniform(low, high)
    failed = rng.random() < failure_rate
    final_ptt = rng.choice(FAILURE_PTTS) if failed else 4
    if forced_ptt is not None:
        failed, final_ptt = forced_ptt != 4, forced_ptt
    return DeliveryPlan(sent_at, final_at, not failed, final_ptt)


def status_at(delivery: DeliveryPlan, now: float) -> DeliveryStatus:
    if now < delivery.sent_at:
        return DeliveryStatus(DLR_PENDING, 0, None, None)
    if now < delivery.final_at:
        return DeliveryStatus(DLR_SUBMITTED, 3, delivery.sent_at, None)
    if delivery.delivered:
        return DeliveryStatus(DLR_DELIVERED, 4, delivery.sent_at, delivery.final_at)
    return DeliveryStatus(DLR_FAILED, delivery.final_ptt, delivery.sent_at, None)
