"""The CDP-facing routes' pipeline: receive -> authenticate -> parse -> map -> validate -> queue -> 200.

routes.py is the HTTP layer in front of it. The answer comes only after the accepted
events and the refused ones are committed together, so a 200 always means "stored"; a store that
cannot be written answers 503 so the sender retries.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import orjson

from destination.billing.judge import CLEAN, CLEAN_ANSWER, ONE_CLEAN, BillingCheck, Judging
from destination.errors import EventRefused, PayloadTooLarge, QueueUnavailable
from destination.intake.authenticate import presented_key, source_for, webhook_source
from destination.intake.parse import Unreadable, expand, inflate, parse_body
from destination.mapping.mapping_set import MappingSet, map_event
from destination.ops import metrics
from destination.payload import exact
from destination.payload.validate import Limits, build_usage_event
from destination.queue import tally as tallies
from destination.queue.outbox import BillingProblem, DeadLetter, QueuedEvent

log = logging.getLogger("destination.receive")
SAMPLES_PER_REQUEST = 3
SAMPLING_WARMUP = 200  # requests sampled in full first: as many as the store keeps (RECENT_EVENTS_KEPT)
SAMPLING_INTERVAL_MS = 100
REDACTED = b"[redacted]"


class Sampler:
    """Which requests leave raw events for mapping previews: every request until SAMPLING_WARMUP,
    then at most one each SAMPLING_INTERVAL_MS per process. Previews need recent traffic, not all
    of it, and writing and pruning samples was a tenth of a single-event request's cost.
    A race between threads only samples one request more."""

    def __init__(self, warmup: int = SAMPLING_WARMUP, interval_ms: int = SAMPLING_INTERVAL_MS):
        self.warmup, self.interval_ms = warmup, interval_ms
        self.taken, self.last_ms = 0, None

    def take(self, now_ms: int) -> bool:
        if self.taken >= self.warmup and self.last_ms is not None and 0 <= now_ms - self.last_ms < self.interval_ms:
            return False
        self.taken, self.last_ms = self.taken + 1, now_ms
        return True


@dataclass(slots=True)
class Processed:
    """What one request's events became: rows to queue, refusals to keep, and per-event results."""

    rows: list = field(default_factory=list)
    dead_letters: list = field(default_factory=list)
    results: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"accepted": 0, "filtered": 0, "refused": 0})
    samples: list = field(default_factory=list)  # a few raw events, kept for mapping previews
    problems: list = field(default_factory=list)  # BillingProblem per problem the billing check found

    def tally(self, via: str):
        """What the Delivery view counts of these events, stored with them."""
        return tallies.accepted(self.counts, [d.code for d in self.dead_letters], via)


def process_events(events: list, mapping_set: MappingSet, now_ms: int, limits: Limits,
                   source: str | None = None, billing: BillingCheck | None = None, secrets: tuple = ()) -> Processed:
    """Map and validate every event, and judge what it bills when `billing` is given; pure, so
    the benchmark and tests call it directly. No credential is kept: see `_without_credentials`."""
    out = Processed()
    judging = billing.start() if billing is not None else None
    for index, event in enumerate(events):
        unreadable = event.refusal if type(event) is Unreadable else None
        if unreadable is not None:
            event = event.event
        event, raw = _without_credentials(event, secrets)
        if index < SAMPLES_PER_REQUEST:
            out.samples.append(raw)
        verdicts: list = []
        if unreadable is not None:
            accepted, refusals = [], [(None, unreadable)]
        else:
            accepted, refusals = _process_one(event, raw, mapping_set, now_ms, limits, source, out.rows,
                                              judging, verdicts, out.problems)
        status = "refused" if refusals and not accepted else "partial" if refusals else "accepted" if accepted else "filtered"
        out.counts["accepted" if status == "partial" else status] += 1
        result = {"index": index, "status": status}
        if isinstance(event, dict) and isinstance(event.get("messageId"), str):
            result["messageId"] = event["messageId"]
        if accepted:
            result["transaction_ids"] = accepted
        if verdicts:
            result["billing"] = CLEAN_ANSWER if verdicts == ONE_CLEAN else judging.answers(verdicts)
        if refusals:
            result["errors"] = [{"mapping": name, "code": r.code, "message": r.message} for name, r in refusals]
            found = _found_by(event)
            out.dead_letters.extend(
                DeadLetter(raw, r.code, f"{name}: {r.message}" if name else r.message, mapping_set.version,
                           getattr(r, "stage", "receive"), getattr(r, "transaction_id", None),
                           getattr(r, "payload", None), source, *found)
                for name, r in refusals
            )
        out.results.append(result)
    return out


