"""What OVH's delivery codes mean: the status of a report (the ptt table: ``worker.after_send.ptts``).

OVH reports an SMS's state with a DLR code (``dlr`` in the account's callback, ``description`` in
an API user's, ``deliveryReceipt`` in ``GET .../outgoing/{id}``: 0, 4, 8 pending; 1 delivered;
2 failed; 16 error, not billed) and a ``ptt`` code (the operator's detail; OVHcloud's SMS users
guide lists them, ``GET /sms/ptts?ptt=`` describes each). The status of a report:

=============  ==============================================================  =====
status         when                                                            final
=============  ==============================================================  =====
delivered      DLR 1, or ptt 4                                                  yes
expired        ptt 8 (the SMS outlived its validity period)                      yes
unknown        ptt 6 (the operator gave no final status and will not)            yes
failed         DLR 2 or 16, or a failure ptt (5, 20-29, 33, 39, 73...)           yes
pending        anything else: DLR 0, 4, 8, ptt 0-3, or codes not known yet        no
=============  ==============================================================  =====

The DLR code is read first (a ``dlr`` 1 is delivered whatever the ptt says).
"""

from __future__ import annotations

from datetime import UTC, datetime

#: DLR codes: delivered, failed, pending.
DLR_DELIVERED = {1}
DLR_FAILED = {2, 16}
#: ptt codes of an SMS on its way.
PTT_PENDING = {0, 1, 2, 3}
#: Largest ptt and DLR codes accepted (OVH's are small integers).
MAX_PTT = 9999
MAX_DLR = 255


def classify(ptt: int | None, dlr: int | None) -> tuple[str, bool]:
    """``(status, final)`` of a report with these codes (see the module's table)."""
    if dlr in DLR_DELIVERED or ptt == 4:
        return "delivered", True
    if ptt == 8:
        return "expired", True
    if ptt == 6:
        return "unknown", True
    if dlr in DLR_FAILED or (ptt is not None and ptt not in PTT_PENDING and ptt >= 5):
        return "failed", True
    return "pending", False


def parse_date(text: str | None) -> float | None:
    """OVH's ``date`` of a report as unix seconds: ISO 8601, ``YYYY-MM-DD HH:MM:SS`` (UTC when no
    offset is given), ``YYYYMMDDHHMMSS`` or unix seconds; None when it is none of these."""
    if not text:
        return None
    text = text.strip()
    try:
        value = float(text)
        if 0 < value < 1e11:
            return value
    except ValueError:
        pass
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%Y%m%d%H%M%S")):
        try:
            moment = parse(text)
        except ValueError:
            continue
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None
