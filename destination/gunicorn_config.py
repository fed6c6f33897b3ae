"""gunicorn settings from the environment: `gunicorn -c python:destination.gunicorn_config destination.wsgi:app`.

WEB_CONCURRENCY, WEB_THREADS, WEB_TIMEOUT, HOST and PORT (see the README's settings table) are
read and checked like every other setting; a bad one stops the master with a message.
"""
import os
import sys

from destination.ops.metrics_dir import use_metrics_dir

use_metrics_dir()  # before anything imports prometheus_client, so every process shares counters

from destination.config import load_settings  # noqa: E402
from destination.errors import ConfigError  # noqa: E402
from destination.serve import gunicorn_options  # noqa: E402
from destination.startup import prepare  # noqa: E402

try:
    _settings = load_settings()
except ConfigError as exc:
    print(f"metronome-destination: {exc}", file=sys.stderr)
    sys.exit(2)
prepare(_settings, "web", os.environ)
globals().update(gunicorn_options(_settings))