def _process_one(event, raw: bytes, mapping_set: MappingSet, now_ms: int, limits: Limits, source, rows: list,
                 judging: Judging | None, verdicts: list, problems: list):
    """Return (transaction_ids accepted, [(mapping name, EventRefused)]); append queue rows, each
    accepted usage event's verdict when billing is checked, and every billing problem found."""
    if not isinstance(event, dict):
        return [], [(None, EventRefused("not_an_object", f"an event must be a JSON object, not {type(event).__name__}"))]
    if len(raw) > limits.event_bytes:
        return [], [(None, EventRefused("event_too_large", f"event is {len(raw)} bytes; the limit is {limits.event_bytes}"))]
    accepted, refusals = [], []
    for mapping, values in map_event(mapping_set, event, source):
        try:
            if isinstance(values, EventRefused):
                raise values
            usage = build_usage_event(values, now_ms, limits.value_bytes)
            if usage.transaction_id in accepted:
                # Two mappings giving one transaction_id would make Metronome drop the second as a
                # duplicate: lost usage. Refuse it loudly so the admin gives each mapping its own id.
                raise EventRefused("duplicate_transaction_id", f"another mapping already produced transaction_id {usage.transaction_id!r}")
            payload = orjson.dumps(usage.event)
            if judging is not None:  # the fast test inline: it runs for nearly every usage event
                verdicts.append(CLEAN if judging.clean(usage.event) else _judged(judging, usage, payload, problems))
        except EventRefused as refusal:
            refusals.append((mapping.name, refusal))
            continue
        accepted.append(usage.transaction_id)
        rows.append(QueuedEvent(usage.transaction_id, payload, raw, mapping_set.version,
                                usage.timestamp_ms, _searchable(event.get("messageId")), usage.event["customer_id"], source))
    return accepted, refusals


def _judged(judging: Judging, usage, payload: bytes, problems: list):
    """The full verdict of a usage event the fast test was unsure of; its problems go to `problems`,
    and under `hold` one that loses usage for good refuses the event (raises Held)."""
    judged = judging.judge(usage.event)
    if judged.problems:
        problems.extend(BillingProblem(p.code, usage.event["event_type"], usage.transaction_id,
                                       usage.event["customer_id"], p.message, payload) for p in judged.problems)
        if judging.hold and (held := judging.check.held(judged, usage.transaction_id, payload)) is not None:
            raise held
    return judged


def _without_credentials(event, secrets: tuple) -> tuple:
    """The event without its `writeKey`, and its raw JSON (as stored in the outbox, the dead
    letters and the preview samples, and shown by the admin API) with every configured secret
    (`secrets`, as bytes) replaced: a sender that puts a key in an event must not leave it in the
    database. A byte search per secret, in C, costs little next to the dumps itself."""
    if isinstance(event, dict) and "writeKey" in event:
        event = {key: value for key, value in event.items() if key != "writeKey"}
    raw = exact.dumps(event)
    for secret in secrets:
        if secret in raw:
            raw = raw.replace(secret, REDACTED)
    return event, raw


def _found_by(event) -> tuple:
    """The messageId and the customer (userId, else anonymousId) a refused event is searched by."""
    if not isinstance(event, dict):
        return None, None
    return _searchable(event.get("messageId")), _searchable(event.get("userId") or event.get("anonymousId"))


