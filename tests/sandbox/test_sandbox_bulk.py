"""The sandbox's bulk route: receivers from a CSV document by URL or slot, merged, created asynchronously."""

from __future__ import annotations

import ovh
import pytest

from ovh_sandbox import bulk

CSV = "number;firstname;age\n+33612345601;Pierre;47\n+33612345602;Jean;33\n+33612345603;Ann;21\n"
MESSAGE = "Hello #firstname#, you are #age#."


def test_a_document_by_url_is_fetched_merged_and_sent_asynchronously_with_the_tag(sb, client, documents) -> None:
    url = documents.put("/doc.csv", CSV)
    report = client.post(
        f"/sms/{sb.service_name}/jobs", message=MESSAGE, sender="SANDBOX", receiversDocumentUrl=url, tag="spring"
    )
    assert report["ids"] == [] and report["tag"] == "spring"  # OVH: no ids in this mode
    assert bulk.desk(sb.state).wait(10)
    sent = {r["receiver"]: r for r in sb.control.sent()}
    assert {number: r["message"] for number, r in sent.items()} == {
        "+33612345601": "Hello Pierre, you are 47.",
        "+33612345602": "Hello Jean, you are 33.",
        "+33612345603": "Hello Ann, you are 21.",
    }
    assert {r["tag"] for r in sent.values()} == {"spring"}
    assert sorted(client.get(f"/sms/{sb.service_name}/outgoing", tag="spring")) == sorted(
        r["id"] for r in sent.values()
    )
    assert documents.fetched == ["/doc.csv"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("numero;firstname\n+33612345601;Pierre\n", '"number" column'),
        ("number;firstname\n+33612345601;Pierre\n0612345602;Jean\n", "Invalid receiver on line 3"),
        ("number;firstname\n+33612345601;Pierre\n+33612345602;Jérôme\n", "GSM 03.38 alphabet on line 3"),
        ("number;firstname\n+33612345601;Pierre;extra\n", "More fields than the header has columns on line 2"),
        ("", "empty"),
    ],
)
def test_a_document_ovh_would_refuse_is_refused_whole_with_its_line(sb, client, documents, text, reason) -> None:
    url = documents.put("/bad.csv", text)
    with pytest.raises(ovh.exceptions.BadParametersError, match=reason):
        client.post(
            f"/sms/{sb.service_name}/jobs", message="Hi #firstname#", sender="SANDBOX", receiversDocumentUrl=url
        )
    assert sb.control.sent() == []


def test_an_unreachable_document_is_refused(sb, client, documents) -> None:
    with pytest.raises(ovh.exceptions.BadParametersError, match="HTTP 404"):
        client.post(
            f"/sms/{sb.service_name}/jobs", message="Hi", sender="SANDBOX", receiversDocumentUrl=documents.url("/gone")
        )


def test_one_receivers_source_per_call(sb, client, documents) -> None:
    url = documents.put("/doc.csv", CSV)
    with pytest.raises(ovh.exceptions.BadParametersError, match="one of receivers"):
        client.post(
            f"/sms/{sb.service_name}/jobs",
            message="Hi",
            sender="SANDBOX",
            receivers=["+33612345601"],
            receiversDocumentUrl=url,
        )


def test_a_slot_is_loaded_listed_read_used_and_deleted(sb, client, documents) -> None:
    sn = sb.service_name
    url = documents.put("/slot.csv", CSV)
    created = client.post(f"/sms/{sn}/receivers", slotId=3, description="spring", autoUpdate=False, csvUrl=url)
    assert created["records"] == 3 and created["slotId"] == 3
    assert client.get(f"/sms/{sn}/receivers") == [3]
    assert client.get(f"/sms/{sn}/receivers/3/csv") == CSV
    with pytest.raises(ovh.exceptions.ResourceConflictError):
        client.post(f"/sms/{sn}/receivers", slotId=3, description="again", autoUpdate=False, csvUrl=url)
    with pytest.raises(ovh.exceptions.BadParametersError):
        client.post(f"/sms/{sn}/receivers", slotId=10, description="ten", autoUpdate=False, csvUrl=url)
    client.post(f"/sms/{sn}/jobs", message=MESSAGE, sender="SANDBOX", receiversSlotId="3", tag="slot")
    assert bulk.desk(sb.state).wait(10)
    assert sorted(r["message"] for r in sb.control.sent()) == [
        "Hello Ann, you are 21.",
        "Hello Jean, you are 33.",
        "Hello Pierre, you are 47.",
    ]
    client.delete(f"/sms/{sn}/receivers/3")
    assert client.get(f"/sms/{sn}/receivers") == []
    with pytest.raises(ovh.exceptions.ResourceNotFoundError):
        client.post(f"/sms/{sn}/jobs", message="Hi", sender="SANDBOX", receiversSlotId="3")


def test_a_differed_bulk_send_waits_in_pending_jobs_which_can_be_deleted(sb, client, documents) -> None:
    sn = sb.service_name
    url = documents.put("/doc.csv", CSV)
    client.post(f"/sms/{sn}/jobs", message=MESSAGE, sender="SANDBOX", receiversDocumentUrl=url, differedPeriod=60)
    assert bulk.desk(sb.state).wait(10)
    pending = client.get(f"/sms/{sn}/jobs")
    assert len(pending) == 3 and client.get(f"/sms/{sn}/outgoing") == []
    for job in pending:
        client.delete(f"/sms/{sn}/jobs/{job}")
    assert client.get(f"/sms/{sn}/jobs") == []
    assert all(r["cancelled"] for r in sb.control.sent())
