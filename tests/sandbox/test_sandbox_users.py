"""API users and their quotas, as OVHcloud's SMS users guide describes them."""

from __future__ import annotations

import ovh.exceptions as oe
import pytest

pytestmark = pytest.mark.timeout(30)

FR1, FR2 = "+33612345678", "+33612345679"


def test_users_are_created_read_updated_and_deleted(sb, client) -> None:
    users = f"/sms/{sb.service_name}/users"
    assert client.get(users) == []
    assert client.post(users, login="alice", password="abcd1234") is None
    assert client.get(users) == ["alice"]
    alice = client.get(f"{users}/alice")
    assert alice["login"] == "alice"
    assert alice["quotaInformations"] == {"quotaLeft": 0.0, "quotaStatus": "inactive"}
    assert set(alice["alertThresholdInformations"]) == {"alertEmail", "alertNumber", "alertThreshold", "support"}
    client.put(
        f"{users}/alice",
        alertThresholdInformations={"alertThreshold": 10, "alertEmail": "ops@example.com", "support": "mail"},
        callBack="https://example.com/dlr",
    )
    alice = client.get(f"{users}/alice")
    assert alice["alertThresholdInformations"]["alertThreshold"] == 10
    assert alice["callBack"] == "https://example.com/dlr"
    assert client.delete(f"{users}/alice") is None
    with pytest.raises(oe.ResourceNotFoundError):
        client.get(f"{users}/alice")


def test_user_creation_is_checked(sb, client) -> None:
    users = f"/sms/{sb.service_name}/users"
    with pytest.raises(oe.BadParametersError, match="password"):
        client.post(users, login="bob", password="short")  # 8 alphanumerics required
    with pytest.raises(oe.BadParametersError, match="password"):
        client.post(users, login="bob")
    client.post(users, login="bob", password="abcd1234")
    with pytest.raises(oe.ResourceConflictError):
        client.post(users, login="bob", password="abcd1234")


def test_a_bad_user_update_is_400(sb, client) -> None:
    users = f"/sms/{sb.service_name}/users"
    client.post(users, login="carol", password="abcd1234")
    with pytest.raises(oe.BadParametersError, match="quotaStatus"):
        client.put(f"{users}/carol", quotaInformations={"quotaStatus": "on", "quotaLeft": 1})
    with pytest.raises(oe.BadParametersError, match="nickname"):
        client.put(f"{users}/carol", nickname="c")
    with pytest.raises(oe.BadParametersError, match="support"):
        client.put(f"{users}/carol", alertThresholdInformations={"support": "pigeon"})


def test_assigning_a_quota_moves_credits_to_held(sb, client) -> None:
    # The guide's example: 200 credits, a quota of 150 leaves 50 on the account
    sn = sb.service_name
    sb.control.set_credits(sn, 200)
    client.post(f"/sms/{sn}/users", login="alice", password="abcd1234")
    client.put(f"/sms/{sn}/users/alice", quotaInformations={"quotaStatus": "active", "quotaLeft": 150})
    account = client.get(f"/sms/{sn}")
    assert (account["creditsLeft"], account["creditsHoldByQuota"], account["userQuantityWithQuota"]) == (50, 150, 1)
    # A quota larger than what the account has left is refused
    with pytest.raises(oe.APIError):
        client.put(f"/sms/{sn}/users/alice", quotaInformations={"quotaLeft": 201})
    # Deleting the user gives its quota back
    client.delete(f"/sms/{sn}/users/alice")
    account = client.get(f"/sms/{sn}")
    assert (account["creditsLeft"], account["creditsHoldByQuota"]) == (200, 0)


def test_a_users_sends_are_paid_from_its_quota_and_refused_beyond(sb, client, send) -> None:
    sn = sb.service_name
    client.post(f"/sms/{sn}/users", login="alice", password="abcd1234")
    client.put(f"/sms/{sn}/users/alice", quotaInformations={"quotaStatus": "active", "quotaLeft": 3})
    jobs = f"/sms/{sn}/users/alice/jobs"
    # 2 French receivers, 1 part each: 2 credits from the quota of 3
    report = client.post(jobs, message="Hi", receivers=[FR1, FR2], sender="SANDBOX", noStopClause=True)
    assert report["totalCreditsRemoved"] == 2.0
    assert client.get(f"/sms/{sn}/users/alice")["quotaInformations"]["quotaLeft"] == 1.0
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 1_000_000 - 3  # the quota was held, nothing more
    # 2 more credits do not fit in the 1 left: refused whole
    with pytest.raises(oe.APIError) as caught:
        client.post(jobs, message="Hi", receivers=[FR1, FR2], sender="SANDBOX", noStopClause=True)
    assert caught.value.response.status_code == 403
    assert "Quota" in str(caught.value)
    assert client.get(f"/sms/{sn}/users/alice")["quotaInformations"]["quotaLeft"] == 1.0
    # The records name the user; the user's jobs and outgoing list only its SMS
    assert [s["login"] for s in sb.control.sent()] == ["alice", "alice"]
    send(client, sn, [FR1])  # an account-level send
    assert client.get(f"/sms/{sn}/users/alice/outgoing") == report["ids"]
    assert len(client.get(f"/sms/{sn}/outgoing")) == 3
    assert client.get(f"/sms/{sn}/users/alice/outgoing/{report['ids'][0]}")["receiver"] == FR1
    assert client.get(f"/sms/{sn}/users/alice/jobs") == []


def test_a_user_without_quota_spends_the_account_credits(sb, client) -> None:
    sn = sb.service_name
    client.post(f"/sms/{sn}/users", login="dave", password="abcd1234")
    client.post(f"/sms/{sn}/users/dave/jobs", message="Hi", receivers=[FR1], sender="SANDBOX", noStopClause=True)
    assert client.get(f"/sms/{sn}")["creditsLeft"] == 1_000_000 - 1


def test_a_users_differed_job_is_listed_and_cancelled_back_into_its_quota(sb, client) -> None:
    sn = sb.service_name
    client.post(f"/sms/{sn}/users", login="erin", password="abcd1234")
    client.put(f"/sms/{sn}/users/erin", quotaInformations={"quotaStatus": "active", "quotaLeft": 5})
    base = f"/sms/{sn}/users/erin/jobs"
    [job] = client.post(base, message="Hi", receivers=[FR1], sender="SANDBOX", noStopClause=True, differedPeriod=5)[
        "ids"
    ]
    assert client.get(base) == [job]
    assert client.get(f"{base}/{job}")["receiver"] == FR1
    client.delete(f"{base}/{job}")
    assert client.get(base) == []
    assert client.get(f"/sms/{sn}/users/erin")["quotaInformations"]["quotaLeft"] == 5.0


def test_jobs_of_an_unknown_user_are_not_found(sb, client) -> None:
    with pytest.raises(oe.ResourceNotFoundError):
        client.post(f"/sms/{sb.service_name}/users/nobody/jobs", message="Hi", receivers=[FR1], sender="SANDBOX")
    assert [c["status"] for c in sb.control.calls()] == [404]
