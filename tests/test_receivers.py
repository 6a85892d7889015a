"""The fast path for international numbers decides exactly as phonenumbers does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.phones import by_phonenumbers, normalize

#: Country codes of one region (the fast path decides) and of several (it hands over), with
#: national prefixes, Italian leading zeros, and the like.
CODES = ["33", "32", "41", "49", "39", "34", "351", "48", "212", "225", "54", "52", "55", "61", "81", "86", "91",
         "1", "7", "44", "262", "590", "47", "358", "599", "800", "882"]  # fmt: skip

numbers = st.builds(
    lambda code, zero, digits: f"+{code}{zero}{digits}",
    st.sampled_from(CODES),
    st.sampled_from(["", "0", "00", "9", "1"]),
    st.text(alphabet="0123456789", min_size=1, max_size=14),
)


@settings(max_examples=3000, deadline=None)
@given(numbers)
def test_the_fast_path_agrees_with_phonenumbers(number: str) -> None:
    assert normalize.__wrapped__(number, "FR") == by_phonenumbers(number, number, "FR")


def test_real_numbers_of_several_countries() -> None:
    for number in ["+33612345678", "+330612345678", "+390612345678", "+4915123456789", "+32470123456",
                   "+41791234567", "+12025550123", "+447911123456", "+5491123456789", "+61412345678",
                   "+8613812345678", "+919812345678", "+3361", "+33", "+999123456"]:  # fmt: skip
        assert normalize.__wrapped__(number, "FR") == by_phonenumbers(number, number, "FR"), number
