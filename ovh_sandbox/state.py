"""What the sandbox remembers: accounts, senders, users and their quotas, jobs and outgoing SMS,
and, for inspection, every accepted SMS, every jobs call and counters.

One lock guards it all; nothing sleeps while holding it. Times are unix floats from the
injected ``clock``.

Credits: an account has ``credits_left``; a user with an active quota holds ``quotaLeft``
credits taken from the account (OVHcloud: "assigning a quota to an API user will reduce the
total credit of an SMS account by an equal amount"), shown as ``creditsHoldByQuota``. A send
through ``/users/{login}/jobs`` by a user with an active quota is paid from that quota, any
other send from ``credits_left``. A send that cannot be paid in full is refused as a whole.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ovh_sandbox import billing, delivery, phones
from ovh_sandbox.ovh_errors import OvhError, bad_request, not_found

DEFAULT_SERVICE = "sms-sandbox-1"
DEFAULT_CREDITS = 1_000_000.0

#: Senders every new account starts with: name -> sms.StatusSenderEnum.
DEFAULT_SENDERS = {"SANDBOX": "enable", "SandboxInfo": "enable", "PENDINGSNDR": "waitingValidation"}
#: The enabled sender ``sms-worker sandbox`` tells a first user to send from.
DEFAULT_SENDER = "SANDBOX"

#: Sender shown on outgoing SMS sent with ``senderForResponse`` and no ``sender``: the short
#: number receivers can answer to.
RESPONSE_SENDER = "36180"

#: Defaults OVH applies to options left out of a jobs call.
DEFAULT_PRIORITY = "high"
DEFAULT_VALIDITY_MIN = 2880

#: First SMS id handed out (ids then increase by one, shared by all accounts).
FIRST_SMS_ID = 10_000_001


def iso(timestamp: float | None) -> str | None:
    """OVH's datetime format (seconds, with offset), or None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(math.floor(timestamp), tz=UTC).isoformat()


@dataclass
class Sender:
    name: str
    status: str = "enable"
    description: str = ""
    comment: str | None = None  # the moderator's message (why it was refused)
    kind: str = "alpha"  # sms.TypeSenderEnum
    reason: str = ""  # what the declaration told the moderator

    def view(self) -> dict[str, Any]:
        return {
            "comment": self.comment,
            "description": self.description,
            "referer": "custom",
            "sender": self.name,
            "status": self.status,
            "type": self.kind,
            "validationMedia": None,
        }


@dataclass
class User:
    login: str
    password: str
    quota_status: str = "inactive"
    quota_left: float = 0.0
    alert: dict[str, Any] = field(
        default_factory=lambda: {"alertEmail": "", "alertNumber": "", "alertThreshold": 0, "support": "mail"}
    )
    callback: str = ""
    stop_callback: str = ""
    ip_restrictions: list[str] = field(default_factory=list)

    @property
    def held(self) -> float:
        return self.quota_left if self.quota_status == "active" else 0.0

    def view(self) -> dict[str, Any]:
        return {
            "alertThresholdInformations": dict(self.alert),
            "callBack": self.callback,
            "ipRestrictions": list(self.ip_restrictions),
            "login": self.login,
            "password": self.password,
            "quotaInformations": {"quotaLeft": self.quota_left, "quotaStatus": self.quota_status},
            "stopCallBack": self.stop_callback,
        }


