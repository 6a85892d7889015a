"""Sending: receivers, parts and credits, senders, options, quotas; jobs and outgoing SMS.

Every expected figure here is computed by hand in the comment beside it, not taken from the code.
"""

from __future__ import annotations

import ovh.exceptions as oe
import pytest

from ovh_sandbox import STOP_MENTION

pytestmark = pytest.mark.timeout(30)

FR1, FR2, FR3 = "+33612345678", "+33612345679", "+33612345670"
BE, DE = "+32470123456", "+4915123456789"


def test_valid_and_invalid_receivers_are_reported_not_refused(sb, client, send) -> None:
    report = send(client, sb.service_name, [FR1, "0033612345679", "12345", "+3361234567", "+33 6 12"])
    # "0033..." is international form: valid, reported in E.164; the others are not valid numbers
    assert report["validReceivers"] == [FR1, FR2]
    assert report["invalidReceivers"] == ["12345", "+3361234567", "+33 6 12"]
    assert len(report["ids"]) == 2 and len(set(report["ids"])) == 2
    assert report["totalCreditsRemoved"] == 2.0
    assert [s["receiver"] for s in sb.control.sent()] == [FR1, FR2]
    assert [s["id"] for s in sb.control.sent()] == report["ids"]


def test_numbers_the_control_api_marks_invalid_are_reported_invalid(sb, client, send) -> None:
    sb.control.set_invalid_receivers([FR2])
    report = send(client, sb.service_name, [FR1, FR2])
    assert report["validReceivers"] == [FR1]
    assert report["invalidReceivers"] == [FR2]


def test_only_invalid_receivers_is_an_empty_report(sb, client, send) -> None:
    report = send(client, sb.service_name, ["0612345678"])
    assert report == {"ids": [], "invalidReceivers": ["0612345678"], "totalCreditsRemoved": 0.0, "validReceivers": []}


@pytest.mark.parametrize(
    ("message", "no_stop", "credits_per_fr_receiver"),
    [
        ("a" * 160, True, 1),  # 160 GSM characters: one SMS
        ("a" * 161, True, 2),  # 161 > 160: concatenated, ceil(161 / 153) = 2
        ("a" * 146, False, 1),  # 146 + 14 (STOP mention) = 160: one SMS
        ("a" * 147, False, 2),  # 147 + 14 = 161: two parts
        ("€" * 80, True, 1),  # extension table: 80 x 2 = 160
        ("€" * 81, True, 2),  # 162 septets: two parts
        ("ê" * 70, True, 1),  # ê is not GSM: UCS-2, 70 in one SMS
        ("ê" * 71, True, 2),  # 71 > 70: ceil(71 / 67) = 2
        ("😀" * 35, True, 1),  # two UTF-16 units each: 70
        ("😀" * 36, True, 2),  # 72 units: two parts
        ("é" * 160, True, 1),  # é is in the GSM basic table
        ("a" * 918, True, 6),  # 6 x 153 = 918: the longest message
    ],
)
def test_credits_follow_parts(sb, client, send, message, no_stop, credits_per_fr_receiver) -> None:
    report = send(client, sb.service_name, [FR1, FR2], message, noStopClause=no_stop)
    assert report["totalCreditsRemoved"] == 2 * credits_per_fr_receiver
    assert [s["parts"] for s in sb.control.sent()] == [credits_per_fr_receiver] * 2
    account = client.get(f"/sms/{sb.service_name}")
    assert account["creditsLeft"] == 1_000_000 - 2 * credits_per_fr_receiver


def test_more_than_six_parts_is_refused(sb, client, send) -> None:
    with pytest.raises(oe.BadParametersError, match="6"):
        send(client, sb.service_name, [FR1], "a" * 919)  # ceil(919 / 153) = 7 parts
    assert sb.control.sent() == []


def test_destination_rates_multiply_parts(sb, client, send) -> None:
    # 200 GSM characters: 2 parts. FR 1, BE 1.5, DE 2 credits per part:
    # 2 x FR (2 x 1) + BE (2 x 1.5) + DE (2 x 2) = 4 + 3 + 4 = 11
    report = send(client, sb.service_name, [FR1, FR2, BE, DE], "b" * 200)
    assert report["totalCreditsRemoved"] == 11.0
    assert sorted(s["credits"] for s in sb.control.sent()) == [2.0, 2.0, 3.0, 4.0]
    assert client.get(f"/sms/{sb.service_name}")["creditsLeft"] == 1_000_000 - 11
    assert sb.control.counters()["credits_debited"] == 11.0