def _searchable(message_id) -> str | None:
    """A messageId or customer id to search by, when it is text a database can hold."""
    return message_id if isinstance(message_id, str) and "\x00" not in message_id else None


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "tracking" (SDKs: write keys, skew correction), "generic" or "webhook" (signed)
    default_type: str | None = None  # the event type a single-event route implies
    methods: tuple = ("POST",)


# The Tracking API (kind A, SDKs and Segment-compatible CDPs): write keys, skew correction.
# /sdk/batch: June's SDKs (june-analytics-python) post Segment's batch shape there.
BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b", "/sdk/batch")
SINGLE_PATHS = {"track": ("/v1/track", "/v1/t"), "identify": ("/v1/identify", "/v1/i"), "page": ("/v1/page", "/v1/p"),
                "screen": ("/v1/screen", "/v1/s"), "group": ("/v1/group", "/v1/g"), "alias": ("/v1/alias", "/v1/a")}
# Webhook destinations (kind B) have already processed the event: signed, and their timestamp is trusted.
WEBHOOK_PATHS = ("/v1/webhook",)
ROUTES = {
    "/v1/events": Route("generic"),  # any of the body shapes; the events' own timestamps are trusted
    **{path: Route("tracking") for path in BATCH_PATHS},
    **{path: Route("tracking", kind) for kind, paths in SINGLE_PATHS.items() for path in paths},
    **{path: Route("webhook", methods=("POST", "PUT", "PATCH")) for path in WEBHOOK_PATHS},
}


def receive(runtime, route: Route, body: bytes, header: Callable[[str], str | None]) -> bytes:
    """One request's body to its JSON answer, everything stored; raise RequestError to refuse it whole.

    `header(name)` reads a request header; the HTTP layer (routes.py) supplies it."""
    settings = runtime.settings
    body = inflate(body, header("Content-Encoding"), settings.max_request_bytes)
    if route.kind == "webhook":
        source = webhook_source(body, header("X-Signature"), header(settings.webhook_secret_header),
                                settings.webhook_secrets, settings.allow_unauthenticated)
    envelope = parse_body(body, settings.max_batch_events)
    if route.kind != "webhook":
        source = source_for(presented_key(header("Authorization"), envelope.write_key),
                            settings.write_keys, settings.allow_unauthenticated)
    if envelope.single and len(body) > settings.max_event_bytes:
        # One event and nothing else to save: tell the sender plainly. In a batch, an oversized
        # event is refused on its own (kept as a dead letter) and the others are accepted.
        raise PayloadTooLarge(f"the event is {len(body)} bytes; the limit is {settings.max_event_bytes}", code="event_too_large")
    now_ms = runtime.now_ms()
    events = expand(envelope, route.default_type, received_ms=now_ms if route.kind == "tracking" else None)
    with _store_unavailable_is_503("read the live mappings"):
        mapping_set = runtime.mappings.current()
    processed = process_events(events, mapping_set, now_ms, runtime.limits, source, runtime.billing, runtime.secrets)
    samples = processed.samples if runtime.sampler.take(now_ms) else ()
    with _store_unavailable_is_503(f"store {len(processed.rows)} events"):
        runtime.queue.enqueue(processed.rows, processed.dead_letters, now_ms, samples, source, processed.problems,
                              processed.tally("http"))
    metrics.record_received(source, processed.counts, [d.code for d in processed.dead_letters])
    if processed.problems:
        metrics.record_unbillable([(p.reason, p.event_type) for p in processed.problems])
    return orjson.dumps({**processed.counts, "events": processed.results})


@contextmanager
def _store_unavailable_is_503(what: str):
    """A database that cannot answer means nothing was accepted: 503 + Retry-After, so the sender retries."""
    try:
        yield
    except Exception as exc:
        log.exception("could not %s", what)
        raise QueueUnavailable("the event store is unavailable; nothing was accepted, retry later", retry_after=5) from exc
