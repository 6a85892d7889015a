"""What consumers see from callbacks: one report per (SMS, status), finals never undone, replies
tied to their request, one opt-out per STOP. The inbound service runs as its own process."""

from __future__ import annotations

import pytest
import requests

from contracts import DeliveryReport, IncomingSms, OptOut
from tests.after_send.conftest import track
from tests.helpers import read_events
from tests.waiting import wait_until
from worker.after_send.receipts import classify, parse_date
from worker.store import keys

pytestmark = pytest.mark.timeout(120)

FR = "+33612345678"


@pytest.mark.parametrize(
    ("ptt", "dlr", "status", "final"),
    [
        (4, None, "delivered", True),
        (None, 1, "delivered", True),
        (0, 1, "delivered", True),  # ptt 0 has been seen with "Success"
        (8, 2, "expired", True),
        (6, None, "unknown", True),
        (23, 2, "failed", True),
        (None, 16, "failed", True),
        (24, None, "failed", True),
        (3, 4, "pending", False),
        (1, None, "pending", False),
        (None, 8, "pending", False),
        (None, 0, "pending", False),
    ],
)
def test_status_of_ovh_codes(ptt, dlr, status, final) -> None:
    assert classify(ptt, dlr) == (status, final)


def test_ovh_dates() -> None:
    assert parse_date("2024-06-01T12:00:00+00:00") == parse_date("2024-06-01 12:00:00") == 1717243200.0
    assert parse_date("20240601120000") == 1717243200.0
    assert parse_date("1717243200") == 1717243200.0
    assert parse_date("next tuesday") is None and parse_date(None) is None


def reports(redis_client, queue: str = "results") -> list[DeliveryReport]:
    return [e for e in read_events(redis_client, queue) if isinstance(e, DeliveryReport)]


def test_repeated_and_reordered_callbacks_publish_each_status_once(start_inbound, redis_client) -> None:
    # Given an SMS the worker sent
    service = start_inbound()
    track(redis_client, 3001, FR, request_id="order-1", tag="otp", login="alice")
    url = service.url("delivery")
    pending = {"id": 3001, "ptt": 3, "description": "4", "descriptionDlr": "Pending"}
    delivered = {"id": 3001, "ptt": 4, "description": "1", "descriptionDlr": "Success", "date": "2024-06-01 12:00:00"}
    # When OVH reports it delivered twice, then pending (late), then failed (conflicting), then
    # delivered again, by GET and POST
    for params in (delivered, delivered, pending, {"id": 3001, "ptt": 23, "dlr": 2}):
        assert requests.get(url, params=params, timeout=5).status_code == 200
    assert requests.post(url, data=delivered, timeout=5).status_code == 200
    # Then exactly one report was published, the final one, on the request's queue
    [report] = reports(redis_client)
    assert (report.request_id, report.receiver, report.ovh_id, report.status, report.final) == (
        "order-1",
        FR,
        3001,
        "delivered",
        True,
    )
    assert (report.tag, report.user, report.ptt, report.dlr, report.source) == ("otp", "alice", 4, 1, "callback")
    assert report.report_id == "3001:delivered" and report.reported_at == 1717243200.0
    assert report.dlr_description == "Success" and report.ptt_description == "Delivered"
    assert service.counter("sms_inbound_callbacks_total", kind="delivery", outcome="duplicate") == 2
    assert service.counter("sms_inbound_callbacks_total", kind="delivery", outcome="stale") == 2


def test_a_pending_then_a_final_are_two_reports(start_inbound, redis_client) -> None:
    service = start_inbound()
    track(redis_client, 3002, FR)
    # the account's callback format: dlr, receiver, sender
    for params in (
        {"id": 3002, "dlr": 4, "ptt": 3},
        {"id": 3002, "dlr": 4, "ptt": 1},
        {"id": 3002, "dlr": 2, "ptt": 23},
    ):
        requests.get(service.url("delivery"), params={**params, "receiver": FR, "sender": "SANDBOX"}, timeout=5)
    pending, failed = reports(redis_client)
    assert (pending.status, pending.final, pending.ptt) == ("pending", False, 3)
    assert (failed.status, failed.final, failed.permanent, failed.ptt) == ("failed", True, True, 23)
    assert "barred" in (failed.ptt_description or "")