def test_a_send_the_account_cannot_pay_is_refused_whole(sb, client, send) -> None:
    sb.control.set_credits(sb.service_name, 3)
    with pytest.raises(oe.APIError) as caught:  # 2 receivers x 2 parts = 4 > 3
        send(client, sb.service_name, [FR1, FR2], "c" * 200)
    assert caught.value.response.status_code == 403
    assert "credits" in str(caught.value)
    assert client.get(f"/sms/{sb.service_name}")["creditsLeft"] == 3.0
    assert sb.control.sent() == []
    assert send(client, sb.service_name, [FR1, FR2, FR3])["totalCreditsRemoved"] == 3.0  # exactly enough
    assert client.get(f"/sms/{sb.service_name}")["creditsLeft"] == 0.0


def test_sms_records_keep_the_message_and_options_as_sent(sb, client, send) -> None:
    send(
        client,
        sb.service_name,
        [FR1],
        "Promo!",
        noStopClause=False,
        priority="low",
        tag="spring",
        validityPeriod=60,
        sender="SandboxInfo",
    )
    [sms] = sb.control.sent()
    assert sms["message"] == "Promo!"  # before the STOP mention
    assert (sms["sender"], sms["priority"], sms["tag"], sms["validityPeriod"]) == ("SandboxInfo", "low", "spring", 60)
    assert sms["noStopClause"] is False and sms["login"] is None and sms["call_id"] == 1
    outgoing = client.get(f"/sms/{sb.service_name}/outgoing/{sms['id']}")
    assert outgoing["message"] == "Promo!" + STOP_MENTION
    assert outgoing["messageLength"] == 6 + 14
    assert outgoing["tag"] == "spring"


def test_senders_must_exist_and_be_enabled(sb, client, send) -> None:
    with pytest.raises(oe.BadParametersError, match="does not exist"):
        send(client, sb.service_name, [FR1], sender="NOBODY")
    with pytest.raises(oe.BadParametersError, match="not enabled"):
        send(client, sb.service_name, [FR1], sender="PENDINGSNDR")
    with pytest.raises(oe.BadParametersError, match="sender"):
        client.post(f"/sms/{sb.service_name}/jobs", message="x", receivers=[FR1])
    report = client.post(f"/sms/{sb.service_name}/jobs", message="x", receivers=[FR1], senderForResponse=True)
    assert report["validReceivers"] == [FR1]
    sb.control.set_sender(sb.service_name, "PENDINGSNDR", "enable")
    assert send(client, sb.service_name, [FR1], sender="PENDINGSNDR")["validReceivers"] == [FR1]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", "urgent"),  # not in sms.PriorityEnum
        ("class", "popup"),  # not in sms.ClassEnum
        ("coding", "16bit"),  # not in sms.CodingEnum
        ("charset", "latin-1"),  # not in sms.CharsetEnum
        ("bogusField", 1),  # not a parameter of the call
        ("differedPeriod", "soon"),  # long expected
        ("noStopClause", "yes"),  # boolean expected
        ("receivers", FR1),  # string[] expected
    ],
)
def test_unknown_fields_wrong_enums_and_types_are_400(sb, client, field, value) -> None:
    body = {"message": "Hello", "receivers": [FR1], "sender": "SANDBOX", field: value}
    with pytest.raises(oe.BadParametersError) as caught:
        client.post(f"/sms/{sb.service_name}/jobs", **body)
    assert field in str(caught.value)
    assert sb.control.sent() == []


def test_message_is_mandatory(sb, client) -> None:
    with pytest.raises(oe.BadParametersError, match="message"):
        client.post(f"/sms/{sb.service_name}/jobs", receivers=[FR1], sender="SANDBOX")


def test_differed_jobs_wait_in_jobs_and_can_be_deleted(make_sandbox, clients, send, clock) -> None:
    sandbox = make_sandbox(clock=clock)
    client = clients(sandbox)
    sn = sandbox.service_name
    later = send(client, sn, [FR1], differedPeriod=10)["ids"][0]
    cancelled = send(client, sn, [FR2], differedPeriod=10)["ids"][0]
    now = send(client, sn, [FR3])["ids"][0]
    assert client.get(f"/sms/{sn}/jobs") == [later, cancelled]
    job = client.get(f"/sms/{sn}/jobs/{later}")
    assert (job["receiver"], job["differedDelivery"], job["deliveryReceipt"]) == (FR1, 10, 0)
    assert client.get(f"/sms/{sn}/outgoing") == [now]
    # Deleting a pending job gives its credit back
    assert client.delete(f"/sms/{sn}/jobs/{cancelled}") is None
    assert client.get(f"/sms/{sn}/jobs") == [later]
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 1_000_000 - 2
    assert [s["cancelled"] for s in sandbox.control.sent(receiver=FR2)] == [True]
    # Ten minutes later the job is due: it has left jobs for outgoing (a new client reads the new time)
    clock.advance(601)
    client = clients(sandbox)
    assert client.get(f"/sms/{sn}/jobs") == []
    assert client.get(f"/sms/{sn}/outgoing") == [later, now]
    with pytest.raises(oe.ResourceNotFoundError):
        client.delete(f"/sms/{sn}/jobs/{later}")


