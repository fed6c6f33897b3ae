"""Wire a Worker from settings: one place that turns configuration into sender + policy."""
from __future__ import annotations

import time

from destination.billing.background import Background
from destination.billing.catalog import CatalogCache, Refresher
from destination.billing.client import MetronomeClient
from destination.billing.verify import Verifier
from destination.worker.loop import Worker
from destination.worker.retry import RetryPolicy
from destination.worker.send import Sender


def build_worker(settings, queue, clock=None) -> Worker:
    sender = Sender(settings.metronome_base_url, settings.metronome_api_token,
                    connect_timeout_s=settings.connect_timeout_seconds,
                    read_timeout_s=settings.read_timeout_seconds, gzip_level=settings.gzip_level,
                    connections=max(settings.sends_in_flight, settings.max_sends_in_flight))
    policy = RetryPolicy(settings.retry_base_seconds, settings.retry_cap_seconds, settings.halt_probe_seconds)
    kwargs = {"clock": clock} if clock else {}
    if settings.billing_check != "OFF":
        client = MetronomeClient(settings.metronome_base_url, settings.metronome_api_token,
                                 timeout_s=settings.read_timeout_seconds)
        clock = clock or time.time
        refresher = Refresher(queue, client, clock, settings.billing_catalog_refresh_seconds,
                              settings.billing_customer_lookups_per_minute, settings.billing_customer_hit_seconds,
                              settings.billing_customer_miss_seconds)
        verifier = Verifier(queue, client, CatalogCache(queue, clock), clock, settings.billing_verify_sample,
                            settings.billing_verify_interval_seconds)
        kwargs["billing"] = Background(refresher, verifier)
    return Worker(queue, sender, policy=policy, lease_s=settings.lease_seconds, claim_size=settings.claim_size,
                  sends_in_flight=settings.sends_in_flight, max_sends_in_flight=settings.max_sends_in_flight,
                  adaptive=not settings.fixed_sends_in_flight, probe_ttl_s=settings.connect_timeout_seconds
                  + settings.read_timeout_seconds + 5,
                  idle_s=settings.poll_interval_seconds, max_events=settings.batch_max_events,
                  max_bytes=settings.batch_max_bytes, log_retention_s=settings.delivery_log_days * 86400, **kwargs)