@dataclass
class Sms:
    id: int
    service: str
    login: str | None
    receiver: str
    text: str  # as delivered: the message plus the STOP mention when commercial
    sender: str
    created_at: float
    differed_min: int
    credits: float
    parts: int
    characters: int
    tag: str | None
    plan: delivery.DeliveryPlan
    paid_by_quota: bool
    cancelled: bool = False
    commercial: bool = False  # noStopClause false: OVH appended the STOP mention
    for_response: bool = False  # senderForResponse: the receiver can reply

    @property
    def due_at(self) -> float:
        return self.created_at + self.differed_min * 60

    def job_view(self) -> dict[str, Any]:
        return {
            "creationDatetime": iso(self.created_at),
            "credits": self.credits,
            "deliveredAt": None,
            "deliveryReceipt": delivery.DLR_PENDING,
            "differedDelivery": self.differed_min,
            "id": self.id,
            "message": self.text,
            "messageLength": self.characters,
            "numberOfSms": self.parts,
            "ptt": 0,
            "receiver": self.receiver,
            "sender": self.sender,
            "sentAt": None,
        }

    def outgoing_view(self, now: float) -> dict[str, Any]:
        status = delivery.status_at(self.plan, now)
        return {
            "batchID": None,
            "creationDatetime": iso(self.created_at),
            "credits": self.credits,
            "deliveredAt": iso(status.delivered_at),
            "deliveryReceipt": status.delivery_receipt,
            "differedDelivery": self.differed_min,
            "id": self.id,
            "message": self.text,
            "messageID": None,
            "messageLength": self.characters,
            "numberOfSms": self.parts,
            "ptt": status.ptt,
            "receiver": self.receiver,
            "sender": self.sender,
            "sentAt": iso(status.sent_at),
            "tag": self.tag or "",
            "tariffCode": (phones.normalize(self.receiver) or ("", "xx"))[1].upper(),
        }


@dataclass
class Incoming:
    id: int
    sender: str
    message: str
    tag: str
    created_at: float

    def view(self) -> dict[str, Any]:
        return {
            "creationDatetime": iso(self.created_at),
            "credits": 0.0,
            "id": self.id,
            "message": self.message,
            "sender": self.sender,
            "tag": self.tag,
        }


@dataclass
class Account:
    name: str
    credits_left: float
    senders: dict[str, Sender] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    sms: dict[int, Sms] = field(default_factory=dict)
    blacklist: dict[str, float] = field(default_factory=dict)
    incoming: dict[int, Incoming] = field(default_factory=dict)
    description: str = "OVH SMS sandbox account"
    recredit_amount: int | None = None  # automatic top-up (automaticRecreditAmount), None: off
    recredit_below: float = 0.0  # creditThresholdForAutomaticRecredit
    orders: list[dict[str, Any]] = field(default_factory=list)  # purchase orders (ovh_sandbox.admin)
    callback: str = ""
    stop_callback: str = ""
    sms_response: dict[str, Any] = field(
        default_factory=lambda: {
            "cgiUrl": None,
            "responseType": "cgi",
            "text": None,
            "trackingDefaultSmsSender": None,
            "trackingOptions": [],
        }
    )

    def view(self) -> dict[str, Any]:
        with_quota = [u for u in self.users.values() if u.quota_status == "active"]
        return {
            "automaticRecreditAmount": self.recredit_amount,
            "callBack": self.callback,
            "channel": "both",
            "creditThresholdForAutomaticRecredit": self.recredit_below,
            "creditsHoldByQuota": float(sum(u.quota_left for u in with_quota)),
            "creditsLeft": self.credits_left,
            "description": self.description,
            "iam": {
                "displayName": self.name,
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sms-sandbox:{self.name}")),
                "tags": {},
                "urn": f"urn:v1:eu:resource:sms:{self.name}",
            },
            "name": self.name,
            "smpp": False,
            "smsResponse": {**self.sms_response, "trackingOptions": list(self.sms_response["trackingOptions"])},
            "status": "enable",
            "stopCallBack": self.stop_callback,
            "templates": {
                "customizedEmailMode": False,
                "customizedSmsMode": False,
                "emailBody": None,
                "emailFrom": None,
                "emailSubject": None,
                "smsBody": None,
            },
            "userQuantityWithQuota": len(with_quota),
        }


@dataclass
class Outgoing:
    """Filters of ``GET .../outgoing`` (None: not filtered)."""

    receiver: str | None = None
    tag: str | None = None
    sender: str | None = None
    batch_id: str | None = None
    message_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    delivery_receipt: int | None = None
    ptt: int | None = None
    differed_delivery: int | None = None


