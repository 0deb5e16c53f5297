"""The strict parser of numbers from requests: ASCII digits, bounds, one error type."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.numbers import MAX_BIGINT, NumberRejected, parse_decimal, parse_int

# Text a client could send where a number is expected: digits of other scripts,
# signs, separators, exponents, whitespace, NUL, and very long runs of digits.
_ALPHABET = st.sampled_from(list("0123456789-+._ eE\t\n\x00²³¹٣०௫໒߃𝟡١⁹½ⅷinfatyxX"))  # noqa: RUF001 (other scripts' digits on purpose)
NUMBERISH = st.one_of(
    st.text(_ALPHABET, max_size=40),
    st.text(max_size=40),
    st.integers().map(str),
    st.integers(min_value=10**18, max_value=10**400).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)


@pytest.mark.parametrize("text, value", [("1", 1), ("250", 250), ("0042", 42), ("0" * 500 + "7", 7)])
def test_ascii_digits_within_bounds_are_read(text, value):
    assert parse_int(text, minimum=1, maximum=250) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "²",  # str.isdigit() says yes, int() raises
        "٣",  # int() says 3
        "१२",
        "𝟡",  # noqa: RUF001 (other scripts' digits on purpose)
        " 5",
        "5 ",
        "5\n",
        "+5",
        "-5",
        "1_0",
        "1.0",
        "1e2",
        "0x10",
        "inf",
        "5\x00",
    ],
)
def test_anything_but_ascii_digits_is_rejected_as_malformed(text):
    with pytest.raises(NumberRejected) as caught:
        parse_int(text, minimum=1, maximum=250)

    assert not caught.value.out_of_range
    assert str(caught.value) == "Must be an integer from 1 to 250."
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("text", ["0", "251", "9" * 20, "9" * 5000])
def test_out_of_bounds_is_rejected_without_converting_huge_numbers(text):
    with pytest.raises(NumberRejected) as caught:
        parse_int(text, minimum=1, maximum=250)

    assert caught.value.out_of_range
    assert caught.value.requirement == "an integer from 1 to 250"


def test_a_minus_sign_only_where_the_bounds_allow_negatives():
    assert parse_int("-3", minimum=-5, maximum=5) == -3
    assert parse_int("-0", minimum=-5, maximum=5) == 0
    with pytest.raises(NumberRejected):
        parse_int("-", minimum=-5, maximum=5)
    with pytest.raises(NumberRejected):
        parse_int("--3", minimum=-5, maximum=5)
    with pytest.raises(NumberRejected):
        parse_int("-0", minimum=0, maximum=5)


def test_saturate_clamps_well_formed_numbers_only():
    assert parse_int("9" * 5000, minimum=0, maximum=3600, saturate=True) == 3600
    assert parse_int("-99", minimum=-5, maximum=5, saturate=True) == -5
    assert parse_int("17", minimum=0, maximum=3600, saturate=True) == 17
    with pytest.raises(NumberRejected):
        parse_int("²", minimum=0, maximum=3600, saturate=True)
    with pytest.raises(NumberRejected):
        parse_int("-1", minimum=0, maximum=3600, saturate=True)


def test_inverted_bounds_are_a_programming_error():
    with pytest.raises(ValueError, match="above"):
        parse_int("1", minimum=2, maximum=1)


@pytest.mark.parametrize(
    "text, value",
    [("24", Decimal(24)), ("1.5", Decimal("1.5")), (".25", Decimal("0.25")), ("168", Decimal(168)), ("0", 0)],
)
def test_decimals_are_read_exactly(text, value):
    assert parse_decimal(text, minimum=0, maximum=168) == value


@pytest.mark.parametrize(
    "text",
    ["inf", "Infinity", "nan", "NaN", "1e308", "1E3", "1.", ".", "", "²", "٣", "-1", " 1", "1,5", "0x1"],
)
def test_decimal_rejects_anything_but_plain_ascii_decimals(text):
    with pytest.raises(NumberRejected) as caught:
        parse_decimal(text, minimum=0, maximum=168)

    assert str(caught.value) == "Must be a number from 0 to 168."


@pytest.mark.parametrize("text", ["168.0001", "169", "9" * 400, "0." + "1" * 21])
def test_decimal_rejects_beyond_the_bounds_or_too_many_places(text):
    with pytest.raises(NumberRejected):
        parse_decimal(text, minimum=0, maximum=168)


@given(st.integers(min_value=-(10**30), max_value=10**30), st.integers(0, 5))
def test_property_every_int_in_bounds_round_trips(value, zeros):
    text = ("-" if value < 0 else "") + "0" * zeros + str(abs(value))

    assert parse_int(text, minimum=-(10**30), maximum=10**30) == value


@given(NUMBERISH, st.integers(-(10**6), 10**6), st.integers(0, MAX_BIGINT), st.booleans())
def test_property_any_text_gives_an_int_in_bounds_or_number_rejected(text, low, span, saturate):
    high = low + span
    try:
        value = parse_int(text, minimum=low, maximum=high, saturate=saturate)
    except NumberRejected as exc:
        assert str(exc).startswith("Must be ")
        return
    assert type(value) is int and low <= value <= high
    # Whatever was accepted was plain ASCII digits, with a '-' only if negatives are allowed.
    assert text.lstrip("-").isascii() and text.lstrip("-").isdigit()
    assert text.count("-") <= (1 if low < 0 else 0)
    if not saturate:
        assert value == int(text)


@given(NUMBERISH)
def test_property_any_text_gives_a_finite_bounded_decimal_or_number_rejected(text):
    try:
        value = parse_decimal(text, minimum=0, maximum=168)
    except NumberRejected:
        return
    assert value.is_finite() and 0 <= value <= 168
    assert value == Decimal(text)
    assert int(value * 3600) <= 168 * 3600  # the admin's use never overflows
