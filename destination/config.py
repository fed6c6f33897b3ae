"""Every setting, declared once: environment variable, `--flag`, default, check and help.

`load_settings` reads the environment, applies command-line overrides and checks everything
before the service starts; a bad value stops startup with a message naming the variable.
"""
from __future__ import annotations

import argparse
import importlib.resources
import os
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlparse

from destination.errors import ConfigError


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _number_range(kind: type, low, high) -> Callable[[str], object]:
    """A parser for an int or float setting that must lie in [low, high]."""
    def parse(text: str):
        value = kind(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    return parse


def _http_url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("must be an http(s) URL such as https://api.metronome.com")
    return text.rstrip("/")


def _postgres_url(text: str) -> str:
    if not text:
        return ""
    if urlparse(text).scheme not in ("postgres", "postgresql"):
        raise ValueError("must be a postgres:// or postgresql:// URL")
    return text


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.upper() not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text.upper()
    return parse


def _shipped_mappings_or_path(text: str) -> str:
    """The mapping file: the given path, or the default mappings shipped inside the package,
    found through importlib.resources so an installed service has them wherever it runs."""
    if text:
        return text
    return str(importlib.resources.files("destination") / "mappings" / "default.json")


def _labelled_secrets(text: str) -> dict:
    """`label:secret,label2:secret2` -> {secret: label}; a bare secret gets the label 'default'."""
    keys = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, _, key = item.rpartition(":")
        if not key:
            raise ValueError("each entry must be label:key")
        keys[key] = label or "default"
    return keys


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    parse: Callable[[str], object]
    default: str | None
    help: str
    secret: bool = False


SETTINGS = [
    Setting("metronome_api_token", "METRONOME_API_TOKEN", str, None, "Metronome API token (required unless --sandbox).", secret=True),
    Setting("metronome_base_url", "METRONOME_BASE_URL", _http_url, "https://api.metronome.com", "Metronome API base URL."),
    Setting("database_url", "DATABASE_URL", _postgres_url, "", "Postgres URL; when set it replaces SQLite so processes can share one queue.", secret=True),
    Setting("database_pool_size", "DATABASE_POOL_SIZE", _number_range(int, 1, 200), "10", "Postgres connections per process (web threads + delivery)."),
    Setting("sqlite_path", "SQLITE_PATH", str, "data/destination.sqlite3", "SQLite database file (the embedded default store); a relative path is relative to the working directory, where `migrate` or `serve` creates it."),
    Setting("sqlite_synchronous", "SQLITE_SYNCHRONOUS", _choice("FULL", "NORMAL"), "FULL", "FULL fsyncs every commit (survives power loss); NORMAL survives process crashes only."),
    Setting("mappings_path", "MAPPINGS_PATH", _shipped_mappings_or_path, "", "Mapping file to load; unset, the shipped default (`default.json` in the installed package's `destination/mappings/`). A relative path is relative to the working directory."),
    Setting("host", "HOST", str, "127.0.0.1", "Address the web server listens on (the Procfile sets 0.0.0.0)."),
    Setting("port", "PORT", _number_range(int, 1, 65535), "8080", "Port the web server listens on (set by the platform)."),
    Setting("write_keys", "WRITE_KEYS", _labelled_secrets, "", "Accepted write keys as label:key, comma-separated.", secret=True),
    Setting("webhook_secrets", "WEBHOOK_SECRETS", _labelled_secrets, "", "Secrets for /v1/webhook as label:secret, comma-separated: the X-Signature HMAC key, or the static header's value. Several allow rotation.", secret=True),
    Setting("webhook_secret_header", "WEBHOOK_SECRET_HEADER", str, "X-Webhook-Secret", "Header a sender that cannot sign (RudderStack, Jitsu) puts one of WEBHOOK_SECRETS in."),
    Setting("allow_unauthenticated", "ALLOW_UNAUTHENTICATED", _bool, "false", "Accept events with no write key or webhook secret at all (only for a private network). Off by default."),
    Setting("max_request_bytes", "MAX_REQUEST_BYTES", _number_range(int, 1024, 100 * 2**20), str(500 * 1024), "Largest request body, after gunzip."),
    Setting("max_event_bytes", "MAX_EVENT_BYTES", _number_range(int, 256, 10 * 2**20), str(32 * 1024), "Largest single event."),
    Setting("max_batch_events", "MAX_BATCH_EVENTS", _number_range(int, 1, 100_000), "2500", "Most events in one request."),
    Setting("batch_max_events", "BATCH_MAX_EVENTS", _number_range(int, 1, 100), "100", "Events per Metronome request (Metronome allows 100)."),
    Setting("batch_max_bytes", "BATCH_MAX_BYTES", _number_range(int, 1024, 5 * 2**20), str(512 * 1024), "Bytes per Metronome request before gzip."),
    Setting("lease_seconds", "LEASE_SECONDS", _number_range(float, 0.5, 3600), "60", "How long a claimed batch is reserved before another worker may take it."),
    Setting("claim_size", "CLAIM_SIZE", _number_range(int, 1, 10_000), "1000", "Events a worker claims per round."),
    Setting("sends_in_flight", "SENDS_IN_FLIGHT", _number_range(int, 1, 256), "4", "Requests a worker starts with in flight to Metronome, so round trips overlap; the window then adapts to Metronome's answers and round trips."),
    Setting("max_sends_in_flight", "MAX_SENDS_IN_FLIGHT", _number_range(int, 1, 256), "64", "The most requests a worker's adaptive window may keep in flight."),
    Setting("fixed_sends_in_flight", "FIXED_SENDS_IN_FLIGHT", _bool, "false", "Keep SENDS_IN_FLIGHT fixed, instead of growing the window while Metronome keeps up and cutting it on 429s, 5xx, timeouts and slower answers."),
    Setting("poll_interval_seconds", "POLL_INTERVAL_SECONDS", _number_range(float, 0.01, 60), "0.5", "Worker wait when the queue is empty."),
    Setting("retry_base_seconds", "RETRY_BASE_SECONDS", _number_range(float, 0.001, 60), "0.5", "First retry delay ceiling; doubles per attempt (full jitter)."),
    Setting("retry_cap_seconds", "RETRY_CAP_SECONDS", _number_range(float, 0.01, 86400), "300", "Longest retry delay."),
    Setting("halt_probe_seconds", "HALT_PROBE_SECONDS", _number_range(float, 0.01, 3600), "30", "After a 401/403, how often to try again."),
    Setting("connect_timeout_seconds", "CONNECT_TIMEOUT_SECONDS", _number_range(float, 0.1, 120), "5", "Metronome connect timeout."),
    Setting("read_timeout_seconds", "READ_TIMEOUT_SECONDS", _number_range(float, 0.1, 600), "30", "Metronome read timeout."),
    Setting("gzip_level", "GZIP_LEVEL", _number_range(int, 0, 9), "1", "gzip level for Metronome requests (0 sends plain JSON)."),
    Setting("delivery_log_days", "DELIVERY_LOG_DAYS", _number_range(float, 0, 3650), "7", "Keep each delivery attempt (payload and Metronome's answer) this many days; 0 keeps none."
            " The log is about a third of a worker's CPU (`bench/delivery.py`)."),
    Setting("admin_tokens", "ADMIN_TOKENS", _labelled_secrets, "", "Bearer tokens for /admin as label:token, comma-separated (several allow rotation).", secret=True),
    Setting("ready_max_pending_age_seconds", "READY_MAX_PENDING_AGE_SECONDS", _number_range(float, 1, 30 * 86400), "900", "/readyz fails when the oldest queued event is older than this (delivery stalled)."),
    Setting("web_concurrency", "WEB_CONCURRENCY", _number_range(int, 1, 64), "2", "gunicorn worker processes."),
    Setting("web_threads", "WEB_THREADS", _number_range(int, 1, 256), "8", "Threads per gunicorn worker."),
    Setting("web_timeout", "WEB_TIMEOUT", _number_range(int, 5, 600), "30", "gunicorn worker timeout in seconds."),
    Setting("request_read_timeout_seconds", "REQUEST_READ_TIMEOUT_SECONDS", _number_range(float, 0.5, 300), "10", "A request (headers and body) must arrive whole within this, or it is answered 408: a slow client cannot hold a thread."),
    Setting("deliver_in_web", "DELIVER_IN_WEB", _bool, "false", "Also run a delivery thread in every web process (`serve` turns this on)."),
    Setting("shutdown_grace_seconds", "SHUTDOWN_GRACE_SECONDS", _number_range(float, 0, 120), "20", "On SIGTERM, how long the requests in flight may finish before their events are released."),
    Setting("log_format", "LOG_FORMAT", _choice("JSON", "TEXT"), "JSON", "JSON lines (with request ids) or plain text."),
    Setting("log_level", "LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "Lowest level logged."),
    Setting("billing_check", "BILLING_CHECK", _choice("OFF", "WARN", "HOLD"), "WARN", "Check each usage event against Metronome's billable metrics and customers at accept: `warn` reports it, `hold` also sets aside usage that would bill nothing, `off` skips it."),
    Setting("billing_catalog_refresh_seconds", "BILLING_CATALOG_REFRESH_SECONDS", _number_range(float, 1, 86400), "300", "How often the worker re-reads the billable metrics from Metronome."),
    Setting("billing_customer_lookups_per_minute", "BILLING_CUSTOMER_LOOKUPS_PER_MINUTE", _number_range(int, 0, 6000), "60", "At most this many customer ids looked up in Metronome a minute."),
    Setting("billing_customer_hit_seconds", "BILLING_CUSTOMER_HIT_SECONDS", _number_range(float, 1, 30 * 86400), "86400", "How long a customer id found in Metronome is trusted."),
    Setting("billing_customer_miss_seconds", "BILLING_CUSTOMER_MISS_SECONDS", _number_range(float, 1, 86400), "60", "How soon a customer id not found is looked up again (its alias may be added)."),
    Setting("billing_verify_sample", "BILLING_VERIFY_SAMPLE", _number_range(int, 0, 100), "10", "After delivery, at most this many delivered events are checked with Metronome's events search each interval (0: none). Events search is heavily rate-limited."),
    Setting("billing_verify_interval_seconds", "BILLING_VERIFY_INTERVAL_SECONDS", _number_range(float, 0.1, 86400), "60", "How often delivered events are sampled and checked."),
    Setting("max_property_value_bytes", "MAX_PROPERTY_VALUE_BYTES", _number_range(int, 1, 1_000_000), "256", "The longest property value Metronome accepts, as production users report; longer is unbillable."),
    Setting("sandbox", "SANDBOX", _bool, "false", "Deliver to the built-in Metronome sandbox instead of Metronome."),
    Setting("sandbox_port", "SANDBOX_PORT", _number_range(int, 0, 65535), "8090", "Port of the built-in sandbox."),
    Setting("sandbox_seed", "SANDBOX_SEED", str, "guide", "What the built-in sandbox starts with: `guide` (Metronome's testing guide: a customer, metrics, a rate card), a seed file's path, or `none`."),
    Setting("sandbox_max_property_bytes", "SANDBOX_MAX_PROPERTY_BYTES", _number_range(int, 1, 1_000_000), "256", "The sandbox refuses a batch holding a longer property value, as Metronome does."),
]


@dataclass(frozen=True)
class Settings:
    values: dict = field(default_factory=dict)

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes) -> "Settings":
        return Settings({**self.values, **changes})


def add_flags(parser: argparse.ArgumentParser, names: list[str] | None = None) -> None:
    """Add a `--flag` per setting; each overrides its environment variable."""
    for setting in SETTINGS:
        if names is None or setting.name in names:
            flag = "--" + setting.name.replace("_", "-")
            # A secret's value is never shown; one with no default says so instead of "(secret)".
            default = "none" if not setting.default else "(secret)" if setting.secret else setting.default
            text = f"{setting.help} Env {setting.env}; default {default!s}."
            if setting.parse is _bool:  # a switch: --sandbox, --allow-unauthenticated
                parser.add_argument(flag, dest=setting.name, default=None, action="store_const", const="true", help=text)
            else:
                parser.add_argument(flag, dest=setting.name, default=None, metavar=setting.env, help=text)


def load_settings(env: dict | None = None, overrides: dict | None = None, need_token: bool = True) -> Settings:
    """Read, parse and check every setting; raise ConfigError naming each bad one.

    `need_token=False` for commands that never call Metronome (`wait`)."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    values, problems = {}, []
    for setting in SETTINGS:
        text = overrides.get(setting.name, env.get(setting.env, setting.default))
        if isinstance(text, bool):
            text = str(text)
        if text is None:
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(str(text))
        except ValueError as exc:
            shown = "(hidden)" if setting.secret else repr(text)
            problems.append(f"{setting.env}={shown}: {exc}")
    if need_token and not problems and not values["sandbox"] and not values["metronome_api_token"]:
        problems.append("METRONOME_API_TOKEN: required (or run with --sandbox to use the built-in sandbox)")
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    return Settings(values)


def markdown_table() -> str:
    """The README's settings table, generated so it cannot drift from the code."""
    rows = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        flag = "--" + setting.name.replace("_", "-")
        rows.append(f"| `{setting.env}` | `{flag}` | `{setting.default or '(none)'}` | {setting.help} |")
    return "\n".join(rows)
