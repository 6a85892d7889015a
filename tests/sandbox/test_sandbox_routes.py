"""The account-level and helper routes: account, ptts, estimate, rates, senders, blacklists, incoming."""

from __future__ import annotations

import ovh.exceptions as oe
import pytest

pytestmark = pytest.mark.timeout(30)


def test_account(sb, client) -> None:
    assert client.get("/sms") == ["sms-sandbox-1"] == [sb.service_name]
    account = client.get(f"/sms/{sb.service_name}")
    assert account["name"] == sb.service_name
    assert (account["creditsLeft"], account["creditsHoldByQuota"], account["status"]) == (1_000_000, 0, "enable")


def test_more_accounts_through_the_control_api(sb, client) -> None:
    sb.control.add_account("sms-other-2", credits=5)
    assert client.get("/sms") == ["sms-other-2", "sms-sandbox-1"]
    assert client.get("/sms/sms-other-2")["creditsLeft"] == 5


def test_ptts(client) -> None:
    assert client.get("/sms/ptts", ptt=4)["duration"] == "permanent"
    assert "absent" in client.get("/sms/ptts", ptt=24)["description"]
    with pytest.raises(oe.ResourceNotFoundError):
        client.get("/sms/ptts", ptt=999)
    with pytest.raises(oe.BadParametersError):
        client.get("/sms/ptts")


@pytest.mark.parametrize(
    ("message", "no_stop", "expected"),
    [
        ("Hello", True, (5, "7bits", 160, 1)),
        ("Hello", False, (19, "7bits", 160, 1)),  # 5 + 14 for "\nSTOP au 36111"
        ("{Hi}", True, (6, "7bits", 160, 1)),  # { and } count two each: 2 + 2 + 2
        ("a" * 161, True, (161, "7bits", 153, 2)),
        ("ê", False, (15, "unicode", 70, 1)),  # UCS-2: 1 + 14
        ("ê" * 135, True, (135, "unicode", 67, 3)),  # ceil(135 / 67) = 3
        ("a" * 919, True, (919, "7bits", 153, 7)),  # estimated, though a job that long is refused
    ],
)
def test_estimate(client, message, no_stop, expected) -> None:
    estimate = client.post("/sms/estimate", message=message, noStopClause=no_stop, senderType="alpha")
    assert (
        estimate["characters"],
        estimate["charactersClass"],
        estimate["maxCharactersPerPart"],
        estimate["parts"],
    ) == expected


def test_estimate_checks_its_parameters(client) -> None:
    with pytest.raises(oe.BadParametersError, match="senderType"):
        client.post("/sms/estimate", message="x", noStopClause=True, senderType="robot")
    with pytest.raises(oe.BadParametersError, match="noStopClause"):
        client.post("/sms/estimate", message="x", senderType="alpha")


def test_destination_rates(client) -> None:
    france = client.get("/sms/rates/destinations", country="fr")
    assert (france["countryCode"], france["credit"], france["country"]) == ("fr", 1.0, "France")
    assert france["price"]["currencyCode"] == "EUR"
    assert client.get("/sms/rates/destinations", country="de", billingCountry="fr")["credit"] == 2.0
    assert client.get("/sms/rates/destinations", country="jp")["credit"] == 3.0
    with pytest.raises(oe.BadParametersError):
        client.get("/sms/rates/destinations", country="xx")
    with pytest.raises(oe.BadParametersError):
        client.get("/sms/rates/destinations", country="fr", billingCountry="de")


def test_senders(sb, client) -> None:
    assert client.get(f"/sms/{sb.service_name}/senders") == ["PENDINGSNDR", "SANDBOX", "SandboxInfo"]
    assert client.get(f"/sms/{sb.service_name}/senders/SANDBOX")["status"] == "enable"
    assert client.get(f"/sms/{sb.service_name}/senders/PENDINGSNDR")["status"] == "waitingValidation"
    with pytest.raises(oe.ResourceNotFoundError):
        client.get(f"/sms/{sb.service_name}/senders/NOBODY")


def test_blacklists(sb, client) -> None:
    assert client.get(f"/sms/{sb.service_name}/blacklists") == []
    sb.control.add_blacklist(sb.service_name, "+33612345678")
    assert client.get(f"/sms/{sb.service_name}/blacklists") == ["+33612345678"]
    assert client.get(f"/sms/{sb.service_name}/blacklists/%2B33612345678")["number"] == "+33612345678"
    assert client.get(f"/sms/{sb.service_name}/blacklists", smsOutgoingID=1) == []


def test_incoming(sb, client) -> None:
    assert client.get(f"/sms/{sb.service_name}/incoming") == []
    first = sb.control.add_incoming(sb.service_name, "+33612345678", "STOP", tag="t")
    second = sb.control.add_incoming(sb.service_name, "+33612345679", "Yes")
    assert client.get(f"/sms/{sb.service_name}/incoming") == [first, second]
    assert client.get(f"/sms/{sb.service_name}/incoming", sender="+33612345679") == [second]
    assert client.get(f"/sms/{sb.service_name}/incoming", tag="t") == [first]
    assert client.get(f"/sms/{sb.service_name}/incoming/{first}")["message"] == "STOP"
