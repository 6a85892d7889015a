"""The bulk route: a jobs call whose receivers are a CSV document, and the receivers slots.

``POST /sms/{sn}[/users/{login}]/jobs`` with ``receiversDocumentUrl`` (the document is fetched
over HTTP) or ``receiversSlotId`` (a document pre-loaded with ``POST .../receivers``, by
``csvUrl``) instead of ``receivers``. As OVH's guides describe it: the answer carries no SMS
ids ("the method will not give you the IDs of SMS messages in this mode. The sending will be
carried out asynchronously"), and each ``#column#`` of the message is replaced by the row's
value of that column. The SMS are then created by a thread of their own, with the call's tag,
as ordinary SMS (credits, receipts, delivery callbacks, pending jobs when differed).

The CSV, by OVH's rules as its guides and Control Panel state them (``/work/notes`` has the
sources): UTF-8; a header row; ``;`` between fields; a ``number`` column of international
numbers; the other columns free. A document OVH would refuse is refused whole, with the line at
fault (the Control Panel reads OVH's message "... on line N"): no ``number`` column, a number
not in international form, a value outside the GSM 03.38 alphabet, a row with more fields than
the header. Where OVH documents nothing (what ``validReceivers`` and ``totalCreditsRemoved``
hold in this mode) the answer has them empty and 0.

Slots: ``slotId`` is the caller's, 1 to 9, as in OVH's Control Panel; ``GET .../csv`` returns
the document's text.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import urllib.error
import urllib.request
import weakref
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ovh_sandbox import billing, phones
from ovh_sandbox.ovh_errors import OvhError, bad_request, not_found
from ovh_sandbox.state import SandboxState, iso

#: Largest document fetched (bytes): far above any row count OVH's FAQ deals with.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
#: Seconds allowed to fetch a document.
FETCH_TIMEOUT_S = 60.0
#: Slot numbers OVH accepts (its Control Panel: "must be in the range 1…9").
SLOT_IDS = range(1, 10)
#: Rows created per step of the creating thread (the state lock is taken once per step).
CREATE_STEP = 200

_PLACEHOLDER = re.compile(r"#([^#\s]+)#")


@dataclass
class Document:
    """A parsed receivers document: its columns and rows (each a dict by column name)."""

    text: str
    columns: list[str]
    rows: list[dict[str, str]]


@dataclass
class Slot:
    slot_id: int
    description: str
    auto_update: bool
    csv_url: str | None
    document: Document
    created_at: float

    def view(self) -> dict[str, Any]:
        return {
            "autoUpdate": self.auto_update,
            "canAutoUpdate": self.csv_url is not None,
            "datetime": iso(self.created_at),
            "description": self.description,
            "records": len(self.document.rows),
            "slotId": self.slot_id,
        }


class BulkDesk:
    """The bulk side of one sandbox: its slots, and the threads creating SMS from documents."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.lock = threading.Lock()
        self.slots: dict[tuple[str, str | None], dict[int, Slot]] = defaultdict(dict)
        self.threads: list[threading.Thread] = []
        self.created = 0  # SMS created from documents
        self.last_created_at: float | None = None  # the sandbox clock when the last one was

    # -- jobs --------------------------------------------------------------------------------------

    def submit(self, service: str, login: str | None, params: dict[str, Any], call_id: int | None) -> dict[str, Any]:
        sources = [name for name in ("receivers", "receiversDocumentUrl", "receiversSlotId") if params.get(name)]
        if len(sources) > 1:
            raise bad_request(
                f"[receivers] Give one of receivers, receiversDocumentUrl, receiversSlotId, not {sources}"
            )
        message = params["message"]
        if not message:
            raise bad_request("[message] The message is empty")
        if params.get("receiversDocumentUrl"):
            document = fetch(params["receiversDocumentUrl"], "receiversDocumentUrl")
        else:
            try:
                slot_id = int(params["receiversSlotId"])
            except ValueError:
                raise bad_request("[receiversSlotId] Not a slot id") from None
            with self.lock:
                slot = self.slots[(service, login)].get(slot_id)
            if slot is None:
                raise not_found("receiversSlotId", slot_id)
            document = fetch(slot.csv_url, "csvUrl") if slot.auto_update and slot.csv_url else slot.document
        # What OVH checks at the call, before it answers: the account, the sender, the text's length.
        self.state.check_send(service, login, params)
        base = {k: v for k, v in params.items() if k not in ("receiversDocumentUrl", "receiversSlotId")}
        worker = threading.Thread(
            target=self._create, args=(service, login, base, document, call_id), name="sandbox-bulk", daemon=True
        )
        with self.lock:
            self.threads = [t for t in self.threads if t.is_alive()] + [worker]
        with self.state.lock:
            self.state.counters["bulk_jobs"] += 1
        worker.start()
        report: dict[str, Any] = {"ids": [], "invalidReceivers": [], "totalCreditsRemoved": 0, "validReceivers": []}
        if params.get("tag") is not None:
            report["tag"] = params["tag"]
        return report

    def _create(
        self, service: str, login: str | None, base: dict[str, Any], document: Document, call_id: int | None
    ) -> None:
        """Create one SMS per row, the message merged with the row (rows sharing a text share a step)."""
        template = base["message"]
        for start in range(0, len(document.rows), CREATE_STEP):
            by_text: dict[str, list[str]] = defaultdict(list)
            for row in document.rows[start : start + CREATE_STEP]:
                by_text[merge(template, row)].append(row["number"])
            for text, numbers in by_text.items():
                try:
                    self.state.send(service, login, {**base, "message": text, "receivers": numbers}, call_id, bulk=True)
                except OvhError:  # credits or quota ran out, a merged text too long: those rows are not sent
                    with self.state.lock:
                        self.state.counters["bulk_rows_refused"] += len(numbers)
                    continue
                with self.lock:
                    self.created += len(numbers)
                    self.last_created_at = self.state.clock()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the creating threads; ``True`` when none is left running."""
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout_s)
        return not any(thread.is_alive() for thread in threads)

    # -- slots -------------------------------------------------------------------------------------

    def _owner(self, service: str, login: str | None) -> dict[int, Slot]:
        account = self.state.accounts.get(service)
        if account is None:
            raise not_found("serviceName", service)
        if login is not None and login not in account.users:
            raise not_found("login", login)
        return self.slots[(service, login)]

    def slot_ids(self, service: str, login: str | None) -> list[int]:
        with self.lock:
            return sorted(self._owner(service, login))

    def create_slot(self, service: str, login: str | None, params: dict[str, Any]) -> dict[str, Any]:
        slot_id = params["slotId"]
        if slot_id not in SLOT_IDS:
            raise bad_request(f"[slotId] {slot_id} is not a slot: 1 to 9")
        if params.get("documentId"):
            raise OvhError(501, "The sandbox loads slots from csvUrl only, not from a /me/document")
        if not params.get("csvUrl"):
            raise bad_request("[csvUrl] Give csvUrl or documentId")
        url = params["csvUrl"]
        if not re.match(r"^https?://", url):
            raise bad_request("[csvUrl] Must be an http:// or https:// URL")
        document = fetch(url, "csvUrl")
        with self.lock:
            owned = self._owner(service, login)
            if slot_id in owned:
                raise OvhError(409, f"The slot {slot_id} is already used")
            slot = Slot(slot_id, params["description"], params["autoUpdate"], url, document, self.state.clock())
            owned[slot_id] = slot
            return slot.view()

    def _slot(self, service: str, login: str | None, slot_id: int) -> Slot:
        slot = self._owner(service, login).get(slot_id)
        if slot is None:
            raise not_found("slotId", slot_id)
        return slot

    def slot_view(self, service: str, login: str | None, slot_id: int) -> dict[str, Any]:
        with self.lock:
            return self._slot(service, login, slot_id).view()

    def slot_csv(self, service: str, login: str | None, slot_id: int) -> str:
        with self.lock:
            return self._slot(service, login, slot_id).document.text

    def delete_slot(self, service: str, login: str | None, slot_id: int) -> None:
        with self.lock:
            self._slot(service, login, slot_id)
            del self.slots[(service, login)][slot_id]


_DESKS: weakref.WeakKeyDictionary[SandboxState, BulkDesk] = weakref.WeakKeyDictionary()
_DESKS_LOCK = threading.Lock()


def desk(state: SandboxState) -> BulkDesk:
    """The bulk desk of a sandbox's state (made on first use)."""
    with _DESKS_LOCK:
        found = _DESKS.get(state)
        if found is None:
            found = _DESKS[state] = BulkDesk(state)
        return found


