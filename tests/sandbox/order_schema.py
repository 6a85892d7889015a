"""The part of OVH's ``order.json`` the sandbox serves, written down by hand for the schema test.

``sms.json`` has no order routes: buying SMS credits is ``/order/sms/{serviceName}/credits`` of
OVH's order API (``https://eu.api.ovh.com/1.0/order.json``). Transcribed from the copies in
``UrielCh/api-ovh-node`` (``code/gen/models/ovh-api/order.ts``, commit 4bb5f14, 2024-06-07, for
the two operations; the ``order.*`` models as its ``services.ts`` copy has them, read 2026), in
the shape of ``sms.json`` so the same checker reads both. Kept apart from ``ovh_sandbox`` on
purpose: the test compares the sandbox with this, not with itself.
"""

from __future__ import annotations

from typing import Any


def _p(type_name: str, can_be_null: bool = False) -> dict[str, Any]:
    return {"type": type_name, "canBeNull": can_be_null}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/order/sms/{serviceName}/credits"): {
        "description": "Get prices and contracts information",
        "noAuthentication": False,
        "responseType": "order.Order",
        "parameters": [
            {"name": "serviceName", "paramType": "path", "dataType": "string", "required": True},
            {"name": "quantity", "paramType": "query", "dataType": "long", "required": True},
        ],
    },
    ("POST", "/order/sms/{serviceName}/credits"): {
        "description": "Create order",
        "noAuthentication": False,
        "responseType": "order.Order",
        "parameters": [
            {"name": "serviceName", "paramType": "path", "dataType": "string", "required": True},
            {"name": "quantity", "paramType": "body", "dataType": "long", "required": True},
        ],
    },
}

MODELS: dict[str, Any] = {
    "order.Order": {
        "properties": {
            "contracts": _p("order.Contract[]"),
            "details": _p("order.OrderDetail[]"),
            "orderId": _p("long", True),
            "prices": _p("order.OrderPrices"),
            "url": _p("string", True),
        }
    },
    "order.Contract": {"properties": {"content": _p("text"), "name": _p("string"), "url": _p("string")}},
    "order.OrderDetail": {
        "properties": {
            "cartItemID": _p("long", True),
            "description": _p("string"),
            "detailType": _p("order.OrderDetailTypeEnum", True),
            "domain": _p("string"),
            "originalTotalPrice": _p("order.Price"),
            "quantity": _p("long"),
            "reductionTotalPrice": _p("order.Price"),
            "reductions": _p("order.Reduction[]"),
            "totalPrice": _p("order.Price"),
            "unitPrice": _p("order.Price"),
        }
    },
    "order.OrderDetailTypeEnum": {
        "enum": [
            "ACCESSORY",
            "CAUTION",
            "CHOOSED",
            "CONSUMPTION",
            "CREATION",
            "DELIVERY",
            "DURATION",
            "GIFT",
            "INSTALLATION",
            "LICENSE",
            "MUTE",
            "OTHER",
            "OUTPLAN",
            "QUANTITY",
            "REFUND",
            "RENEW",
            "SPECIAL",
            "SWITCH",
            "TRANSFER",
            "VOUCHER",
        ]  # fmt: skip
    },
    "order.OrderPrices": {
        "properties": {
            "originalWithoutTax": _p("order.Price", True),
            "reduction": _p("order.Price", True),
            "tax": _p("order.Price"),
            "withTax": _p("order.Price"),
            "withoutTax": _p("order.Price"),
        }
    },
    "order.Reduction": {
        "properties": {
            "context": _p("order.ReductionContextEnum"),
            "price": _p("order.Price"),
            "type": _p("order.ReductionTypeEnum"),
            "value": _p("order.Price"),
        }
    },
    "order.ReductionContextEnum": {"enum": ["promotion", "voucher"]},
    "order.ReductionTypeEnum": {"enum": ["percentage", "forced_amount", "fixed_amount"]},
}
