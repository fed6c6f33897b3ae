"""What every process does first: logging, the metrics directory, and warnings about the platform."""
from __future__ import annotations

import gc
import logging
import os
import tempfile

from . import logs

log = logging.getLogger("destination.startup")
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_metrics_dir() -> str:
    """Share counters between processes through files (a fresh directory unless the operator chose one).

    Must run before prometheus_client is imported; a directory the operator set is never wiped,
    because counters only ever grow and another process may already be writing there.
    """
    if not os.environ.get(METRICS_DIR_ENV):
        os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="destination-metrics-")
    ensure_metrics_dir()
    return os.environ[METRICS_DIR_ENV]


def ensure_metrics_dir() -> None:
    """prometheus-client opens its files as metrics are defined, so an operator's directory must exist first."""
    if os.environ.get(METRICS_DIR_ENV):
        os.makedirs(os.environ[METRICS_DIR_ENV], exist_ok=True)


def platform_warnings(settings, env) -> list[str]:
    """Problems that would not stop the service but could lose data where it runs."""
    warnings = []
    if env.get("DYNO") and not settings.database_url:
        warnings.append(
            "DATABASE_URL is not set on a PaaS dyno: the SQLite outbox lives on the dyno's disk, which is wiped "
            "on every restart and deploy, so ACCEPTED EVENTS CAN BE LOST. Attach Postgres (DATABASE_URL)."
        )
    if env.get("DYNO") and settings.sandbox:
        warnings.append("SANDBOX is on: events go to the built-in sandbox, never to Metronome.")
    return warnings


def settled() -> None:
    """Call once a process has loaded everything it keeps (app, mappings, connections).

    Those objects live as long as the process, yet every full garbage collection walks them:
    13.5 ms for a started web process's 39,000 objects. Freezing moves them out of the
    collector's sight; request garbage is still collected as before."""
    gc.freeze()


def prepare(settings, role: str, env=None) -> None:
    """Configure redacting logs and say loudly what could lose data."""
    env = os.environ if env is None else env
    logs.configure(settings.log_format, settings.log_level, logs.secrets_of(settings))
    for warning in platform_warnings(settings, env):
        log.warning(warning, extra={"fields": {"role": role, "data_at_risk": True}})
