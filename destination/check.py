"""`metronome-destination check`: is this deployment able to work? Each check says what it found.

Settings and mappings are checked by loading them; the database by connecting and reading the
schema version; the Metronome token with `POST /v1/ingest []`, which ingests nothing: Metronome
answers 400 (too few events) to a good token and 401/403 to a bad one.
"""
from __future__ import annotations

from dataclasses import dataclass

import requests

from destination import USER_AGENT
from destination.errors import ConfigError
from destination.mapping.mapping_set import load_mapping_set
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
    return results


def check_mappings(settings) -> Result:
    try:
        mapping_set = load_mapping_set(settings.mappings_path)
    except ConfigError as exc:
        return Result("mappings", False, str(exc))
    return Result("mappings", True, f"{settings.mappings_path}: {len(mapping_set.mappings)} mapping(s), version {mapping_set.version}")


def check_database(settings) -> Result:
    where = "Postgres (DATABASE_URL)" if settings.database_url else f"SQLite at {settings.sqlite_path}"
    try:
        if settings.database_url:  # a direct connection reports the server's own reason, not a pool timeout
            import psycopg

            psycopg.connect(settings.database_url, connect_timeout=5).close()
        queue = open_queue(settings, migrate=False)
    except Exception as exc:  # connection refused, bad credentials, unreadable file: all one verdict
        return Result("database", False, f"{where}: cannot connect: {type(exc).__name__}: {exc}")
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
        return Result("metronome token", False, f"{base_url} unreachable: {type(exc).__name__}")
    if response.status_code == 400:
        return Result("metronome token", True, f"{base_url} accepted the token (400 to an empty batch, as expected)")
    if response.status_code in (401, 403):
        return Result("metronome token", False, f"{base_url} refused the token with {response.status_code}: "
                                                "set METRONOME_API_TOKEN to a valid Metronome API token")
    return Result("metronome token", False, f"{base_url} answered {response.status_code}; expected 400 for an empty "
                                            "batch. Is METRONOME_BASE_URL right?")
