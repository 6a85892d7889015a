"""The calls the sandbox makes back, as OVH does: delivery receipts, replies, STOPs.

A real HTTP server in the test records what reaches it; the sandbox is driven through python-ovh
and its control API, as everywhere else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ovh
import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

FR = "+33612345678"


class Recorder:
    """An HTTP server that answers 200 (or the statuses queued in ``answers``) and records calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parts = urlsplit(self.path)
                with recorder.lock:
                    status = recorder.answers.pop(0) if recorder.answers else 200
                    recorder.calls.append(
                        {
                            "method": self.command,
                            "path": parts.path,
                            "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                            "form": {k: v[0] for k, v in parse_qs(body).items()},
                            "status": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        def arrived() -> list[dict[str, Any]]:
            with self.lock:
                return list(self.calls) if len(self.calls) >= n else []

        return wait_until(arrived, timeout, f"{n} calls to the recorder", every=0.01)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()


@pytest.fixture
def fast(make_sandbox: Callable[..., Any]) -> Any:
    return make_sandbox(seed=3, delivery_delay_s=(0.02, 0.1), failure_rate=0.0)


def test_put_account_keeps_the_callbacks_and_sms_response(fast, clients) -> None:
    client = clients(fast)
    sn = fast.service_name
    client.put(
        f"/sms/{sn}",
        callBack="https://example.com/dlr",
        stopCallBack="https://example.com/stop",
        smsResponse={"responseType": "cgi", "cgiUrl": "https://example.com/reply"},
    )
    account = client.get(f"/sms/{sn}")
    assert (account["callBack"], account["stopCallBack"]) == ("https://example.com/dlr", "https://example.com/stop")
    assert account["smsResponse"]["cgiUrl"] == "https://example.com/reply"
    assert account["smsResponse"]["trackingOptions"] == []  # the fields not given are kept
    with pytest.raises(ovh.exceptions.BadParametersError):
        client.put(f"/sms/{sn}", callBack="ftp://example.com/")
    with pytest.raises(ovh.exceptions.BadParametersError):
        client.put(f"/sms/{sn}", smsResponse={"responseType": "email"})


def test_a_receipt_that_moves_calls_the_account_callback_as_ovh_does(fast, clients, send, recorder) -> None:
    # Given an account whose callBack (with a query string of its own) is the recorder
    client = clients(fast)
    client.put(f"/sms/{fast.service_name}", callBack=recorder.url + "/dlr?token=abc")
    fast.control.set_failing_receivers({"+33612345679": 23})
    # When two SMS are sent, one of which fails
    ids = send(client, fast.service_name, [FR, "+33612345679"])["ids"]
    calls = recorder.wait_for(4)
    # Then each got its pending receipt, then its final one, with OVH's account parameters
    by_id = {sms_id: [c["query"] for c in calls if c["query"]["id"] == str(sms_id)] for sms_id in ids}
    delivered, failed = by_id[ids[0]], by_id[ids[1]]
    assert [(q["dlr"], q["ptt"], q["description"]) for q in delivered] == [("4", "3", "4"), ("1", "4", "1")]
    assert [(q["dlr"], q["ptt"]) for q in failed] == [("4", "3"), ("2", "23")]
    assert delivered[1]["descriptionDlr"] == "Success" and failed[1]["descriptionDlr"] == "Failed"
    assert {q["receiver"] for q in delivered} == {FR} and {q["sender"] for q in delivered} == {"SANDBOX"}
    assert all(c["method"] == "GET" and c["path"] == "/dlr" and c["query"]["token"] == "abc" for c in calls)
    # and the final receipt is what the API says
    outgoing = client.get(f"/sms/{fast.service_name}/outgoing/{ids[1]}")
    assert (outgoing["deliveryReceipt"], outgoing["ptt"]) == (2, 23)
    assert {r["id"]: r["final"] for r in fast.control.receipts()} == {ids[0]: True, ids[1]: True}


def test_an_api_user_callback_gets_the_user_parameters(fast, clients, send, recorder) -> None:
    client = clients(fast)
    sn = fast.service_name
    client.post(f"/sms/{sn}/users", login="alice", password="abcd1234")
    client.put(f"/sms/{sn}/users/alice", callBack=recorder.url + "/user")
    client.put(f"/sms/{sn}", callBack=recorder.url + "/account")
    client.post(f"/sms/{sn}/users/alice/jobs", message="Hi", receivers=[FR], sender="SANDBOX", noStopClause=True)
    calls = recorder.wait_for(2)
    assert {c["path"] for c in calls} == {"/user"}
    assert set(calls[-1]["query"]) == {"id", "ptt", "date", "description", "descriptionDlr"}


def test_duplicates_and_reordering_on_demand(fast, clients, send, recorder) -> None:
    client = clients(fast)
    client.put(f"/sms/{fast.service_name}", callBack=recorder.url + "/dlr")
    fast.control.set_callbacks(duplicates=1, reorder=True)
    send(client, fast.service_name, [FR])
    recorder.wait_for(4)
    time.sleep(0.2)  # nothing more comes
    assert [c["query"]["dlr"] for c in recorder.calls] == ["1", "1", "4", "4"]
    assert len(fast.control.callbacks()) == 4


def test_a_failed_callback_is_tried_again(fast, clients, send, recorder) -> None:
    client = clients(fast)
    client.put(f"/sms/{fast.service_name}", callBack=recorder.url + "/dlr")
    recorder.answers = [503, 500]
    send(client, fast.service_name, [FR])
    calls = recorder.wait_for(4)
    assert [c["status"] for c in calls] == [503, 500, 200, 200]
    assert [c["query"]["dlr"] for c in calls][-1] == "1"  # the final receipt still arrived


def test_a_reply_reaches_the_cgi_url_and_incoming(fast, clients, send, recorder) -> None:
    client = clients(fast)
    sn = fast.service_name
    client.put(f"/sms/{sn}", smsResponse={"responseType": "cgi", "cgiUrl": recorder.url + "/reply"})
    send(client, sn, [FR], tag="survey", senderForResponse=True, sender=None)
    reply = fast.control.reply(sn, "0033612345678", "Yes please")
    [call] = recorder.wait_for(1)
    assert call["method"] == "POST" and call["path"] == "/reply"
    assert call["form"] == {"id": str(reply["id"]), "senderid": FR, "message": "Yes please", "tag": "survey"} | {
        "shortcode": "36180"
    }
    assert reply["stop"] is False
    assert client.get(f"/sms/{sn}/incoming/{reply['id']}")["message"] == "Yes please"
    assert client.get(f"/sms/{sn}/blacklists") == []


def test_a_stop_blacklists_and_calls_stop_callback(fast, clients, send, recorder) -> None:
    client = clients(fast)
    sn = fast.service_name
    client.put(f"/sms/{sn}", stopCallBack=recorder.url + "/stop")
    send(client, sn, [FR], noStopClause=False)
    assert fast.control.reply(sn, FR, "stop")["stop"] is True
    [call] = recorder.wait_for(1)
    assert (call["method"], call["path"], call["query"]["senderid"]) == ("GET", "/stop", FR)
    assert client.get(f"/sms/{sn}/blacklists") == [FR]
    assert len(client.get(f"/sms/{sn}/incoming")) == 1


def test_seeded_stops_happen_to_commercial_sms(make_sandbox, clients, send, recorder) -> None:
    # Given every delivered commercial SMS is answered STOP
    sb = make_sandbox(seed=5, delivery_delay_s=(0.02, 0.05), failure_rate=0.0, stop_rate=1.0)
    client = clients(sb)
    client.put(f"/sms/{sb.service_name}", stopCallBack=recorder.url + "/stop")
    # When a commercial and a non-commercial SMS are delivered
    send(client, sb.service_name, [FR], noStopClause=False)
    send(client, sb.service_name, ["+33612345679"], noStopClause=True)
    [call] = recorder.wait_for(1)
    time.sleep(0.2)
    # Then only the commercial one's receiver said STOP
    assert call["query"]["senderid"] == FR and len(recorder.calls) == 1
    assert client.get(f"/sms/{sb.service_name}/blacklists") == [FR]
