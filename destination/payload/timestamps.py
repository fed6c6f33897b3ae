"""Read the many timestamp forms senders use and write the one form Metronome wants.

Accepted: ISO 8601 / RFC 3339 strings (`Z`, `+00:00`, `+0000`, any fraction length, a space for
`T`, a bare date), and epoch numbers or digit strings. Epoch rule: an absolute value below 10^11 is
seconds, anything else milliseconds. 10^11 seconds is the year 5138, while 10^11 milliseconds is
1973, so no plausible time is ambiguous. A time without an offset is taken as UTC.
Written: RFC 3339 UTC with milliseconds, `2026-11-20T12:30:00.123Z`. Sub-millisecond digits are
truncated, never rounded, so an event never moves into the next billing window.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from destination.errors import EventRefused

EPOCH_MILLISECONDS_FROM = 10**11
_UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
# fromisoformat takes at most 6 fraction digits in some forms; nanoseconds are common in Go/JS.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+", re.ASCII)
_OFFSET_NO_COLON = re.compile(r"([+-]\d\d)(\d\d)$", re.ASCII)
_DIGITS = re.compile(r"-?\d+(\.\d+)?", re.ASCII)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_MS = 86_400_000
_DAY_PREFIXES: dict[int, str] = {}  # day number -> "YYYY-MM-DDT"; events cluster on a few days
# Text already read -> (epoch ms, RFC 3339 text). The events of a batch share a `sentAt` and
# often a time, and each timestamp is read twice (skew correction, then validation): about
# three parses an event, where one lookup does. Cleared when full, so its size stays bounded.
_KNOWN: dict[str, tuple[int, str]] = {}
_KNOWN_MAX = 4096


def parse_timestamp(value) -> datetime:
    """Return an aware UTC datetime, or raise EventRefused('invalid_timestamp')."""
    if isinstance(value, bool) or value is None:
        raise EventRefused("invalid_timestamp", f"timestamp {value!r} is not a time")
    if isinstance(value, (int, float, Decimal)):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise EventRefused("invalid_timestamp", f"timestamp must be a string or number, not {type(value).__name__}")
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return _from_epoch(Decimal(text))
    return _from_iso(text, value)


def _from_epoch(number) -> datetime:
    seconds = number if abs(number) < EPOCH_MILLISECONDS_FROM else number / 1000
    try:
        return EPOCH + timedelta(microseconds=int(Decimal(str(seconds)) * 1_000_000))
    except (OverflowError, ArithmeticError, ValueError):
        raise EventRefused("invalid_timestamp", f"epoch timestamp {number} is out of range") from None


def _from_iso(text: str, original: str) -> datetime:
    try:  # the common RFC 3339 forms parse directly (fractions past 6 digits are truncated)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return _from_iso_variant(text, original)
    return moment.replace(tzinfo=_UTC) if moment.tzinfo is None else moment.astimezone(_UTC)


def _from_iso_variant(text: str, original: str) -> datetime:
    """The forms fromisoformat refuses as written: long fractions with offsets, `+0000`, ..."""
    candidate = text
    if candidate[-1:] in ("z", "Z"):
        candidate = candidate[:-1] + "+00:00"
    candidate = _LONG_FRACTION.sub(r"\1", _OFFSET_NO_COLON.sub(r"\1:\2", candidate))
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        raise EventRefused("invalid_timestamp", f"timestamp {original!r} is not ISO 8601 / RFC 3339 or epoch") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_UTC)
    return moment.astimezone(_UTC)


def to_rfc3339(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with milliseconds."""
    return format_ms(epoch_ms(moment))


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, sub-milliseconds truncated; integer arithmetic, so exact."""
    utc = moment.astimezone(_UTC) if moment.tzinfo is not _UTC else moment
    return ((utc.toordinal() - _EPOCH_ORDINAL) * _DAY_MS + ((utc.hour * 60 + utc.minute) * 60 + utc.second) * 1000
            + utc.microsecond // 1000)


def rfc3339_ms(value) -> tuple[int, str]:
    """(epoch milliseconds, RFC 3339 text) of any accepted timestamp; raise EventRefused.

    The hot path: most senders already write `2026-11-20T12:30:00.123Z`, which is its own
    RFC 3339 text, so it is parsed once in C and returned as given. The positions checked rule
    out the other forms fromisoformat reads at that length (week dates, a space for `T`)."""
    if type(value) is not str:
        return _read(value)
    known = _KNOWN.get(value)
    if known is None:
        known = _remember(value, _read_text(value))
    return known


def _read_text(value: str) -> tuple[int, str]:
    if (len(value) == 24 and value[23] == "Z" and value[19] == "." and value[10] == "T"
            and value[4] == "-" and value[7] == "-" and value[13] == ":"):
        try:
            return epoch_ms(datetime.fromisoformat(value)), value
        except ValueError:
            pass  # the general parser gives the reason
    return _read(value)


def _read(value) -> tuple[int, str]:
    ms = epoch_ms(parse_timestamp(value))
    return ms, format_ms(ms)


def _remember(text: str, read: tuple[int, str]) -> tuple[int, str]:
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[text] = read
    return read


def format_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds; the date part comes from a small cache."""
    day, rest = divmod(ms, _DAY_MS)
    prefix = _DAY_PREFIXES.get(day)
    if prefix is None:
        if len(_DAY_PREFIXES) > 1000:
            _DAY_PREFIXES.clear()
        prefix = _DAY_PREFIXES[day] = date.fromordinal(day + _EPOCH_ORDINAL).isoformat() + "T"
    seconds, millis = divmod(rest, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def skew_corrected(original, sent_at, received_ms: int, original_field: str = "timestamp") -> str:
    """Segment's clock-skew rule for events from client SDKs: receivedAt - (sentAt - originalTimestamp).

    A device whose clock is off by an hour stamps both `timestamp` and `sentAt` an hour off; the
    difference between them is how long the event waited on the device, which is the only part
    we trust. Without both times we use the event's own time, and without that the receipt time.
    Returns RFC 3339 text. A time that is there but is not a time (`"garbage"`, `""`, `true`,
    `1e20`) raises EventRefused naming its field: missing is not the same as invalid, and an
    invalid one billed at the receipt time would be a guess.
    """
    own, sent = _read_or_none(original, original_field), _read_or_none(sent_at, "sentAt")
    if own is None:
        return format_ms(received_ms)
    corrected = own[0] if sent is None else received_ms - (sent[0] - own[0])
    if corrected == own[0]:
        return own[1]
    try:
        text = format_ms(corrected)
    except (ValueError, OverflowError):  # the times are millennia apart: no year to write; keep the event's own
        return own[1]
    _remember(text, (corrected, text))  # validation reads it next
    return text


def _read_or_none(value, field: str) -> tuple[int, str] | None:
    if value is None:
        return None
    try:
        return rfc3339_ms(value)
    except EventRefused as exc:
        raise EventRefused("invalid_timestamp", f"{field}: {exc.message}") from None
