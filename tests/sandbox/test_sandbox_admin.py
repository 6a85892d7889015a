"""Senders, credit transfers, credit orders and the automatic top-up, as OVHcloud's guides describe them."""

from __future__ import annotations

import ovh.exceptions as oe
import pytest

from ovh_sandbox.control import SandboxControlError

pytestmark = pytest.mark.timeout(30)


def test_a_declared_sender_waits_for_validation_then_shows_the_moderators_verdict(sb, client) -> None:
    senders = f"/sms/{sb.service_name}/senders"
    # When a sender is declared with a description and a reason for the moderator
    client.post(senders, sender="MyShop", description="the shop", reason="our brand, see our Kbis")
    # Then it waits for OVH's manual validation
    shown = client.get(f"{senders}/MyShop")
    assert (shown["status"], shown["description"], shown["comment"], shown["type"]) == (
        "waitingValidation",
        "the shop",
        None,
        "alpha",
    )
    assert "MyShop" in client.get(senders)
    # And when the moderator refuses it, the reason is OVH's comment
    sb.control.set_sender(sb.service_name, "MyShop", "refused", comment="Kbis missing")
    shown = client.get(f"{senders}/MyShop")
    assert (shown["status"], shown["comment"], shown["description"]) == ("refused", "Kbis missing", "the shop")
    # And a deleted sender is gone
    client.delete(f"{senders}/MyShop")
    with pytest.raises(oe.ResourceNotFoundError):
        client.get(f"{senders}/MyShop")
    with pytest.raises(oe.ResourceNotFoundError):
        client.delete(f"{senders}/MyShop")


def test_sender_declarations_are_checked(sb, client) -> None:
    senders = f"/sms/{sb.service_name}/senders"
    with pytest.raises(oe.BadParametersError, match="Please provide a reason"):
        client.post(senders, sender="MyShop")
    with pytest.raises(oe.BadParametersError, match="11 characters"):
        client.post(senders, sender="MyShopIsTooLong", reason="r")
    with pytest.raises(oe.BadParametersError, match="11 characters"):
        client.post(senders, sender="Caf\u00e9", reason="r")
    client.post(senders, sender="+33612345678", reason="our number")
    assert client.get(f"{senders}/%2B33612345678")["type"] == "numeric"
    with pytest.raises(oe.ResourceConflictError):
        client.post(senders, sender="SANDBOX", reason="r")
    assert "MyShop" not in client.get(senders)


def test_a_transfer_moves_credits_between_accounts_at_once(sb, client) -> None:
    sn = sb.service_name
    sb.control.set_credits(sn, 100)
    sb.control.add_account("sms-other-1", credits=5)
    client.post(f"/sms/{sn}/transferCredits", credits=30.0, smsAccountTarget="sms-other-1")
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 70.0
    assert client.get("/sms/sms-other-1")["creditsLeft"] == 35.0
    # A transfer the account cannot pay, to an unknown or the same account, or of nothing moves nothing
    with pytest.raises(oe.APIError, match="Not enough credits"):
        client.post(f"/sms/{sn}/transferCredits", credits=70.5, smsAccountTarget="sms-other-1")
    with pytest.raises(oe.ResourceNotFoundError):
        client.post(f"/sms/{sn}/transferCredits", credits=1.0, smsAccountTarget="sms-nowhere-1")
    with pytest.raises(oe.BadParametersError):
        client.post(f"/sms/{sn}/transferCredits", credits=1.0, smsAccountTarget=sn)
    with pytest.raises(oe.BadParametersError):
        client.post(f"/sms/{sn}/transferCredits", credits=-1.0, smsAccountTarget="sms-other-1")
    assert (client.get(f"/sms/{sn}")["creditsLeft"], client.get("/sms/sms-other-1")["creditsLeft"]) == (70.0, 35.0)


def test_a_quote_creates_nothing_and_an_order_credits_once_paid(sb, client) -> None:
    sn = sb.service_name
    sb.control.set_credits(sn, 10)
    # A quote: prices, no order
    quote = client.get(f"/order/sms/{sn}/credits", quantity=1000)
    assert (quote["orderId"], quote["url"]) == (None, None)
    prices = quote["prices"]
    assert prices["withoutTax"]["value"] == 60.0 and prices["tax"]["value"] == 12.0
    assert prices["withTax"]["value"] == 72.0 and prices["withTax"]["text"] == "72.00 \u20ac"
    assert quote["details"][0]["quantity"] == 1000 and quote["details"][0]["domain"] == sn
    assert sb.control.orders() == []
    # An order: a purchase order to pay, credits unchanged until then
    order = client.post(f"/order/sms/{sn}/credits", quantity=1000)
    assert order["orderId"] is not None and order["url"].startswith("https://")
    assert order["prices"] == prices
    [listed] = sb.control.orders()
    assert (listed["orderId"], listed["quantity"], listed["paid"]) == (order["orderId"], 1000, False)
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 10.0
    # Paid: the credits reach the account, once
    sb.control.pay_order(order["orderId"])
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 1010.0
    with pytest.raises(SandboxControlError, match="paid already"):
        sb.control.pay_order(order["orderId"])
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 1010.0


def test_order_quantities_are_checked(sb, client) -> None:
    sn = sb.service_name
    for quantity in (99, 1_000_001):
        with pytest.raises(oe.BadParametersError, match="quantity"):
            client.post(f"/order/sms/{sn}/credits", quantity=quantity)
    with pytest.raises(oe.ResourceNotFoundError):
        client.get("/order/sms/sms-nowhere-1/credits", quantity=100)
    assert sb.control.orders() == []


def test_the_automatic_top_up_is_set_read_and_turned_off(sb, client) -> None:
    sn = sb.service_name
    assert client.get(f"/sms/{sn}")["automaticRecreditAmount"] is None
    # As OVH's Control Panel sends it (a number of the long enum), or as the enum's string
    client.put(f"/sms/{sn}", automaticRecreditAmount=1000, creditThresholdForAutomaticRecredit=50.0)
    account = client.get(f"/sms/{sn}")
    assert (account["automaticRecreditAmount"], account["creditThresholdForAutomaticRecredit"]) == (1000, 50.0)
    client.put(f"/sms/{sn}", automaticRecreditAmount="250")
    assert client.get(f"/sms/{sn}")["automaticRecreditAmount"] == 250
    with pytest.raises(oe.BadParametersError, match="PackQuantityAutomaticRecreditEnum"):
        client.put(f"/sms/{sn}", automaticRecreditAmount=300)
    with pytest.raises(oe.BadParametersError, match="creditThreshold"):
        client.put(f"/sms/{sn}", creditThresholdForAutomaticRecredit=-1.0)
    # null turns it off
    client.put(f"/sms/{sn}", automaticRecreditAmount=None)
    assert client.get(f"/sms/{sn}")["automaticRecreditAmount"] is None
