"""Price a quantity under one rate: pure functions over exact decimals.

Prices are in the credit type's unit, USD cents. Unit prices may be fractions of a cent
(0.01 cents a byte); each line's total is rounded to a whole cent, half away from zero, and an
invoice's total is the sum of its lines' rounded totals. So a draft never shows a fraction of a
cent, and the lines always add up to the total.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from destination.payload.exact import decimal_text


@dataclass(frozen=True)
class Tier:
    size: Decimal | None  # None: the last tier, without end
    price: Decimal


@dataclass(frozen=True)
class Charge:
    """One invoice line's arithmetic: a quantity at a unit price (with its tier, when tiered)."""

    quantity: Decimal
    unit_price: Decimal
    total: Decimal
    tier_level: int | None = None
    tier_start: Decimal | None = None
    tier_size: Decimal | None = None


def whole_cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal(1), rounding=ROUND_HALF_UP)


def flat(quantity: Decimal, price: Decimal) -> list[Charge]:
    return [Charge(quantity, price, whole_cents(quantity * price))]


def tiered(quantity: Decimal, tiers: list[Tier]) -> list[Charge]:
    """One charge per tier the quantity reaches; the first tier alone when the quantity is 0."""
    charges, start = [], Decimal(0)
    for level, tier in enumerate(tiers, start=1):
        end = None if tier.size is None else start + tier.size
        in_tier = quantity - start if end is None else min(quantity, end) - start
        if in_tier <= 0 and level > 1:
            break
        in_tier = max(in_tier, Decimal(0))
        charges.append(Charge(in_tier, tier.price, whole_cents(in_tier * tier.price), level, start, tier.size))
        if end is None or quantity <= end:
            break
        start = end
    return charges


def convert(quantity: Decimal, conversion: dict | None) -> Decimal:
    """A product's quantity_conversion (bytes to GB, say), exact to 40 significant digits."""
    if not conversion:
        return quantity
    factor = Decimal(str(conversion["conversion_factor"]))
    with localcontext() as context:
        context.prec = 40
        result = quantity * factor if conversion["operation"] == "MULTIPLY" else quantity / factor
        return Decimal(decimal_text(result))  # plain digits: 1250, not 1.25E+3


def tiers_problem(tiers: list[Tier]) -> str | None:
    """Metronome's rule for a tier list: only the last tier may be open-ended; sizes are positive."""
    if not tiers:
        return "a TIERED rate needs at least one tier"
    for tier in tiers[:-1]:
        if tier.size is None or tier.size <= 0:
            return "every tier but the last needs a positive size"
    return None
