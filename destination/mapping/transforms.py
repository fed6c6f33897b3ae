"""The short whitelist of transforms a mapping may apply to a value, and the deterministic hash.

Each transform is a pure function of one value. A value a transform cannot read refuses the
event (code `transform_failed`) rather than guessing, because a guessed billing value is worse
than a refused one that waits for a fixed mapping and a replay.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from destination.errors import EventRefused
from destination.payload.exact import NumberOutOfRange, decimal_text, dumps, to_metronome_string
from destination.payload.timestamps import EPOCH, rfc3339_ms, to_rfc3339

_NUMBER = (int, float, Decimal)


class CannotTransform(ValueError):
    pass


def _text(value) -> str:
    """Scalars as their exact Metronome string; objects and arrays are not text."""
    if isinstance(value, (dict, list)):
        raise CannotTransform(f"needs a string, number or boolean, not {'an object' if isinstance(value, dict) else 'an array'}")
    try:
        return to_metronome_string(value)
    except NumberOutOfRange as exc:
        raise CannotTransform(str(exc)) from None


def _number(value) -> Decimal:
    if isinstance(value, bool):
        raise CannotTransform("needs a number, not a boolean")
    if isinstance(value, _NUMBER):
        return Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise CannotTransform(f"{value!r} is not a number") from None
        if number.is_finite():
            return number
    raise CannotTransform(f"{value!r} is not a finite number")


def _decimal(value) -> str:
    try:
        return decimal_text(_number(value))
    except NumberOutOfRange as exc:
        raise CannotTransform(str(exc)) from None


def _rfc3339(value) -> str:
    try:
        return rfc3339_ms(value)[1]
    except EventRefused as exc:
        raise CannotTransform(exc.message) from None


def _since_epoch(scale: int):
    """Read a count of seconds (scale 1) or milliseconds (1000) since 1970, with no guessing."""
    def convert(value) -> str:
        microseconds = int(_number(value) * 1_000_000 / scale)
        try:
            return to_rfc3339(EPOCH + timedelta(microseconds=microseconds))
        except (OverflowError, ArithmeticError, ValueError) as exc:
            raise CannotTransform(f"{value!r} is not a time in range") from exc
    return convert


def hash_text(value) -> str:
    """SHA-256 hex of the value's exact text; 64 characters, inside Metronome's 128 for an id."""
    return hashlib.sha256(_text(value).encode()).hexdigest()


def hash_values(values: list) -> str:
    """SHA-256 hex of several values: canonical JSON, so 1 and 1.0, or reordered keys, hash alike."""
    return hashlib.sha256(dumps(_canonical(values))).hexdigest()


def _canonical(value):
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, _NUMBER) and not isinstance(value, bool):
        return {"$number": decimal_text(value)}  # numbers compare by value, never as strings
    return value


def _truncate(limit: int):
    """Keep at most `limit` bytes of the value's UTF-8 text, never half a character: for a value an
    admin would rather cut than have refused (Metronome refuses a batch holding a long value)."""
    def cut(value) -> str:
        try:  # objects and arrays too, as the compact JSON text Metronome would receive
            text = to_metronome_string(value)
        except NumberOutOfRange as exc:
            raise CannotTransform(str(exc)) from None
        return text.encode()[:limit].decode("utf-8", "ignore")
    return cut


TRANSFORMS = {
    "string": _text,
    "lower": lambda value: _text(value).lower(),
    "upper": lambda value: _text(value).upper(),
    "trim": lambda value: _text(value).strip(),
    "rfc3339": _rfc3339,
    "epoch_s": _since_epoch(1),
    "epoch_ms": _since_epoch(1000),
    "decimal": _decimal,
    "hash": hash_text,
}


# Transforms that take an argument, written `{"truncate": 200}`.
WITH_ARGUMENT = {"truncate": _truncate}


def compile_chain(specs) -> tuple:
    """(name, function) for each transform a mapping names, in order; the schema has checked them."""
    chain = []
    for spec in specs:
        if isinstance(spec, str):
            chain.append((spec, TRANSFORMS[spec]))
        else:
            [(name, argument)] = spec.items()
            chain.append((name, WITH_ARGUMENT[name](argument)))
    return tuple(chain)


def apply(chain: tuple, value, field: str):
    """Apply transforms in order; raise EventRefused naming the field and the transform that failed."""
    for name, transform in chain:
        try:
            value = transform(value)
        except CannotTransform as exc:
            raise EventRefused("transform_failed", f"{field}: transform {name!r}: {exc}") from None
    return value
