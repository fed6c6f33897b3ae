"""Where processes share their Prometheus counters: a directory named by PROMETHEUS_MULTIPROC_DIR.

This module imports nothing from prometheus_client, because the directory must be chosen before
prometheus_client is first imported (it reads the variable then).
"""
from __future__ import annotations

import os
import tempfile

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
