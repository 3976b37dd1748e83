"""Money for people: integer minor units plus an ISO 4217 code -> an exact decimal amount in
major units. Only for presentation; everything upstream stays in minor units."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 minor-unit exponents that are not 2 (list one, the current currency and funds
# codes). Every other code has two decimal places.
_ZERO = ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND")
_EXPONENTS = {
    **dict.fromkeys((*_ZERO, "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def exponent(currency: str) -> int:
    """Decimal places of `currency`'s major unit (JPY 0, EUR 2, BHD 3)."""
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return _EXPONENTS.get(currency.upper(), 2)


def to_major_units(minor: int, currency: str) -> Decimal:
    """4500 EUR -> Decimal('45.00'); 4500 JPY -> Decimal('4500'); 4500 BHD -> Decimal('4.500')."""
    return Decimal(int(minor)).scaleb(-exponent(currency))
