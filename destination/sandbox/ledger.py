"""What the emulated Metronome account holds, in memory: customers, metrics, pricing and events.

State lives in memory only and is gone when the process stops; the sandbox is a development and
test tool, not a store. One lock guards it all: every route takes it for the whole request.

Two rules make usage behave as in Metronome:
- customers are matched when usage is read, through the current ids and aliases, so an alias
  added later picks up events sent before it existed;
- metrics are matched when an event is ingested, against the metrics active then. An event sent
  before its metric existed, or after it was archived, never counts for it: the strict reading
  of Metronome's advice to create metrics before sending usage.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from destination.sandbox import matching
from destination.sandbox.rating import Tier


def iso(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, as Metronome writes times."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_ms(text: str) -> int:
    """Milliseconds since the epoch from an RFC 3339 time; ValueError when it is not one."""
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return int(moment.timestamp() * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Customer:
    id: str
    name: str
    external_id: str
    ingest_aliases: list[str]
    created_at: str
    updated_at: str

    def brief(self) -> dict:
        return {"id": self.id, "external_id": self.external_id, "ingest_aliases": list(self.ingest_aliases),
                "name": self.name, "custom_fields": {}}

    def detail(self) -> dict:
        return {**self.brief(), "customer_config": {"salesforce_account_id": None}, "created_at": self.created_at,
                "updated_at": self.updated_at, "archived_at": None}


@dataclass
class Record:
    """One event as ingested: the body as sent, and what it matched then."""

    id: str
    seq: int
    event: dict
    at_ms: int
    processed_at: str
    is_duplicate: bool
    metric_ids: tuple[str, ...] = ()


@dataclass
class Metric:
    id: str
    name: str
    aggregation_type: str
    aggregation_key: str | None
    event_type_filter: dict | None
    property_filters: list[dict]
    group_keys: list[list[str]]
    archived_at: str | None = None
    # (record, contribution) for every non-duplicate event matched at ingest, in ingest order
    matched: list[tuple[Record, object]] = field(default_factory=list)

    def as_json(self) -> dict:
        out = {"id": self.id, "name": self.name, "aggregation_type": self.aggregation_type,
               "property_filters": self.property_filters, "group_keys": self.group_keys, "custom_fields": {}}
        for name in ("aggregation_key", "event_type_filter", "archived_at"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass
class Product:
    id: str
    name: str
    type: str
    billable_metric_id: str | None
    pricing_group_key: list[str]
    presentation_group_key: list[str]
    quantity_conversion: dict | None


@dataclass
class Rate:
    product_id: str
    rate_type: str
    starting_at_ms: int
    ending_before_ms: int | None
    pricing_group_values: dict[str, str]
    price: Decimal | None
    tiers: list[Tier]

    def active_at(self, ms: int) -> bool:
        return self.starting_at_ms <= ms and (self.ending_before_ms is None or ms < self.ending_before_ms)


@dataclass
class RateCard:
    id: str
    name: str
    rates: list[Rate] = field(default_factory=list)


@dataclass
class Contract:
    id: str
    customer_id: str
    rate_card_id: str
    starting_at_ms: int
    ending_before_ms: int | None
    created_at: str


class Ledger:
    """The account. Methods assume the caller holds `lock`."""

    def __init__(self, tokens, clock=time.time, max_property_bytes: int = 256):
        self.lock = threading.Lock()
        self.tokens = set(tokens)
        self.clock = clock
        self.max_property_bytes = max_property_bytes
        self.reset()

    def reset(self) -> None:
        # Ingest, as the sandbox has always kept it (read back through /sandbox/*).
        self.events: dict[str, dict] = {}  # transaction_id -> first event accepted
        self.duplicates = 0
        self.requests: list[dict] = []
        self.script: deque = deque()  # scripted answers, consumed one per request
        self.reject_ids: set[str] = set()
        self.hang_s = 0.0  # accept, then hold the answer this long (crash-between-claim-and-ack tests)
        self.hung = threading.Event()
        self.release = threading.Event()
        self.api_fault: dict | None = None  # every route but ingest answers this status while set
        self.rate_limit: dict | None = None  # ingest's token bucket: per_s, burst, tokens, at
        self.latency_s = 0.0  # every ingest answer is held this long, as a round trip over the internet
        # The billing side.
        self.records: dict[str, list[Record]] = {}  # transaction_id -> the original, then each duplicate
        self.seq = 0
        self.customers: dict[str, Customer] = {}
        self.by_alias: dict[str, str] = {}  # ingest alias -> customer id
        self.metrics: dict[str, Metric] = {}
        self.products: dict[str, Product] = {}
        self.rate_cards: dict[str, RateCard] = {}
        self.contracts: dict[str, Contract] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def customer_for(self, customer_id: str) -> Customer | None:
        """The customer an event's customer_id names today: by id, or by one of its aliases."""
        return self.customers.get(customer_id) or self.customers.get(self.by_alias.get(customer_id, ""))

    def ingest(self, event: dict) -> Record:
        """Keep one accepted event; match it against the metrics active now unless it is a repeat."""
        self.seq += 1
        tid = event["transaction_id"]
        now = self.now_ms()
        earlier = self.records.setdefault(tid, [])
        record = Record(new_id(), self.seq, event, parse_ms(event["timestamp"]), iso(now), bool(earlier))
        earlier.append(record)
        if record.is_duplicate:
            self.duplicates += 1
            return record
        self.events[tid] = event
        properties = event.get("properties") or {}
        matched = []
        for metric in self.metrics.values():
            if metric.archived_at is None and matching.matches(metric, event["event_type"], properties):
                metric.matched.append((record, matching.contribution(metric, properties)))
                matched.append(metric.id)
        record.metric_ids = tuple(matched)
        return record

    def active_contracts(self, customer_id: str, at_ms: int) -> list[Contract]:
        return [c for c in self.contracts.values() if c.customer_id == customer_id and c.starting_at_ms <= at_ms
                and (c.ending_before_ms is None or at_ms < c.ending_before_ms)]
