"""The worker's credit estimate agrees with OVH's (the sandbox's ``POST /sms/estimate``).

The two part counters were written apart (``worker.accounting.credits`` uses the ``gsm0338`` codec, the
sandbox its own tables), so agreement on random texts means something.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.accounting import credits
from worker.ovhcloud.client import make_client
from worker.ovhcloud.gateway import OvhGateway

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "^{}\\[~]|€\f"
EMOJI = "😀🎉👍🚀❤️🇫🇷"
OTHER_UCS2 = "âêîôûçœÀÈЖЯ中文한국어عربي"

#: Characters (septets or UTF-16 units) around each part boundary, STOP mention included.
BOUNDARIES = [1, 69, 70, 71, 133, 134, 135, 159, 160, 161, 201, 305, 306, 307, 402, 403, 459, 460, 461, 918, 919]
STOP_LENGTH = len(credits.STOP_MENTION)

ALPHABETS = {
    "gsm": GSM_BASIC,
    "gsm+extension": GSM_BASIC + GSM_EXTENSION * 4,
    "extension": GSM_EXTENSION,
    "emoji": EMOJI,
    "ucs2": OTHER_UCS2 + GSM_BASIC,
    "mixed": GSM_BASIC + GSM_EXTENSION + EMOJI + OTHER_UCS2,
}


def units(char: str) -> int:
    """Upper bound of what one character weighs (2 for extension characters and astral ones)."""
    return 2 if char in GSM_EXTENSION or ord(char) > 0xFFFF else 1


@st.composite
def texts(draw: st.DrawFn) -> tuple[str, bool]:
    no_stop = draw(st.booleans())
    kind = draw(st.sampled_from(sorted(ALPHABETS)))
    target = draw(st.one_of(st.sampled_from(BOUNDARIES), st.integers(1, 930)))
    if not no_stop and draw(st.booleans()):
        target = max(target - STOP_LENGTH, 1)  # land on the boundary once the STOP mention is added
    alphabet = st.sampled_from(ALPHABETS[kind]) | st.characters(codec="utf-8", exclude_categories=["Cs"])
    drawn = draw(st.text(alphabet, min_size=target, max_size=target))
    # keep the shortest prefix that weighs at least the target
    weight = 0
    for end, char in enumerate(drawn, start=1):
        weight += units(char)
        if weight >= target:
            return drawn[:end], no_stop
    return drawn, no_stop


@pytest.fixture(scope="module")
def sandbox_client() -> Iterator[Any]:
    from ovh_sandbox import Sandbox

    with Sandbox(port=0, seed=3) as sandbox:
        yield make_client(sandbox.base_url, **sandbox.credentials)


def ovh_estimate(client: Any, text: str, no_stop: bool) -> dict[str, Any]:
    return client.post("/sms/estimate", message=text, noStopClause=no_stop, senderType="alpha")  # type: ignore[no-any-return]


def check_agrees(client: Any, text: str, no_stop: bool) -> None:
    expected = ovh_estimate(client, text, no_stop)
    try:
        mine = credits.estimate(text, no_stop_clause=no_stop)
    except credits.MessageTooLong as exc:
        assert expected["parts"] > credits.MAX_PARTS, (text, expected)
        assert f"at most {credits.MAX_PARTS} parts" in str(exc)
        return
    encoding = {"gsm": "7bits", "ucs2": "unicode"}[mine.encoding]
    assert (mine.parts, mine.characters, encoding) == (
        expected["parts"],
        expected["characters"],
        expected["charactersClass"],
    ), text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=texts())
def test_estimate_agrees_with_ovh_on_random_texts(sandbox_client, case: tuple[str, bool]) -> None:
    text, no_stop = case
    check_agrees(sandbox_client, text, no_stop)


@pytest.mark.parametrize("no_stop", [True, False])
@pytest.mark.parametrize(
    "text",
    [
        "a" * 159,
        "a" * 160,
        "a" * 161,
        "a" * 305,
        "a" * 306,
        "a" * 307,
        "a" * 918,
        "a" * 919,
        "é" * 160,  # é is in the GSM alphabet
        "€" * 80,  # extension characters count twice: 160 septets
        "€" * 81,
        "ê" * 69,  # ê is not: UCS-2
        "ê" * 70,
        "ê" * 71,
        "😀" * 35,  # astral: two UTF-16 units each
        "😀" * 36,
        "a" * 159 + "😀",
        "\x1b" + "a" * 10,  # a bare ESC is not a character of the alphabet
        "€" * 460,
    ],
)
def test_estimate_agrees_with_ovh_at_the_boundaries(sandbox_client, text: str, no_stop: bool) -> None:
    check_agrees(sandbox_client, text, no_stop)


def test_a_message_over_six_parts_is_refused_with_the_reason() -> None:
    with pytest.raises(credits.MessageTooLong, match=r"needs 7 SMS parts \(919 GSM characters\); at most 6 parts"):
        credits.estimate("a" * 919, no_stop_clause=True)
    with pytest.raises(credits.MessageTooLong, match="with the STOP mention"):
        credits.estimate("a" * 910, no_stop_clause=False)


class CountingGateway:
    """The gateway's GET against the sandbox, counting what it fetched (the refresher's ``Fetch``)."""

    def __init__(self, base_url: str, credentials: dict[str, str]) -> None:
        self.gateway = OvhGateway(lambda: make_client(base_url, **credentials))
        self.fetched: list[str] = []

    def __call__(self, path: str, **params: Any) -> Any:
        self.fetched.append(params.get("country") or path)
        return self.gateway.get(path, **params)


def test_destination_rates_are_read_off_the_accept_path_and_shared(sandbox, redis_client) -> None:
    fetch = CountingGateway(sandbox.base_url, sandbox.credentials)
    now = [1000.0]
    rates = credits.RateTable(redis_client, ttl_s=60, clock=lambda: now[0])
    # Given nobody read Germany's rate yet: the request cannot be priced, and asks for it
    with pytest.raises(credits.RateUnknown, match="'DE' is not known yet"):
        rates.rate("de")
    assert fetch.fetched == []  # no OVH call on the accept path
    assert rates.pending() == ["de"]
    # When the refresher reads it, it is known here and in any other replica (through Redis)
    assert rates.fetch(fetch, "de") == 2.0
    assert rates.rate("DE") == 2.0
    other_replica = credits.RateTable(redis_client, ttl_s=60, clock=lambda: now[0])
    assert other_replica.rate("de") == 2.0
    assert fetch.fetched == ["de"]
    # Past the TTL it is still used, and read again in the background
    now[0] += 61
    assert rates.rate("de") == 2.0 and rates.pending() == ["de"]
    # A destination OVH does not price makes its receivers invalid
    rates.fetch(fetch, "zz")
    with pytest.raises(credits.UnknownDestination):
        rates.rate("zz")


def test_an_unreachable_rate_api_leaves_the_rate_unknown_and_asked_again(redis_client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    fetch = CountingGateway(
        f"http://127.0.0.1:{closed_port}/1.0", {"application_key": "k", "application_secret": "s", "consumer_key": "c"}
    )
    rates = credits.RateTable(redis_client, ttl_s=60)
    assert rates.fetch(fetch, "fr") is None
    assert rates.pending() == ["fr"]
    with pytest.raises(credits.RateUnknown):
        rates.rate("fr")


def test_account_balance_is_cached_and_debited(sandbox) -> None:
    fetch = CountingGateway(sandbox.base_url, sandbox.credentials)
    now = [0.0]
    balance = credits.AccountBalance(refresh_s=30, clock=lambda: now[0])
    sandbox.control.set_credits(sandbox.service_name, 100)
    assert balance.credits_left(sandbox.service_name) is None  # not read yet: the check is skipped
    assert balance.pending() == [sandbox.service_name]
    assert balance.fetch(fetch, sandbox.service_name) == 100
    balance.debit(sandbox.service_name, 30)
    sandbox.control.set_credits(sandbox.service_name, 50)
    assert balance.credits_left(sandbox.service_name) == 70  # cached, minus what was staged
    assert balance.pending() == []
    now[0] = 31.0
    assert balance.credits_left(sandbox.service_name) == 70 and balance.pending() == [sandbox.service_name]
    balance.fetch(fetch, sandbox.service_name)
    assert balance.credits_left(sandbox.service_name) == 50  # refreshed
    assert balance.fetch(fetch, "no-such-account") is None
    assert balance.credits_left("no-such-account") is None  # unknown: the check is skipped


@pytest.mark.parametrize("written", ["be,de", '["be", "de"]', " be , de "])
def test_rates_to_prefetch_are_read_as_ops_write_them(monkeypatch: pytest.MonkeyPatch, written: str) -> None:
    from worker.settings import Settings

    monkeypatch.setenv("SMS_WORKER_RATES_PREFETCH", written)
    assert Settings().rates_prefetch == ["be", "de"]
