"""`metronome-destination check`: is this deployment able to work? Each check says what it found.

Settings and mappings are checked by loading them; the database by connecting and reading the
schema version; the Metronome token with `POST /v1/ingest []`, which ingests nothing: Metronome
answers 400 (too few events) to a good token and 401/403 to a bad one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

from destination.billing.client import MetronomeClient, MetronomeUnavailable
from destination.billing.matcher import Metric
from destination.errors import ConfigError
from destination.mapping.mapping_set import load_mapping_set
from destination.metronome import USER_AGENT
from destination.payload import exact
from destination.queue import migrations
from destination.queue.connect import open_queue


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str


def run_checks(settings, *, token: bool = True) -> list[Result]:
    results = [check_mappings(settings), check_database(settings)]
    if token:
        results.append(check_token(settings.metronome_base_url, settings.metronome_api_token,
                                   settings.connect_timeout_seconds))
        if results[-1].ok and settings.billing_check != "OFF":
            results += check_billing(settings)
    return results


def check_billing(settings) -> list[Result]:
    """Which billable metrics each enabled mapping can feed; mappings that feed none; metrics fed by none."""
    client = MetronomeClient(settings.metronome_base_url, settings.metronome_api_token,
                             timeout_s=settings.read_timeout_seconds, attempts=1)
    try:
        metrics = [Metric.from_api(m) for m in client.billable_metrics() if not m.get("archived_at")]
        document = exact.loads(Path(settings.mappings_path).read_bytes())
    except (MetronomeUnavailable, OSError, ValueError) as exc:
        return [Result("billing", False, f"cannot read the billable metrics or the mappings: {exc}")]
    results, fed, open_ended = [], set(), []
    for mapping in (m for m in document["mappings"] if m.get("enabled", True)):
        types = output_event_types(mapping)
        if types is None:
            open_ended.append(mapping["name"])
            results.append(Result(f"billing: {mapping['name']}", True, "event_type comes from each event, so which "
                                  "metric it feeds is judged per event (the 200 answer and the admin preview say)"))
            continue
        feeds = [m for m in metrics if any(_takes(m, t) for t in types)]
        fed.update(m.id for m in feeds)
        results.append(Result(f"billing: {mapping['name']}", bool(feeds),
                              f"event_type {sorted(types)} feeds {', '.join(repr(m.name) for m in feeds)}" if feeds else
                              f"event_type {sorted(types)} feeds no billable metric: its usage would bill nothing"))
    unfed = [m.name for m in metrics if m.id not in fed and not m.sql]
    if unfed:
        where = (f"fed only, if at all, by {open_ended}, whose event_type comes from each event" if open_ended
                 else "fed by no mapping here")
        results.append(Result("billing: metrics", True, f"{where}: {unfed}"))
    return results


def output_event_types(mapping: dict) -> set[str] | None:
    """The event types a mapping can produce, when its document fixes them; None when each event decides.

    A literal fixes one. A path fixes them only where the trigger pins that same path to values."""
    source = mapping["fields"]["event_type"]
    if "literal" in source:
        return {str(source["literal"])}
    path = source.get("path")
    pinned = _pinned(mapping.get("trigger", {}), path) if isinstance(path, str) and not source.get("transforms") else None
    return pinned


def _pinned(condition: dict, path: str) -> set[str] | None:
    if "all" in condition:
        for part in condition["all"]:
            found = _pinned(part, path)
            if found is not None:
                return found
        return None
    if "any" in condition:
        parts = [_pinned(part, path) for part in condition["any"]]
        return set().union(*parts) if parts and all(p is not None for p in parts) else None
    if condition.get("path") != path:
        return None
    if "equals" in condition:
        return {str(condition["equals"])}
    if "in" in condition:
        return {str(v) for v in condition["in"]}
    return None


def _takes(metric: Metric, event_type: str) -> bool:
    return not metric.sql and event_type not in metric.not_event_types and (
        metric.event_types is None or event_type in metric.event_types)


def check_mappings(settings) -> Result:
    try:
        mapping_set = load_mapping_set(settings.mappings_path)
    except ConfigError as exc:
        return Result("mappings", False, f"{exc} (set MAPPINGS_PATH, or fix the file)")
    return Result("mappings", True, f"{settings.mappings_path}: {len(mapping_set.mappings)} mapping(s), version {mapping_set.version}")


def check_database(settings) -> Result:
    where = "Postgres (DATABASE_URL)" if settings.database_url else f"SQLite at {settings.sqlite_path}"
    if not settings.database_url and not Path(settings.sqlite_path).exists():  # a check creates nothing
        return Result("database", False, f"{where}: no database there yet; `metronome-destination migrate` or `serve` "
                                         "creates it (SQLITE_PATH, relative to the working directory)")
    try:
        if settings.database_url:  # a direct connection reports the server's own reason, not a pool timeout
            import psycopg

            psycopg.connect(settings.database_url, connect_timeout=5).close()
        queue = open_queue(settings, migrate=False)
    except Exception as exc:  # connection refused, bad credentials, unreadable file: all one verdict
        setting = "DATABASE_URL" if settings.database_url else "SQLITE_PATH"
        return Result("database", False, f"{where}: cannot connect: {type(exc).__name__}: {exc} (check {setting})")
    try:
        version = queue.schema_version()
        live = queue.latest_mapping_version()
    except Exception:  # no schema_migrations table yet
        version, live = 0, None
    finally:
        queue.close()
    latest = migrations.latest("postgres" if settings.database_url else "sqlite")
    if version < latest:
        return Result("database", False, f"{where}: schema at version {version} of {latest}; run `metronome-destination migrate`")
    mappings = f"live mappings v{live}" if live else "no mappings stored yet (seeded from MAPPINGS_PATH at first start)"
    return Result("database", True, f"{where}: reachable, schema at version {version}, {mappings}")


def check_token(base_url: str, token: str, timeout_s: float) -> Result:
    try:
        response = requests.post(f"{base_url}/v1/ingest", data=b"[]", timeout=(timeout_s, 30), headers={
            # The empty batch is refused on purpose; naming the probe keeps it apart from the worker's
            # batches in Metronome's logs (and in the tests' spec check of what the worker sends).
            "Authorization": f"Bearer {token}", "Content-Type": "application/json", "User-Agent": f"{USER_AGENT} (check)"})
    except requests.RequestException as exc:
        return Result("metronome token", False, f"{base_url} unreachable: {type(exc).__name__} (check METRONOME_BASE_URL "
                                                "and the network; --skip-token checks the rest offline)")
    if response.status_code == 400:
        return Result("metronome token", True, f"{base_url} accepted the token (400 to an empty batch, as expected)")
    if response.status_code in (401, 403):
        return Result("metronome token", False, f"{base_url} refused the token with {response.status_code}: "
                                                "set METRONOME_API_TOKEN to a valid Metronome API token")
    return Result("metronome token", False, f"{base_url} answered {response.status_code}; expected 400 for an empty "
                                            "batch. Is METRONOME_BASE_URL right?")
