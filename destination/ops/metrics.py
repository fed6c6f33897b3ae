"""Prometheus metrics: counters for the accept and delivery paths, gauges read from the store.

Under gunicorn several processes serve /metrics, so prometheus-client runs in multiprocess mode:
each process writes its counters to files in PROMETHEUS_MULTIPROC_DIR and a scrape sums them.
`metrics_dir.use_metrics_dir` must therefore run before this module is first imported. Worker
processes on the same machine that share the directory are included in the web's /metrics. The
queue gauges are read from the shared database at scrape time, so they are right for the whole
deployment whichever process answers.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from destination.billing import catalog as billing_catalog
from destination.billing import verify as billing_verify
from destination.ops.metrics_dir import METRICS_DIR_ENV as ENV
from destination.queue.halt import halt_state

RECEIVED = Counter("destination_events_received", "Events in authenticated, well-formed requests.", ["source"])
ACCEPTED = Counter("destination_events_accepted", "Events queued for delivery (at least one usage event).", ["source"])
FILTERED = Counter("destination_events_filtered", "Events no enabled mapping subscribes to.", ["source"])
REFUSED = Counter("destination_events_refused", "Events refused at receive and kept as dead letters, by reason.", ["reason"])
REQUESTS_REFUSED = Counter("destination_requests_refused", "Whole requests refused (nothing stored), by code.", ["code"])
DEAD_LETTERED = Counter("destination_events_dead_lettered", "Usage events moved to the dead-letter store, by stage and reason.", ["stage", "reason"])
DELIVERED = Counter("destination_events_delivered", "Usage events Metronome accepted.")
RETRIES = Counter("destination_delivery_retries", "Batches put back for a later retry, by Metronome status.", ["status"])
EVENTS_RETRIED = Counter("destination_events_retried", "Usage events put back for a later retry, by Metronome status.", ["status"])
RESPONSES = Counter("destination_metronome_responses", "Answers from Metronome's /v1/ingest, by status.", ["status"])
LATENCY = Histogram("destination_delivery_latency_seconds", "From receipt to Metronome's 200, per usage event.",
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
UNBILLABLE = Counter("destination_events_unbillable", "Accepted usage events that will bill nothing (or may not), by reason "
                     "and event_type.", ["reason", "event_type"])
EVENT_TYPE_LABELS = 200  # event_type comes from senders: past this many distinct values, the rest count as "other"
SEND_WINDOW = Gauge("destination_send_window", "Requests to Metronome each delivering process may have in flight "
                    "now (adaptive concurrency), summed over live processes.", multiprocess_mode="livesum")
WINDOW_CUTS = Counter("destination_send_window_cuts", "Times the send window was cut, by reason: 429, 5xx, timeout, "
                      "network, or rtt (Metronome's round trip grew).", ["reason"])
REQUEST_SECONDS = Histogram("destination_metronome_request_seconds", "Duration of one /v1/ingest request.",
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


def record_received(source: str, counts: dict, refusal_codes: list[str]) -> None:
    received, accepted, filtered = _per_source(source)
    received.inc(counts["accepted"] + counts["filtered"] + counts["refused"])
    accepted.inc(counts["accepted"])
    filtered.inc(counts["filtered"])
    for code in refusal_codes:
        REFUSED.labels(code).inc()
        DEAD_LETTERED.labels("receive", code).inc()


_SOURCE_CHILDREN: dict[str, tuple] = {}


def _per_source(source: str) -> tuple:
    """The three per-source counters, looked up once per source: `labels()` checks and locks on
    every call, a measurable share of a single-event request. Sources are the configured labels."""
    children = _SOURCE_CHILDREN.get(source)
    if children is None:
        children = _SOURCE_CHILDREN[source] = (RECEIVED.labels(source), ACCEPTED.labels(source), FILTERED.labels(source))
    return children


_EVENT_TYPES: set[str] = set()


def record_unbillable(problems: list[tuple[str, str]]) -> None:
    """Count (reason, event_type) pairs, with event_type bounded so a sender cannot grow /metrics without end."""
    for reason, event_type in problems:
        if event_type not in _EVENT_TYPES:
            if len(_EVENT_TYPES) >= EVENT_TYPE_LABELS:
                event_type = "other"
            else:
                _EVENT_TYPES.add(event_type)
        UNBILLABLE.labels(reason, event_type).inc()


def record_response(status: int | None, seconds: float) -> None:
    RESPONSES.labels(str(status or "network_error")).inc()
    REQUEST_SECONDS.observe(seconds)


def record_delivered(acked: int, received_at_ms: list[int], now_ms: int) -> None:
    DELIVERED.inc(acked)
    for received in received_at_ms:
        LATENCY.observe(max(0, now_ms - received) / 1000)


class StoreCollector:
    """Gauges read from the database at scrape time: one answer for the whole deployment."""

    def __init__(self, queue, now_ms):
        self.queue = queue
        self.now_ms = now_ms

    def collect(self):
        oldest = self.queue.oldest_pending_ms()
        age = max(0, self.now_ms - oldest) / 1000 if oldest else 0
        catalog = billing_catalog.parse(self.queue.get_state(billing_catalog.KEY))
        catalog_age = (self.now_ms - catalog.refreshed_ms) / 1000 if catalog else -1
        for name, text, value in (
            ("destination_queue_depth", "Usage events waiting for delivery.", self.queue.depth()),
            ("destination_oldest_pending_age_seconds", "Age of the oldest queued usage event.", age),
            ("destination_dead_letters", "Events in the dead-letter store.", self.queue.dead_letter_count()),
            ("destination_delivery_halted", "1 while Metronome refuses our token or URL.", 1 if halt_state(self.queue) else 0),
            ("destination_billing_catalog_age_seconds", "Since the billable metrics were last read from Metronome; "
                                                        "-1 before the first read.", catalog_age),
        ):
            yield GaugeMetricFamily(name, text, value=value)
        verified = billing_verify.stored_results(self.queue)
        family = CounterMetricFamily("destination_billing_verified", "Delivered events checked with Metronome's events "
                                     "search, by what it matched.", labels=["result"])
        for result, count in sorted(verified["counts"].items()):
            family.add_metric([result], count)
        yield family
        yield CounterMetricFamily("destination_billing_verify_disagreements", "Checked events whose match in Metronome "
                                  "differed from the catalog's prediction.", value=verified["disagreements"])


def exposition(queue, now_ms: int) -> tuple[bytes, str]:
    """The text a scrape gets: this machine's counters plus the store's gauges."""
    if os.environ.get(ENV):
        counters = CollectorRegistry()
        multiprocess.MultiProcessCollector(counters)
    else:
        counters = REGISTRY
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(queue, now_ms))
    return generate_latest(counters) + generate_latest(store), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)