class SandboxState:
    def __init__(
        self,
        *,
        seed: int = 0,
        service_name: str = DEFAULT_SERVICE,
        credits_left: float = DEFAULT_CREDITS,
        delivery_delay_s: tuple[float, float] = (0.5, 3.0),
        failure_rate: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.seed = seed
        self.service_name = service_name
        self.initial_credits = credits_left
        self.delivery_delay_s = delivery_delay_s
        self.failure_rate = failure_rate
        #: Told of every SMS accepted, under the lock (it must not take it): schedules callbacks.
        self.listener: Callable[[Sms], None] | None = None
        self._reset_accounts()
        self._reset_records()

    # -- lifecycle -------------------------------------------------------------------------------

    def _reset_accounts(self) -> None:
        self.accounts: dict[str, Account] = {}
        self._add_account(self.service_name, self.initial_credits)
        self._next_sms_id = FIRST_SMS_ID
        self._next_incoming_id = 1
        self.invalid_receivers: set[str] = set()
        self.failing_receivers: dict[str, int] = {}

    def _reset_records(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self._next_call_id = 1
        self.counters: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.credits_debited = 0.0
        self.credits_refunded = 0.0

    def _add_account(self, name: str, credits_left: float) -> Account:
        account = Account(name, float(credits_left))
        account.senders = {name: Sender(name, status) for name, status in DEFAULT_SENDERS.items()}
        self.accounts[name] = account
        return account

    def reset(self, accounts: bool = False) -> None:
        """Forget sent SMS, calls and counters; with ``accounts``, start the accounts afresh too."""
        with self.lock:
            self._reset_records()
            self.invalid_receivers = set()
            self.failing_receivers = {}
            if accounts:
                self._reset_accounts()

    # -- inspection (control API) ----------------------------------------------------------------

    def begin_call(self, consumer_key: str | None, login: str | None, receivers: int) -> int:
        with self.lock:
            call_id = self._next_call_id
            self._next_call_id += 1
            self.calls[call_id] = {
                "call_id": call_id,
                "time": self.clock(),
                "consumer_key": consumer_key,
                "login": login,
                "receivers": receivers,
                "status": None,
                "credits": 0.0,
            }
            self.counters["jobs_calls"] += 1
            return call_id

    def end_call(self, call_id: int, status: int | str, credits_removed: float) -> None:
        with self.lock:
            call = self.calls.get(call_id)
            if call is None:  # forgotten by a reset meanwhile
                return
            call["status"] = status
            call["credits"] = credits_removed
            call["ended"] = self.clock()
            self.by_status[str(status)] += 1

    def note_delay(self, call_id: int | None, delay_s: float) -> None:
        """A ``slow`` fault made this jobs call wait ``delay_s`` seconds before it was carried out."""
        with self.lock:
            call = self.calls.get(call_id) if call_id is not None else None
            if call is not None:
                call["delayed_s"] = round(delay_s, 3)

    def sent_records(self, receiver: str | None = None, service: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(r)
                for r in self.sent
                if (receiver is None or r["receiver"] == receiver) and (service is None or r["service"] == service)
            ]

    def call_records(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.calls.values()]

    def counters_view(self) -> dict[str, Any]:
        with self.lock:
            view: dict[str, Any] = {
                name: self.counters[name]
                for name in (
                    "jobs_calls",
                    "jobs_accepted",
                    "sms_sent",
                    "sms_cancelled",
                    "requests",
                    "bulk_jobs",  # jobs calls with a receivers document (ovh_sandbox.bulk)
                    "bulk_rows_refused",  # rows of such documents not sent (credits, length)
                )
            }
            view["credits_debited"] = self.credits_debited
            view["credits_refunded"] = self.credits_refunded
            view["by_status"] = dict(self.by_status)
            return view

    def count_request(self) -> None:
        with self.lock:
            self.counters["requests"] += 1

    # -- control ---------------------------------------------------------------------------------

    def set_credits(self, service: str, credits_left: float) -> None:
        with self.lock:
            self._account(service).credits_left = float(credits_left)

    def add_account(self, service: str, credits_left: float) -> None:
        with self.lock:
            if service in self.accounts:
                raise OvhError(409, f"Account {service} already exists")
            self._add_account(service, credits_left)

    def set_sender(self, service: str, sender: str, status: str, comment: str | None = None) -> None:
        """Create the sender, or move it to ``status`` (OVH's moderator), with its ``comment``."""
        with self.lock:
            senders = self._account(service).senders
            found = senders.setdefault(sender, Sender(sender, status))
            found.status, found.comment = status, comment

    def set_invalid_receivers(self, receivers: Iterable[str]) -> None:
        with self.lock:
            self.invalid_receivers = set(receivers)

    def set_failing_receivers(self, receivers: dict[str, int]) -> None:
        with self.lock:
            self.failing_receivers = dict(receivers)

    def add_blacklist(self, service: str, number: str) -> None:
        with self.lock:
            self._account(service).blacklist[number] = self.clock()

    def add_incoming(self, service: str, sender: str, message: str, tag: str) -> int:
        with self.lock:
            account = self._account(service)
            incoming_id = self._next_incoming_id
            self._next_incoming_id += 1
            account.incoming[incoming_id] = Incoming(incoming_id, sender, message, tag, self.clock())
            return incoming_id

    # -- after the send: receipts, callbacks, replies and STOP -----------------------------------

    def _find_sms(self, sms_id: int) -> Sms | None:
        for account in self.accounts.values():
            found = account.sms.get(sms_id)
            if found is not None:
                return found
        return None

    def delivery_callback(self, sms_id: int, final: bool) -> tuple[str, dict[str, str]] | None:
        """Where and what OVH calls when the SMS's receipt moves (``final``: its last receipt).

        The API user's ``callBack`` for an SMS sent through ``users/{login}/jobs`` (``id``, ``ptt``,
        ``date``, ``description`` = the DLR code, ``descriptionDlr``), else the account's (those
        plus ``dlr``, ``receiver``, ``sender``); None when no URL is set or the SMS is gone.
        """
        with self.lock:
            sms = self._find_sms(sms_id)
            if sms is None or sms.cancelled:
                return None
            account = self.accounts[sms.service]
            user = account.users.get(sms.login) if sms.login else None
            if not ((user is not None and user.callback) or account.callback):
                return None  # nowhere to call: the receipt is not worth building
            at = sms.plan.final_at if final else sms.plan.sent_at
            status = delivery.status_at(sms.plan, at)
            params = {
                "id": str(sms.id),
                "ptt": str(status.ptt),
                "date": iso(at) or "",
                "description": str(status.delivery_receipt),
                "descriptionDlr": delivery.DLR_TEXT.get(status.delivery_receipt, ""),
            }
            if user is not None and user.callback:
                return user.callback, params
            params.update({"dlr": str(status.delivery_receipt), "receiver": sms.receiver, "sender": sms.sender})
            return account.callback, params

    def receive(self, service: str, sender: str, message: str, tag: str | None = None) -> dict[str, Any]:
        """An SMS from ``sender`` reaches the account: recorded in ``GET .../incoming``; a STOP
        blacklists the number. Returns what OVH then calls: ``cgi`` (the account's smsResponse
        cgiUrl and its form fields) and ``stop`` (the stopCallBack URL and its parameters), each
        None when not configured, plus the incoming ``id`` and whether it is a ``stop``.

        ``tag`` defaults to the tag of the last SMS sent to that number (the one replied to);
        the stopCallBack is the API user's when that SMS was sent through a user who has one.
        """
        normalized = phones.normalize(sender)
        if normalized is None:
            raise bad_request("[sender] Not an international phone number")
        number = normalized[0]
        is_stop = delivery.is_stop(message)
        with self.lock:
            account = self._account(service)
            replied = max((s for s in account.sms.values() if s.receiver == number), key=lambda s: s.id, default=None)
            if tag is None:
                tag = (replied.tag if replied else None) or ""
            incoming_id = self._next_incoming_id
            self._next_incoming_id += 1
            account.incoming[incoming_id] = Incoming(incoming_id, number, message, tag, self.clock())
            fields = {"id": str(incoming_id), "senderid": number, "message": message, "tag": tag}
            fields["shortcode"] = RESPONSE_SENDER
            outcome: dict[str, Any] = {"id": incoming_id, "stop": is_stop, "cgi": None, "stop_callback": None}
            response = account.sms_response
            if response.get("responseType") == "cgi" and response.get("cgiUrl"):
                outcome["cgi"] = (response["cgiUrl"], fields)
            if is_stop:
                account.blacklist.setdefault(number, self.clock())
                user = account.users.get(replied.login) if replied is not None and replied.login else None
                url = user.stop_callback if user is not None and user.stop_callback else account.stop_callback
                if url:
                    outcome["stop_callback"] = (url, fields)
            return outcome

    def receipts(self) -> list[dict[str, Any]]:
        """Every SMS's receipt now: ``id, receiver, deliveryReceipt, ptt, final``."""
        with self.lock:
            now = self.clock()
            out = []
            for account in self.accounts.values():
                for sms in account.sms.values():
                    if sms.cancelled:
                        continue
                    status = delivery.status_at(sms.plan, now)
                    final = status.delivery_receipt in (delivery.DLR_DELIVERED, delivery.DLR_FAILED)
                    out.append(
                        {
                            "id": sms.id,
                            "service": sms.service,
                            "receiver": sms.receiver,
                            "deliveryReceipt": status.delivery_receipt,
                            "ptt": status.ptt,
                            "final": final,
                        }
                    )
            return sorted(out, key=lambda r: r["id"])

    # -- OVH surface: accounts, senders, blacklists, incoming ------------------------------------

    def _account(self, service: str) -> Account:
        account = self.accounts.get(service)
        if account is None:
            raise not_found("serviceName", service)
        return account

    def _user(self, account: Account, login: str) -> User:
        user = account.users.get(login)
        if user is None:
            raise not_found("login", login)
        return user

    def services(self) -> list[str]:
        with self.lock:
            return sorted(self.accounts)

    def account_view(self, service: str) -> dict[str, Any]:
        with self.lock:
            return self._account(service).view()

    def senders(self, service: str) -> list[str]:
        with self.lock:
            return sorted(self._account(service).senders)

    def sender_view(self, service: str, sender: str) -> dict[str, Any]:
        with self.lock:
            found = self._account(service).senders.get(sender)
            if found is None:
                raise not_found("sender", sender)
            return found.view()

    def blacklists(self, service: str) -> list[str]:
        with self.lock:
            return sorted(self._account(service).blacklist)

    def blacklist_view(self, service: str, number: str) -> dict[str, Any]:
        with self.lock:
            added = self._account(service).blacklist.get(number)
            if added is None:
                raise not_found("number", number)
            return {"batchID": None, "dateCreation": iso(added), "number": number, "smsOutgoingID": None}

    def incoming_ids(
        self, service: str, sender: str | None, tag: str | None, start: datetime | None, end: datetime | None
    ) -> list[int]:
        with self.lock:
            return [
                i.id
                for i in self._account(service).incoming.values()
                if (sender is None or i.sender == sender)
                and (tag is None or i.tag == tag)
                and _in_range(i.created_at, start, end)
            ]

    def incoming_view(self, service: str, incoming_id: int) -> dict[str, Any]:
        with self.lock:
            found = self._account(service).incoming.get(incoming_id)
            if found is None:
                raise not_found("id", incoming_id)
            return found.view()

    # -- OVH surface: users ----------------------------------------------------------------------

    def users(self, service: str) -> list[str]:
        with self.lock:
            return sorted(self._account(service).users)

    def create_user(self, service: str, login: str, password: str) -> None:
        if not (1 <= len(login) <= 32 and login.isascii() and login.isalnum()):
            raise bad_request("[login] A login is 1 to 32 letters and digits")
        if not (len(password) == 8 and password.isascii() and password.isalnum()):
            raise bad_request("[password] The password must contain 8 alpha-numeric characters")
        with self.lock:
            account = self._account(service)
            if login in account.users:
                raise OvhError(409, f"The user {login} already exists")
            account.users[login] = User(login, password)

    def user_view(self, service: str, login: str) -> dict[str, Any]:
        with self.lock:
            return self._user(self._account(service), login).view()

    def update_user(self, service: str, login: str, changes: dict[str, Any]) -> None:
        """PUT of an ``sms.User``: read-only fields (``login``) are ignored, as OVH does."""
        with self.lock:
            account = self._account(service)
            user = self._user(account, login)
            quota = changes.get("quotaInformations") or {}
            status = quota.get("quotaStatus") or user.quota_status
            left = quota.get("quotaLeft")
            left = user.quota_left if left is None else float(left)
            if left < 0:
                raise bad_request("[quotaInformations.quotaLeft] A quota cannot be negative")
            more_held = (left if status == "active" else 0.0) - user.held
            if more_held > account.credits_left:
                raise OvhError(403, f"Not enough credits to hold a quota of {left:g}: {account.credits_left:g} left")
            account.credits_left -= more_held
            user.quota_status, user.quota_left = status, left
            alert = changes.get("alertThresholdInformations") or {}
            user.alert.update({k: v for k, v in alert.items() if v is not None})
            if changes.get("password") is not None:
                user.password = changes["password"]
            if changes.get("callBack") is not None:
                user.callback = _callback_url("callBack", changes["callBack"])
            if changes.get("stopCallBack") is not None:
                user.stop_callback = _callback_url("stopCallBack", changes["stopCallBack"])
            if changes.get("ipRestrictions") is not None:
                user.ip_restrictions = list(changes["ipRestrictions"])

    def update_account(self, service: str, changes: dict[str, Any]) -> None:
        """PUT of an ``sms.Account``: the callbacks, ``smsResponse``, the description and the
        automatic top-up's settings are kept (the sandbox never tops an account up by itself);
        read-only fields are ignored, as OVH does."""
        below = changes.get("creditThresholdForAutomaticRecredit")
        if below is not None and below < 0:
            raise bad_request("[creditThresholdForAutomaticRecredit] Must not be negative")
        with self.lock:
            account = self._account(service)
            if changes.get("callBack") is not None:
                account.callback = _callback_url("callBack", changes["callBack"])
            if changes.get("stopCallBack") is not None:
                account.stop_callback = _callback_url("stopCallBack", changes["stopCallBack"])
            if changes.get("description") is not None:
                account.description = changes["description"]
            if "automaticRecreditAmount" in changes:  # null turns the automatic top-up off
                amount = changes["automaticRecreditAmount"]
                account.recredit_amount = None if amount is None else int(amount)
            if below is not None:
                account.recredit_below = float(below)
            response = changes.get("smsResponse")
            if response is not None:
                merged = {**account.sms_response, **{k: v for k, v in response.items() if v is not None}}
                if merged.get("cgiUrl"):
                    merged["cgiUrl"] = _callback_url("smsResponse.cgiUrl", merged["cgiUrl"])
                account.sms_response = merged

    def delete_user(self, service: str, login: str) -> None:
        """The credits the user's quota held go back to the account."""
        with self.lock:
            account = self._account(service)
            user = self._user(account, login)
            account.credits_left += user.held
            del account.users[login]

    # -- OVH surface: jobs and outgoing ----------------------------------------------------------

    def check_send(self, service: str, login: str | None, params: dict[str, Any]) -> None:
        """What a jobs call is refused for whatever its receivers: the account, the user, the
        sender, the text's length (``ovh_sandbox.bulk`` checks a document's call with it)."""
        no_stop = bool(params.get("noStopClause", False))
        cost = billing.estimate(params["message"], no_stop)
        if cost.parts > billing.MAX_PARTS:
            raise bad_request(
                f"[message] Message too long: {cost.parts} SMS parts ({cost.characters} {cost.characters_class} "
                f"characters), at most {billing.MAX_PARTS}"
            )
        if int(params.get("differedPeriod") or 0) < 0:
            raise bad_request("[differedPeriod] Must not be negative")
        sender = params.get("sender")
        with self.lock:
            account = self._account(service)
            if login is not None:
                self._user(account, login)
            if sender is not None:
                known = account.senders.get(sender)
                if known is None:
                    raise bad_request(f"[sender] The sender {sender!r} does not exist on {service}")
                if known.status != "enable":
                    raise bad_request(f"[sender] The sender {sender!r} is not enabled (status {known.status})")
            elif not params.get("senderForResponse", False):
                raise bad_request("[sender] A sender is required when senderForResponse is false")

    def send(
        self, service: str, login: str | None, params: dict[str, Any], call_id: int | None, *, bulk: bool = False
    ) -> dict[str, Any]:
        """``POST .../jobs``: check, pay, record one SMS per valid receiver; the SmsSendingReport.

        ``bulk``: SMS created from a receivers document (``ovh_sandbox.bulk``), not a call of its own.
        """
        message: str = params["message"]
        if not message:
            raise bad_request("[message] The message is empty")
        receivers: list[str] = params.get("receivers") or []
        if not receivers:
            raise bad_request("[receivers] No receiver given")
        no_stop = bool(params.get("noStopClause", False))
        cost = billing.estimate(message, no_stop)
        self.check_send(service, login, params)
        sender = params.get("sender")
        for_response = bool(params.get("senderForResponse", False))
        checked = [(raw, phones.normalize(raw)) for raw in receivers]
        text = billing.full_text(message, no_stop)
        differed = int(params.get("differedPeriod") or 0)
        with self.lock:
            account = self._account(service)
            user = self._user(account, login) if login is not None else None
            valid: list[tuple[str, float]] = []
            invalid: list[str] = []
            for raw, normalized in checked:
                if normalized is None or raw in self.invalid_receivers or normalized[0] in self.invalid_receivers:
                    invalid.append(raw)
                else:
                    valid.append((normalized[0], cost.parts * billing.rate(normalized[1])))
            total = sum(price for _, price in valid)
            by_quota = user is not None and user.quota_status == "active"
            if by_quota:
                assert user is not None
                if total > user.quota_left:
                    raise OvhError(
                        403,
                        f"Quota of user {user.login} exceeded: this message needs {total:g} credits "
                        f"and the quota has {user.quota_left:g} left",
                    )
                user.quota_left -= total
            else:
                if total > account.credits_left:
                    raise OvhError(
                        403,
                        f"Not enough credits: this message needs {total:g} credits "
                        f"and {service} has {account.credits_left:g} left",
                    )
                account.credits_left -= total
            now = self.clock()
            first_id = self._next_sms_id
            self._next_sms_id += len(valid)
        # Per SMS work (a seeded plan, the records) outside the lock: a 500-receiver call must not
        # hold up a one-receiver call arriving meanwhile (OVH does not serialize its callers).
        created: list[Sms] = []
        records: list[dict[str, Any]] = []
        for sms_id, (receiver, price) in enumerate(valid, start=first_id):
            created.append(
                Sms(
                    id=sms_id,
                    service=service,
                    login=login,
                    receiver=receiver,
                    text=text,
                    sender=sender if sender is not None else RESPONSE_SENDER,
                    created_at=now,
                    differed_min=differed,
                    credits=price,
                    parts=cost.parts,
                    characters=cost.characters,
                    tag=params.get("tag"),
                    plan=delivery.plan(
                        self.seed,
                        sms_id,
                        now + differed * 60,
                        delay_s=self.delivery_delay_s,
                        failure_rate=self.failure_rate,
                        forced_ptt=self.failing_receivers.get(receiver),
                    ),
                    paid_by_quota=by_quota,
                    commercial=not no_stop,
                    for_response=for_response,
                )
            )
            records.append(
                {
                    "id": sms_id,
                    "service": service,
                    "login": login,
                    "receiver": receiver,
                    "message": message,
                    "sender": sender,
                    "senderForResponse": for_response,
                    "noStopClause": no_stop,
                    "priority": params.get("priority", DEFAULT_PRIORITY),
                    "tag": params.get("tag"),
                    "validityPeriod": params.get("validityPeriod", DEFAULT_VALIDITY_MIN),
                    "differedPeriod": differed,
                    "charset": params.get("charset"),
                    "class": params.get("class"),
                    "coding": params.get("coding"),
                    "credits": price,
                    "parts": cost.parts,
                    "created_at": now,
                    "call_id": call_id,
                    "cancelled": False,
                }
            )
        with self.lock:
            for sms in created:
                account.sms[sms.id] = sms
            self.sent.extend(records)
            if not bulk:
                self.counters["jobs_accepted"] += 1
            self.counters["sms_sent"] += len(valid)
            self.credits_debited += total
        if self.listener is not None:
            for sms in created:
                self.listener(sms)
        ids = [sms.id for sms in created]
        report: dict[str, Any] = {
            "ids": ids,
            "invalidReceivers": invalid,
            "totalCreditsRemoved": total,
            "validReceivers": [receiver for receiver, _ in valid],
        }
        if params.get("tag") is not None:
            report["tag"] = params["tag"]
        return report

    def _visible(self, service: str, login: str | None) -> list[Sms]:
        account = self._account(service)
        if login is not None:
            self._user(account, login)
        return [s for s in account.sms.values() if not s.cancelled and (login is None or s.login == login)]

    def pending_jobs(self, service: str, login: str | None) -> list[int]:
        with self.lock:
            now = self.clock()
            return [s.id for s in self._visible(service, login) if s.due_at > now]

    def _pending(self, service: str, login: str | None, sms_id: int) -> Sms:
        now = self.clock()
        for sms in self._visible(service, login):
            if sms.id == sms_id and sms.due_at > now:
                return sms
        raise not_found("id", sms_id)

    def job_view(self, service: str, login: str | None, sms_id: int) -> dict[str, Any]:
        with self.lock:
            return self._pending(service, login, sms_id).job_view()

    def cancel_job(self, service: str, login: str | None, sms_id: int) -> None:
        """A differed job deleted before it is due is not sent; its credits are given back."""
        with self.lock:
            sms = self._pending(service, login, sms_id)
            sms.cancelled = True
            account = self._account(service)
            user = account.users.get(sms.login) if sms.login else None
            if sms.paid_by_quota and user is not None and user.quota_status == "active":
                user.quota_left += sms.credits
            else:
                account.credits_left += sms.credits
            for record in self.sent:
                if record["id"] == sms_id:
                    record["cancelled"] = True
            self.counters["sms_cancelled"] += 1
            self.credits_refunded += sms.credits

    def outgoing_ids(self, service: str, login: str | None, filters: Outgoing) -> list[int]:
        with self.lock:
            now = self.clock()
            receiver = filters.receiver
            if receiver is not None and (normalized := phones.normalize(receiver)):
                receiver = normalized[0]
            ids = []
            for sms in self._visible(service, login):
                if sms.due_at > now:
                    continue
                if (
                    (receiver is not None and sms.receiver != receiver)
                    or (filters.tag is not None and sms.tag != filters.tag)
                    or (filters.sender is not None and sms.sender != filters.sender)
                    or filters.batch_id is not None
                    or filters.message_id is not None
                    or (filters.differed_delivery is not None and sms.differed_min != filters.differed_delivery)
                    or not _in_range(sms.created_at, filters.created_from, filters.created_to)
                ):
                    continue
                if filters.delivery_receipt is not None or filters.ptt is not None:
                    status = delivery.status_at(sms.plan, now)
                    if filters.delivery_receipt is not None and status.delivery_receipt != filters.delivery_receipt:
                        continue
                    if filters.ptt is not None and status.ptt != filters.ptt:
                        continue
                ids.append(sms.id)
            return ids

    def _outgoing(self, service: str, login: str | None, sms_id: int) -> Sms:
        now = self.clock()
        for sms in self._visible(service, login):
            if sms.id == sms_id and sms.due_at <= now:
                return sms
        raise not_found("id", sms_id)

    def outgoing_view(self, service: str, login: str | None, sms_id: int) -> dict[str, Any]:
        with self.lock:
            return self._outgoing(service, login, sms_id).outgoing_view(self.clock())

    def delete_outgoing(self, service: str, login: str | None, sms_id: int) -> None:
        """Removes the SMS from the history (it was sent all the same)."""
        with self.lock:
            sms = self._outgoing(service, login, sms_id)
            del self._account(service).sms[sms.id]


def _in_range(timestamp: float, start: datetime | None, end: datetime | None) -> bool:
    """OVH stores whole seconds, so the comparison is made on the second."""
    second = math.floor(timestamp)
    return (start is None or second >= start.timestamp()) and (end is None or second <= end.timestamp())


def _callback_url(name: str, url: str) -> str:
    """A callback URL as OVH takes it: empty (none), or an http(s) URL."""
    if url and not (url.startswith(("http://", "https://")) and len(url) <= 2048):
        raise bad_request(f"[{name}] Must be an http:// or https:// URL")
    return url
