"""``sms-worker credits [price|order|auto-topup|transfer]``: an SMS account's credits.

- ``credits``: credits left, held by users' quotas, the automatic top-up (``GET /sms/{sn}``);
- ``price --quantity N``: OVH's quote (``GET /order/sms/{sn}/credits``: creates nothing);
- ``order --quantity N``: the quote, a confirmation, then a purchase order
  (``POST /order/sms/{sn}/credits``) and its link to pay it: credits arrive once it is paid;
- ``auto-topup --below N --amount M``: OVH orders and charges M credits each time the account
  falls below N (``PUT /sms/{sn}``; M one of OVH's amounts), after a confirmation; ``--off``;
- ``transfer --to SN --amount N``: moves credits to another SMS account of the same OVH account
  (``POST /sms/{sn}/transferCredits``), after a confirmation.

Nothing that spends or moves credits happens without a confirmation: asked on the terminal, or
``--yes`` for scripts; without either the command says so and does nothing. The purchase order's
link carries OVH's order password: it is printed once, never logged.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from contracts.models import SERVICE_NAME_PATTERN
from worker.cli.common import (
    check_ovh_credentials,
    confirmed,
    credits_cell,
    ensure_confirmable,
    load_settings,
    ovh_client,
    print_table,
    service_of,
)
from worker.errors import UsageError

#: Credits OVH sells in one order (its Control Panel's bounds; the API documents none).
MIN_ORDER, MAX_ORDER = 100, 1_000_000
#: The amounts OVH tops an account up by (``sms.PackQuantityAutomaticRecreditEnum``).
AUTO_TOPUP_AMOUNTS = (100, 200, 250, 500, 1000, 5000, 10000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="OVH SMS account (default: SMS_WORKER_SERVICE_NAME)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(dest="credits_command", metavar="{price,order,auto-topup,transfer}")
    price = commands.add_parser("price", help="what a quantity of credits costs (orders nothing)")
    price.add_argument("--quantity", type=int, required=True, help=f"credits, {MIN_ORDER:,} to {MAX_ORDER:,}")
    _json(price)
    order = commands.add_parser("order", help="order credits: a purchase order to pay, after a confirmation")
    order.add_argument("--quantity", type=int, required=True, help=f"credits, {MIN_ORDER:,} to {MAX_ORDER:,}")
    order.add_argument("--yes", action="store_true", help="order without asking (scripts)")
    _json(order)
    topup = commands.add_parser("auto-topup", help="let OVH order credits when the account runs low, or --off")
    topup.add_argument("--below", type=float, metavar="CREDITS", help="top up when fewer credits than this are left")
    topup.add_argument("--amount", type=int, metavar="CREDITS", help=f"credits each time: one of {_amounts()}")
    topup.add_argument("--off", action="store_true", help="no automatic top-up")
    topup.add_argument("--yes", action="store_true", help="set it without asking (scripts)")
    _json(topup)
    transfer = commands.add_parser("transfer", help="move credits to another SMS account, after a confirmation")
    transfer.add_argument("--to", required=True, metavar="SERVICE", help="the SMS account to credit (sms-xx11111-1)")
    transfer.add_argument("--amount", type=float, required=True, metavar="CREDITS", help="credits to move")
    transfer.add_argument("--yes", action="store_true", help="transfer without asking (scripts)")
    _json(transfer)


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table")


def _amounts() -> str:
    return ", ".join(str(n) for n in AUTO_TOPUP_AMOUNTS)


def _quantity(quantity: int) -> int:
    if not MIN_ORDER <= quantity <= MAX_ORDER:
        raise UsageError(f"--quantity {quantity}: OVH sells {MIN_ORDER:,} to {MAX_ORDER:,} credits in one order")
    return quantity


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    service = service_of(args.service, settings)
    command = args.credits_command
    # mistakes first: nothing is asked of OVH for a command that cannot be carried out
    if command in ("price", "order"):
        _quantity(args.quantity)
    elif command == "auto-topup":
        _check_topup(args)
    elif command == "transfer":
        _check_transfer(args, service)
    check_ovh_credentials(settings)
    client = ovh_client(settings)
    if command is None:
        return _show(client, service, args.json)
    if command == "price":
        quote = client.get(f"/order/sms/{service}/credits", quantity=args.quantity)
        return _print_order(service, args.quantity, quote, args.json, ordered=False)
    if command == "order":
        return _order(client, service, args)
    if command == "auto-topup":
        return _auto_topup(client, service, args)
    return _transfer(client, service, args)


def _show(client: Any, service: str, as_json: bool) -> int:
    account = client.get(f"/sms/{service}")
    data = {
        "service": service,
        "credits_left": account.get("creditsLeft"),
        "credits_held_by_quotas": account.get("creditsHoldByQuota"),
        "auto_topup": _topup_view(account),
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    print_table(
        [
            ("ACCOUNT", service),
            ("credits left", credits_cell(data["credits_left"])),
            ("held by quotas", credits_cell(data["credits_held_by_quotas"])),
            ("automatic top-up", _topup_text(data["auto_topup"])),
        ]
    )
    return 0


def _topup_view(account: dict[str, Any]) -> dict[str, Any] | None:
    amount = account.get("automaticRecreditAmount")
    if amount in (None, ""):
        return None
    return {"amount": int(amount), "below": account.get("creditThresholdForAutomaticRecredit")}


def _topup_text(topup: dict[str, Any] | None) -> str:
    if topup is None:
        return "off"
    return f"{topup['amount']:,} credits when fewer than {credits_cell(topup['below'])} are left"


def _price(price: dict[str, Any] | None) -> str:
    """An ``order.Price`` as OVH writes it (``60.00 €``)."""
    if not price:
        return "-"
    return str(price.get("text") or f"{price.get('value')} {price.get('currencyCode', '')}".strip())


def _print_order(service: str, quantity: int, order: dict[str, Any], as_json: bool, *, ordered: bool) -> int:
    prices = order.get("prices") or {}
    if as_json:
        print(json.dumps({"service": service, "quantity": quantity, "ordered": ordered, "order": order}, indent=2))
        return 0
    rows = [("ACCOUNT", service), ("credits", f"{quantity:,}")]
    if ordered:
        rows.append(("order", str(order.get("orderId"))))
    rows += [
        ("price without tax", _price(prices.get("withoutTax"))),
        ("tax", _price(prices.get("tax"))),
        ("price with tax", _price(prices.get("withTax"))),
    ]
    if prices.get("reduction"):
        rows.append(("reduction", _price(prices.get("reduction"))))
    for contract in order.get("contracts") or []:
        rows.append(("contract", f"{contract.get('name')}: {contract.get('url')}"))
    if ordered:
        rows.append(("pay it at", str(order.get("url") or "-")))
    print_table(rows)
    return 0


def _order(client: Any, service: str, args: argparse.Namespace) -> int:
    refusal = f"{args.quantity:,} credits for {service} not ordered"
    ensure_confirmable(yes=args.yes, refusal=refusal)  # before asking OVH anything
    quote = client.get(f"/order/sms/{service}/credits", quantity=args.quantity)
    prices = quote.get("prices") or {}
    question = (
        f"Order {args.quantity:,} credits for {service}: {_price(prices.get('withoutTax'))} without tax, "
        f"{_price(prices.get('withTax'))} with tax?"
    )
    if not confirmed(question, yes=args.yes, refusal=refusal):
        print(f"sms-worker: {refusal}", file=sys.stderr)
        return 1
    order = client.post(f"/order/sms/{service}/credits", quantity=args.quantity)
    code = _print_order(service, args.quantity, order, args.json, ordered=True)
    print(
        f"ordered {args.quantity:,} credits for {service} (order {order.get('orderId')}): they reach the account "
        "once the purchase order is paid",
        file=sys.stderr,
    )
    return code


def _check_topup(args: argparse.Namespace) -> None:
    if args.off:
        if args.below is not None or args.amount is not None:
            raise UsageError("auto-topup: --off takes neither --below nor --amount")
        return
    if args.below is None or args.amount is None:
        raise UsageError("auto-topup: give --below and --amount, or --off")
    if args.amount not in AUTO_TOPUP_AMOUNTS:
        raise UsageError(f"--amount {args.amount}: OVH tops up by one of {_amounts()} credits")
    if args.below < 0:
        raise UsageError("--below cannot be negative")


def _auto_topup(client: Any, service: str, args: argparse.Namespace) -> int:
    if args.off:
        client.put(f"/sms/{service}", automaticRecreditAmount=None)
    else:
        refusal = f"automatic top-up of {service} not set"
        ensure_confirmable(yes=args.yes, refusal=refusal)  # before asking OVH anything
        quote = client.get(f"/order/sms/{service}/credits", quantity=args.amount)
        price = _price((quote.get("prices") or {}).get("withTax"))
        question = (
            f"Let OVH order and charge {args.amount:,} credits ({price} with tax) each time {service} has fewer "
            f"than {credits_cell(args.below)} credits left?"
        )
        if not confirmed(question, yes=args.yes, refusal=refusal):
            print(f"sms-worker: {refusal}", file=sys.stderr)
            return 1
        client.put(
            f"/sms/{service}", automaticRecreditAmount=args.amount, creditThresholdForAutomaticRecredit=args.below
        )
    return _show(client, service, args.json)


def _check_transfer(args: argparse.Namespace, service: str) -> None:
    if not re.match(SERVICE_NAME_PATTERN, args.to):
        raise UsageError(f"--to {args.to!r} is not an OVH SMS account name")
    if args.to == service:
        raise UsageError(f"--to {args.to}: that is the account the credits come from")
    if not args.amount > 0:
        raise UsageError("--amount: a number of credits above 0")


def _transfer(client: Any, service: str, args: argparse.Namespace) -> int:
    amount = credits_cell(args.amount)
    refusal = f"{amount} credits not transferred from {service} to {args.to}"
    question = f"Move {amount} credits from {service} to {args.to}?"
    if not confirmed(question, yes=args.yes, refusal=refusal):
        print(f"sms-worker: {refusal}", file=sys.stderr)
        return 1
    client.post(f"/sms/{service}/transferCredits", credits=float(args.amount), smsAccountTarget=args.to)
    left = client.get(f"/sms/{service}").get("creditsLeft")
    data = {"from": service, "to": args.to, "credits": args.amount, "credits_left": left}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_table([("TRANSFERRED", f"{amount} credits"), ("from", service), ("to", args.to),
                     (f"{service} has left", credits_cell(left))])  # fmt: skip
    return 0