def test_outgoing_filters(make_sandbox, clients, send, clock) -> None:
    sandbox = make_sandbox(clock=clock, delivery_delay_s=(1.0, 2.0), failure_rate=0.0)
    client = clients(sandbox)
    sn = sandbox.service_name
    sandbox.control.set_failing_receivers([FR3], ptt=23)
    first = send(client, sn, [FR1, FR2], tag="a")["ids"]
    clock.advance(10)
    second = send(client, sn, [FR1, FR3], tag="b", sender="SandboxInfo")["ids"]
    since = client.get(f"/sms/{sn}/outgoing/{second[0]}")["creationDatetime"]
    clock.advance(10)  # every SMS has its final receipt now
    client = clients(sandbox)
    url = f"/sms/{sn}/outgoing"
    assert client.get(url, receiver=FR1) == [first[0], second[0]]
    assert client.get(url, receiver="0033612345678") == [first[0], second[0]]
    assert client.get(url, tag="a") == first
    assert client.get(url, sender="SandboxInfo") == second
    assert client.get(url, **{"creationDatetime.from": since}) == second
    assert client.get(url, **{"creationDatetime.to": since}) == first + second
    assert client.get(url, deliveryReceipt=2) == [second[1]]
    assert client.get(url, ptt=23) == [second[1]]
    assert client.get(url, deliveryReceipt=1, tag="b") == [second[0]]
    assert client.get(url, batchID="3fa85f64-5717-4562-b3fc-2c963f66afa6") == []
    with pytest.raises(oe.BadParametersError):
        client.get(url, deliveryReceipt="delivered")
    with pytest.raises(oe.BadParametersError):
        client.get(url, **{"creationDatetime.from": "yesterday"})
    with pytest.raises(oe.BadParametersError):
        client.get(url, colour="blue")


def test_delivery_receipts_evolve_with_time(make_sandbox, clients, send, clock) -> None:
    sandbox = make_sandbox(clock=clock, delivery_delay_s=(1.0, 2.0), failure_rate=0.0)
    client = clients(sandbox)
    sn = sandbox.service_name
    sandbox.control.set_failing_receivers({FR2: 24})
    ok, ko = send(client, sn, [FR1, FR2])["ids"]
    pending = client.get(f"/sms/{sn}/outgoing/{ok}")
    assert (pending["deliveryReceipt"], pending["ptt"], pending["deliveredAt"]) == (0, 0, None)
    clock.advance(4)  # handed over within 1 s, final receipt 1 to 2 s later
    client = clients(sandbox)
    delivered = client.get(f"/sms/{sn}/outgoing/{ok}")
    assert (delivered["deliveryReceipt"], delivered["ptt"]) == (1, 4)
    assert delivered["sentAt"] and delivered["deliveredAt"]
    failed = client.get(f"/sms/{sn}/outgoing/{ko}")
    assert (failed["deliveryReceipt"], failed["ptt"], failed["deliveredAt"]) == (2, 24, None)
    assert client.get("/sms/ptts", ptt=24)["duration"] == "temporary"


def test_delivery_outcomes_are_deterministic_for_a_seed(make_sandbox, clients, send, clock) -> None:
    receivers = [f"+336123456{i:02d}" for i in range(20)]
    sent = []
    for seed in (7, 7, 8):
        sandbox = make_sandbox(seed=seed, clock=clock, failure_rate=0.5)
        sent.append((sandbox, send(clients(sandbox), sandbox.service_name, receivers)["ids"]))
    clock.advance(30)

    def receipts(sandbox, ids) -> list[int]:
        client = clients(sandbox)
        return [client.get(f"/sms/{sandbox.service_name}/outgoing/{i}")["deliveryReceipt"] for i in ids]

    first, again, other = (receipts(sandbox, ids) for sandbox, ids in sent)
    assert first == again
    assert set(first) == {1, 2}  # 20 draws at 50 %: both outcomes occur for these seeds
    assert first != other


def test_outgoing_can_be_deleted_from_history(sb, client, send) -> None:
    [sms_id] = send(client, sb.service_name, [FR1])["ids"]
    assert client.delete(f"/sms/{sb.service_name}/outgoing/{sms_id}") is None
    assert client.get(f"/sms/{sb.service_name}/outgoing") == []
