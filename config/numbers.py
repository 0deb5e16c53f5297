"""Strict parsing of numbers that arrive from outside: query strings, headers, forms.

``int()``, ``float()`` and ``str.isdigit()`` accept much more than a client
means by a number: other scripts' digits (``int("٣") == 3``; ``"²".isdigit()``
but ``int("²")`` raises), ``_`` separators, surrounding whitespace, ``+``,
``inf``/``nan``/``1e308``, and values too large for PostgreSQL's bigint or for
``int()`` itself (4,300 digits). Every number read from a request goes through
here instead: ASCII digits only, a ``-`` only when the bounds allow negatives,
inclusive bounds checked before any conversion of more digits than the bounds
can hold, and one error type whose message can be shown to the user.
"""

from __future__ import annotations

import re
from decimal import Decimal

_INTEGER = re.compile(r"(-?)([0-9]+)")
_DECIMAL = re.compile(r"(-?)([0-9]*)(?:\.([0-9]+))?")
MAX_FRACTION_DIGITS = 20
# The largest value of PostgreSQL's bigint: ids and OFFSETs beyond it are errors there.
MAX_BIGINT = 2**63 - 1


class NumberRejected(ValueError):
    """Not a number within the bounds. ``str(exc)`` is a sentence for the user;
    ``requirement`` is its core ("an integer from 1 to 250") for callers that
    phrase their own; ``out_of_range`` tells a well-formed number that is too
    small or too large from text that is not a number at all."""

    def __init__(self, requirement: str, *, out_of_range: bool) -> None:
        super().__init__(f"Must be {requirement}.")
        self.requirement = requirement
        self.out_of_range = out_of_range


def parse_int(text: str, *, minimum: int, maximum: int, saturate: bool = False) -> int:
    """The integer ``text`` spells, from ``minimum`` to ``maximum`` inclusive.

    Only ``[0-9]+``, with a leading ``-`` only when ``minimum < 0``; leading
    zeros are allowed, nothing else (no whitespace, ``+`` or ``_``). With
    ``saturate``, a well-formed number beyond a bound comes back as that bound
    (for values such as ``Retry-After``, where "very long" means "the most we
    allow"). Raises NumberRejected otherwise.
    """
    if minimum > maximum:
        raise ValueError(f"minimum {minimum} is above maximum {maximum}")
    requirement = f"an integer from {minimum} to {maximum}"
    match = _INTEGER.fullmatch(text) if isinstance(text, str) else None
    if match is None or (match[1] and minimum >= 0):
        raise NumberRejected(requirement, out_of_range=False)
    sign, digits = match[1], match[2].lstrip("0") or "0"
    # More digits than either bound has means beyond it: no int() of them.
    if len(digits) > len(str(max(abs(minimum), abs(maximum)))):
        value = maximum + 1 if not sign else minimum - 1
    else:
        value = -int(digits) if sign else int(digits)
    if minimum <= value <= maximum:
        return value
    if saturate:
        return maximum if value > maximum else minimum
    raise NumberRejected(requirement, out_of_range=True)


def parse_decimal(
    text: str,
    *,
    minimum: Decimal | int,
    maximum: Decimal | int,
    max_fraction_digits: int = MAX_FRACTION_DIGITS,
) -> Decimal:
    """The exact decimal ``text`` spells (``24``, ``1.5``, ``.25``), within the bounds.

    ASCII digits with an optional ``.`` and fraction of at most
    ``max_fraction_digits`` digits, a leading ``-`` only when ``minimum < 0``;
    no exponent, ``inf`` or ``nan``. Raises NumberRejected otherwise.
    """
    low, high = Decimal(minimum), Decimal(maximum)
    if not (low.is_finite() and high.is_finite()) or low > high:
        raise ValueError(f"bounds {minimum}..{maximum} are not a finite range")
    requirement = f"a number from {low:f} to {high:f}"
    match = _DECIMAL.fullmatch(text) if isinstance(text, str) else None
    if (
        match is None
        or not (match[2] or match[3])
        or (match[1] and low >= 0)
        or len(match[3] or "") > max_fraction_digits
    ):
        raise NumberRejected(requirement, out_of_range=False)
    whole = match[2].lstrip("0") or "0"
    if len(whole) > len(str(int(max(abs(low), abs(high))))):
        raise NumberRejected(requirement, out_of_range=True)
    value = Decimal(f"{match[1]}{whole}.{match[3]}" if match[3] else f"{match[1]}{whole}")
    if not low <= value <= high:
        raise NumberRejected(requirement, out_of_range=True)
    return value