def test_a_temporary_failure_says_so(start_inbound, redis_client) -> None:
    service = start_inbound()
    track(redis_client, 3003, FR)
    requests.get(service.url("delivery"), params={"id": 3003, "ptt": 24, "description": "2"}, timeout=5)
    [report] = reports(redis_client)
    assert (report.status, report.permanent) == ("failed", False)


def test_a_reply_is_tied_to_the_request_it_answers(start_inbound, redis_client) -> None:
    # Given an SMS delivered to FR for request "survey-1" (tag "survey")
    service = start_inbound()
    track(redis_client, 3004, FR, request_id="survey-1", tag="survey", reply_to="survey-results")
    requests.get(service.url("delivery"), params={"id": 3004, "ptt": 4}, timeout=5)
    # When FR replies (as 0033..., the way some operators write it), twice (OVH repeats itself)
    form = {"senderid": "0033612345678", "message": "Yes", "id": "77", "tag": "survey", "shortcode": "36180"}
    for _ in range(2):
        assert requests.post(service.url("reply") + "?service=sms-sandbox-1", data=form, timeout=5).status_code == 200
    # and a stranger writes too
    requests.post(service.url("reply"), data={"senderid": "+33699999999", "message": "who?", "id": "78"}, timeout=5)
    # Then the reply is published once, with its request, on that request's queue
    [incoming] = [e for e in read_events(redis_client, "survey-results") if isinstance(e, IncomingSms)]
    assert (incoming.request_id, incoming.ovh_id, incoming.sender, incoming.message) == ("survey-1", 3004, FR, "Yes")
    assert (incoming.tag, incoming.shortcode, incoming.stop, incoming.service_name) == (
        "survey",
        "36180",
        False,
        "sms-sandbox-1",
    )
    # and the stranger's on the default results queue, tied to nothing
    [other] = read_events(redis_client, "sms-results")
    assert isinstance(other, IncomingSms) and other.request_id is None
    assert service.counter("sms_inbound_callbacks_total", kind="reply", outcome="duplicate") == 1


def test_a_reply_with_another_tag_is_not_tied(start_inbound, redis_client) -> None:
    service = start_inbound()
    track(redis_client, 3005, FR, request_id="promo-1", tag="promo")
    requests.get(service.url("delivery"), params={"id": 3005, "ptt": 4}, timeout=5)
    requests.post(service.url("reply"), data={"senderid": FR, "message": "Yes", "id": "79", "tag": "older"}, timeout=5)
    [incoming] = read_events(redis_client, "sms-results")
    assert isinstance(incoming, IncomingSms) and incoming.request_id is None and incoming.tag == "older"


def test_a_stop_reply_and_its_stop_callback_opt_out_once(start_inbound, redis_client) -> None:
    # Given an SMS delivered to FR
    service = start_inbound()
    track(redis_client, 3006, FR, request_id="promo-2", tag="promo")
    requests.get(service.url("delivery"), params={"id": 3006, "ptt": 4}, timeout=5)
    # When FR answers STOP: OVH posts the reply and calls the stopCallBack
    requests.post(service.url("reply"), data={"senderid": FR, "message": "Stop", "id": "80", "tag": "promo"}, timeout=5)
    requests.get(service.url("stop"), params={"senderid": FR, "id": "80", "service": "sms-sandbox-1"}, timeout=5)
    # Then one IncomingSms (stop) and one OptOut were published for the request
    events = read_events(redis_client, "results")
    [incoming] = [e for e in events if isinstance(e, IncomingSms)]
    [optout] = [e for e in events if isinstance(e, OptOut)]
    assert incoming.stop is True
    assert (optout.number, optout.service_name, optout.request_id, optout.via) == (
        FR,
        "sms-sandbox-1",
        "promo-2",
        "reply",
    )
    # and the number is now among the account's opt-outs, which the accept stage refuses
    assert redis_client.zscore(keys.optouts("sms-sandbox-1"), FR) is not None
    assert int(redis_client.get(keys.blacklist_gen("sms-sandbox-1"))) == 1
    wait_until(lambda: service.counter("sms_inbound_events_published_total", event="opt_out") == 1)


def test_a_stop_callback_alone_opts_out(start_inbound, redis_client) -> None:
    service = start_inbound()
    requests.post(service.url("stop") + "?service=sms-other-1", data={"number": "+33611111111"}, timeout=5)
    [optout] = read_events(redis_client, "sms-results")
    assert isinstance(optout, OptOut) and optout.via == "stop_callback" and optout.service_name == "sms-other-1"
