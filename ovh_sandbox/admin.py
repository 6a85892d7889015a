"""Account administration on the sandbox: declaring and deleting senders, transferring credits,
pricing and ordering credits; and the control API's side of it (orders listed, an order paid).

Senders and transfers are ``sms.json`` routes. The order routes are not: they are OVH's
``/order/sms/{serviceName}/credits`` of ``order.json`` (the document served at
``https://eu.api.ovh.com/1.0/order.json``), as captured in ``UrielCh/api-ovh-node``
``code/gen/models/ovh-api/order.ts`` (commit 4bb5f14, 2024-06-07; the path near line 22041, the
``order.Order`` model near line 32570): ``GET`` with the query ``quantity`` (long, required)
answers a quote, ``POST`` with the body ``quantity`` (long, required) creates a purchase order;
both answer an ``order.Order`` (``orderId`` and ``url`` null for a quote). OVHcloud's cookbook
("Ordering SMS credits") describes the same: prices with and without tax, the contracts and the
link to the purchase order to pay. Each of these routes says where it comes from
(``Route.source``), and the schema test checks them against that source.

What the sandbox decides where OVH documents nothing (its Control Panel's rules, else ours):

- a sender is 11 characters at most among letters, digits, space and ``_ - . , & +`` (the
  Control Panel's pattern), or a phone number of 3 to 15 digits (``numeric``); a declaration
  without a ``reason`` is refused (``Please provide a reason``, as OVH answers); a new sender
  waits for validation (``waitingValidation``) until the control API moves it;
- credits are sold 100 to 1,000,000 at a time (the Control Panel's bounds), at
  ``billing.CREDIT_PRICE_EUR`` each plus 20% VAT; an order adds its credits to the account only
  once paid (control API ``POST /_sandbox/orders/pay``), as OVH credits a paid purchase order;
- a transfer moves credits at once (OVHcloud's guide: "the transfer is immediate") between two
  accounts of the sandbox, and is refused when the source cannot pay it (403).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from ovh_sandbox import billing
from ovh_sandbox.api import Call, Route
from ovh_sandbox.ovh_errors import OvhError, bad_request, not_found
from ovh_sandbox.state import Account, SandboxState, Sender
from ovh_sandbox.validation import Param

#: Where the order routes come from (``Route.source``).
ORDER_JSON = "order.json"
#: Credits one order may hold (OVH's Control Panel).
MIN_ORDER, MAX_ORDER = 100, 1_000_000
#: VAT added to prices without tax (France).
VAT_RATE = 0.20
#: First purchase order id handed out.
FIRST_ORDER_ID = 90_000_001

_ALPHA = re.compile(r"^[A-Za-z0-9_\s\-.,&+]{1,11}$")
_NUMERIC = re.compile(r"^\+?[0-9]{3,15}$")


def _account(state: SandboxState, service: str) -> Account:
    """The account (the caller holds ``state.lock``); 404 when there is none."""
    account = state.accounts.get(service)
    if account is None:
        raise not_found("serviceName", service)
    return account


# -- senders --------------------------------------------------------------------------------------


def sender_kind(name: str) -> str:
    """``alpha`` or ``numeric`` (``sms.TypeSenderEnum``); 400 when OVH would not take the name."""
    if _NUMERIC.match(name):
        return "numeric"
    if not _ALPHA.match(name) or name.isdigit():
        raise bad_request(
            f"[sender] Invalid sender {name!r}: 11 characters at most (letters, digits, space, _ - . , & +), "
            "or a phone number"
        )
    return "alpha"


def _add_sender(call: Call) -> str:
    name: str = call.params["sender"]
    reason = (call.params.get("reason") or "").strip()
    kind = sender_kind(name)
    if not reason:
        raise bad_request("Please provide a reason")
    state = call.state
    with state.lock:
        account = _account(state, call.service)
        if name in account.senders:
            raise OvhError(409, f"The sender {name} already exists")
        account.senders[name] = Sender(
            name, "waitingValidation", description=call.params.get("description") or "", kind=kind, reason=reason
        )
    return name


def _delete_sender(call: Call) -> None:
    state = call.state
    with state.lock:
        senders = _account(state, call.service).senders
        if call.path["sender"] not in senders:
            raise not_found("sender", call.path["sender"])
        del senders[call.path["sender"]]


# -- credits ----------------------------------------------------------------------------------


def _transfer(call: Call) -> None:
    amount: float = float(call.params["credits"])
    target: str = call.params["smsAccountTarget"]
    if amount <= 0:
        raise bad_request("[credits] The amount of credits to transfer must be positive")
    if target == call.service:
        raise bad_request("[smsAccountTarget] Credits cannot be transferred to the account they come from")
    state = call.state
    with state.lock:
        source = _account(state, call.service)
        destination = state.accounts.get(target)
        if destination is None:
            raise not_found("smsAccountTarget", target)
        if amount > source.credits_left:
            raise OvhError(403, f"Not enough credits to transfer {amount:g}: {source.credits_left:g} left")
        source.credits_left -= amount
        destination.credits_left += amount


def _price(value: float) -> dict[str, Any]:
    """An ``order.Price`` in euros."""
    value = round(value, 2)
    return {"currencyCode": "EUR", "text": f"{value:.2f} €", "value": value}


def order_view(service: str, quantity: int, order_id: int | None, url: str | None) -> dict[str, Any]:
    """An ``order.Order`` for ``quantity`` credits of ``service``."""
    without_tax = quantity * billing.CREDIT_PRICE_EUR
    tax = round(without_tax, 2) * VAT_RATE
    return {
        "contracts": [
            {
                "content": "Sandbox: no contract binds anyone.",
                "name": "SMS credits: special conditions (sandbox)",
                "url": "https://sandbox.invalid/contracts/sms-credits.pdf",
            }
        ],
        "details": [
            {
                "cartItemID": None,
                "description": f"{quantity} SMS credits for {service}",
                "detailType": "QUANTITY",
                "domain": service,
                "originalTotalPrice": _price(without_tax),
                "quantity": quantity,
                "reductionTotalPrice": _price(0.0),
                "reductions": [],
                "totalPrice": _price(without_tax),
                "unitPrice": _price(billing.CREDIT_PRICE_EUR),
            }
        ],
        "orderId": order_id,
        "prices": {
            "originalWithoutTax": None,
            "reduction": None,
            "tax": _price(tax),
            "withTax": _price(round(without_tax, 2) + round(tax, 2)),
            "withoutTax": _price(without_tax),
        },
        "url": url,
    }


def _quantity(call: Call) -> int:
    quantity: int = call.params["quantity"]
    if not MIN_ORDER <= quantity <= MAX_ORDER:
        raise bad_request(f"[quantity] SMS credits are ordered {MIN_ORDER} to {MAX_ORDER} at a time")
    return quantity


def _quote(call: Call) -> dict[str, Any]:
    quantity = _quantity(call)
    with call.state.lock:
        _account(call.state, call.service)
    return order_view(call.service, quantity, None, None)


def _order(call: Call) -> dict[str, Any]:
    quantity = _quantity(call)
    state = call.state
    with state.lock:
        account = _account(state, call.service)
        orders = [order for a in state.accounts.values() for order in a.orders]
        order_id = max((order["orderId"] for order in orders), default=FIRST_ORDER_ID - 1) + 1
        url = f"https://sandbox.invalid/order/{order_id}?orderPassword={secrets.token_hex(8)}"
        account.orders.append(
            {"orderId": order_id, "service": call.service, "quantity": quantity, "url": url,
             "created_at": state.clock(), "paid": False}
        )  # fmt: skip
    return order_view(call.service, quantity, order_id, url)


def _b(name: str, data_type: str, required: bool = False) -> Param:
    return Param(name, data_type, "body", required)


SN = "/sms/{serviceName}"

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        SN + "/senders",
        "string",
        (_b("description", "string"), _b("reason", "string"), _b("sender", "string", True)),
        _add_sender,
    ),
    Route("DELETE", SN + "/senders/{sender}", "void", (), _delete_sender),
    Route(
        "POST",
        SN + "/transferCredits",
        "void",
        (_b("credits", "double", True), _b("smsAccountTarget", "string", True)),
        _transfer,
    ),
    Route(
        "GET",
        "/order/sms/{serviceName}/credits",
        "order.Order",
        (Param("quantity", "long", "query", True),),
        _quote,
        source=ORDER_JSON,
    ),
    Route(
        "POST",
        "/order/sms/{serviceName}/credits",
        "order.Order",
        (_b("quantity", "long", True),),
        _order,
        source=ORDER_JSON,
    ),
)


# -- control API (ovh_sandbox.control) ----------------------------------------------------------


def orders(state: SandboxState) -> list[dict[str, Any]]:
    """Every purchase order, oldest first: ``orderId, service, quantity, url, created_at, paid``."""
    with state.lock:
        found = [dict(order) for account in state.accounts.values() for order in account.orders]
    return sorted(found, key=lambda order: order["orderId"])


def pay(state: SandboxState, order_id: int) -> dict[str, Any]:
    """Pay an order: its credits reach its account (once)."""
    with state.lock:
        for account in state.accounts.values():
            for order in account.orders:
                if order["orderId"] == order_id:
                    if order["paid"]:
                        raise bad_request(f"order {order_id} is paid already")
                    order["paid"] = True
                    account.credits_left += order["quantity"]
                    return dict(order)
    raise not_found("orderId", order_id)


def control_routes(state: SandboxState) -> dict[tuple[str, str], Callable[[dict[str, Any], Any], Any]]:
    """The control API's routes for orders (``ControlApi`` adds them to its own)."""

    def pay_order(body: dict[str, Any], query: Any) -> Any:
        order_id = body.get("orderId")
        if set(body) != {"orderId"} or not isinstance(order_id, int) or isinstance(order_id, bool):
            raise bad_request("the body is {orderId: an order id}")
        return pay(state, order_id)

    return {("GET", "/orders"): lambda body, query: orders(state), ("POST", "/orders/pay"): pay_order}