def merge(template: str, row: dict[str, str]) -> str:
    """``#column#`` replaced by the row's value; a placeholder naming no column stays as it is."""
    return _PLACEHOLDER.sub(lambda m: row.get(m.group(1), m.group(0)), template)


def fetch(url: str | None, field: str) -> Document:
    """Download and parse a document; 400 naming ``field`` when it cannot be had or read."""
    if not url or not re.match(r"^https?://", url):
        raise bad_request(f"[{field}] Must be an http:// or https:// URL")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310 (http(s) checked)
            raw = answer.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise bad_request(f"[{field}] The document could not be downloaded: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise bad_request(f"[{field}] The document could not be downloaded: {exc}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise bad_request(f"[{field}] The document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(f"[{field}] The document is not UTF-8 text") from None
    return parse(text, field)


def parse(text: str, field: str = "csv") -> Document:
    """A document by OVH's rules (see the module's docstring), refused whole at its first fault."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise bad_request(f"[{field}] The document is empty") from None
    if "number" not in header:
        raise bad_request(f'[{field}] Please specify at least one "number" column in your csv file')
    rows = []
    for fields in reader:
        line = reader.line_num
        if not fields or fields == [""]:
            continue
        if len(fields) > len(header):
            raise bad_request(f"[{field}] More fields than the header has columns on line {line}")
        row = dict(zip(header, (value.strip() for value in fields), strict=False))
        normalized = phones.normalize(row.get("number", ""))
        if normalized is None:
            raise bad_request(f"[{field}] Invalid receiver on line {line}")
        row["number"] = normalized[0]
        for name, value in row.items():
            if any(ch not in billing.GSM_BASIC and ch not in billing.GSM_EXTENSION for ch in value):
                raise bad_request(f"[{field}] Column {name!r} is not in the GSM 03.38 alphabet on line {line}")
        rows.append(row)
    return Document(text, header, rows)
