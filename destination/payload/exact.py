"""Exact numbers: parse JSON without losing digits, and render values as Metronome strings.

Metronome keeps arbitrary-precision decimals and wants every property value as a string, so a
number must reach it with exactly the decimal value the sender wrote. Python floats cannot hold
`3.14159265358979323846264338`, and orjson turns integers of 2**64 or more into floats.

The fast path parses with orjson. That is exact whenever no number literal has more than 15
significant digits (a double round-trips 15 digits) and no exponent reaches three digits
(subnormals and overflow). `_RISKY` finds every literal that might break that rule, and only
then do we parse with the standard library, reading floats as `Decimal`.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal

import orjson

# A JSON number can only follow ':', ',' or '[' (plus whitespace), so anchoring there keeps
# hex ids such as "e4f1...e123" in strings from sending every event down the slow path.
# False positives (such text inside a string) only cost speed, never correctness.
_RISKY = re.compile(rb"[:,\[]\s*-?(?:[0-9.]{16}|[0-9.]+[eE][-+]?[0-9]{3})")
# The regex scans at about 15 ns a byte, several times orjson's whole parse, so it runs only
# where a risky literal could be. Every byte becomes a class letter (digit or '.' -> d, e/E -> e,
# sign -> s, whitespace -> w, anything else -> _), and every match of `_RISKY` holds one of the
# signs below in that class text. Hex ids hold "e123" often (a random UUID about every other
# time), so a sign alone is not enough: each one is checked where its run of number-like bytes
# starts, which is the only place a match holding it can start.
_CLASSES = bytes(ord("d") if chr(i) in "0123456789." else ord("e") if chr(i) in "eE" else ord("s") if chr(i) in "+-"
                 else ord("w") if chr(i) in " \t\n\r\f\v" else ord("_") for i in range(256))
_RISK_SIGNS = (b"d" * 16, b"eddd", b"esddd")
_MAX_CHECKS = 256  # 100 events with UUID ids hold about 30 signs


def _risky(raw: bytes) -> bool:
    """True when some number literal might not survive a trip through a double (see above)."""
    classes = raw.translate(_CLASSES)
    checks = 0
    for sign in _RISK_SIGNS:
        at = classes.find(sign)
        while at >= 0:
            checks += 1
            if checks > _MAX_CHECKS:  # a body made of signs: one regex scan costs less than more checks
                return _RISKY.search(raw) is not None
            start = classes.rfind(b"_", 0, at)  # the byte before this run: a match would start there
            if start >= 0 and raw[start] in b":,[" and _RISKY.match(raw, start):
                return True
            end = classes.find(b"_", at)  # one check per run, so a long run costs one scan
            at = classes.find(sign, end) if end >= 0 else -1
    return False

# The longest plain decimal we will render. 1e999999 is a valid 8-byte literal whose plain form
# is a million digits: refuse it rather than let it eat memory.
MAX_DECIMAL_CHARS = 200


class NumberOutOfRange(ValueError):
    """A number whose exact plain decimal form is longer than MAX_DECIMAL_CHARS."""


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes | str):
    """Parse JSON, keeping every number's exact value (int, float when exact, else Decimal)."""
    raw = body.encode() if isinstance(body, str) else body
    if not _risky(raw):
        return orjson.loads(raw)
    value = json.loads(raw, parse_float=Decimal, parse_int=_int, parse_constant=_reject_constant)
    # The standard library accepts lone surrogate escapes ("\ud800") that no UTF-8 store can
    # hold; orjson refuses them, so one dump here makes both paths accept the same documents.
    try:
        dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError
        raise ValueError(str(exc)) from None
    return value


def _int(literal: str):
    """Integers orjson can write stay int; longer ones become Decimal (orjson stops at 64 bits)."""
    return int(literal) if len(literal) < 19 else Decimal(literal)


def _fragment(value):
    """orjson `default` hook: write a Decimal as its exact literal, whatever its range."""
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value) -> bytes:
    """Serialize to compact JSON bytes for storage; Decimals keep every digit as sent."""
    return orjson.dumps(value, default=_fragment)


def dumps_pretty(value) -> str:
    """Indented JSON text, for documents people read and review (mapping exports)."""
    return orjson.dumps(value, default=_fragment, option=orjson.OPT_INDENT_2).decode()


def decimal_text(number) -> str:
    """The plain decimal form of an int, float or Decimal: no exponent, no trailing zeros.

    `1.0`, `1.00` and `1` all become "1", so senders that write floats differently (Python
    `1.0`, JavaScript `1`) produce the same property string and the same property filter match.
    """
    if isinstance(number, int):
        text = str(number)
    else:
        if isinstance(number, float):
            text = repr(number)
            if "e" not in text and "n" not in text:  # "nan"/"inf" cannot come from JSON
                return _strip_fraction(text)
            number = Decimal(text)
        if not number.is_finite():
            raise NumberOutOfRange(f"{number} is not a finite number")
        if number.adjusted() > MAX_DECIMAL_CHARS or -number.adjusted() > MAX_DECIMAL_CHARS:
            raise NumberOutOfRange(f"number {number:.6e} is too large or too small to send exactly")
        text = _strip_fraction(format(number, "f"))
    if len(text) > MAX_DECIMAL_CHARS:
        raise NumberOutOfRange(f"number with {len(text)} digits is too long to send exactly")
    return text


def _strip_fraction(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        return "0"
    return text


def _canonical_numbers(value):
    """Copy a nested value with every non-integer number as its plain decimal literal."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # leaves, most of what arrays hold
        return value
    if isinstance(value, dict):
        return {k: _canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical_numbers(v) for v in value]
    if isinstance(value, (float, Decimal)):
        return orjson.Fragment(decimal_text(value))
    return value


def to_metronome_string(value) -> str | None:
    """Render one property value as the string Metronome stores; None means "leave it out".

    - strings stay as they are;
    - booleans become "true" / "false";
    - numbers become their exact plain decimal (see decimal_text);
    - objects and arrays become compact JSON, with numbers written the same way;
    - null is left out: Metronome has no null, and the string "null" would pass an
      `exists: true` property filter and fail to aggregate.
    """
    kind = type(value)  # exact kinds first: this runs for every property of every event
    if kind is str:
        return value
    if kind is int or kind is float:
        return decimal_text(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return decimal_text(value)
    return orjson.dumps(_canonical_numbers(value)).decode()
