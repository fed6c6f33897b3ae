"""What every exchange with Metronome's API shares: who we say we are, and how long it asks us to wait.

At the bottom of the layers, beside `errors`: the worker's sends, the billing client and `check`
all use it.
"""
from __future__ import annotations

from email.utils import parsedate_to_datetime

from destination import __version__

USER_AGENT = f"metronome-destination/{__version__}"


def retry_after_seconds(headers: dict, now_s: float) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `Retry-After` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        if "retry-after" in lowered:
            value = lowered["retry-after"].strip()
            if value.replace(".", "", 1).isdigit():
                return float(value)
            return max(0.0, parsedate_to_datetime(value).timestamp() - now_s)
    except (ValueError, TypeError, OverflowError):
        return None
    return None
