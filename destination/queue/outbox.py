"""The durable outbox: the one interface every storage backend implements.

Accepted usage events and refused events are written in one transaction before the sender gets
its 200. The worker then claims ready rows under a lease, and acks, retries later or
dead-letters them. A lease is a narrow row of its own (owner, end), so the outbox row is written
once at accept and deleted once at ack. Rows of a worker that died come back by themselves when
the lease runs out, with the same stored payload and therefore the same transaction_id.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


# Made per event on the hot paths, so not frozen: a frozen dataclass's __init__ costs about seven
# times a plain one's (1.6 us of an accept path near 30 us an event).
@dataclass(slots=True)
class QueuedEvent:
    """A usage event to deliver: the exact bytes to send, and the CDP event it came from."""

    transaction_id: str
    payload: bytes
    raw: bytes
    mapping_version: str
    timestamp_ms: int
    message_id: str | None = None  # indexed in the delivery log, so an admin can search by it
    customer_id: str | None = None
    source: str | None = None  # the write key's or webhook secret's label, for replays and `$source`

    def __reduce__(self):
        # The import maps in other processes and sends these back: pickled as a plain tuple of
        # fields, a 500-event chunk costs 3.2 us an event instead of 7.0 (slots' default pickling).
        return (QueuedEvent, (self.transaction_id, self.payload, self.raw, self.mapping_version, self.timestamp_ms,
                              self.message_id, self.customer_id, self.source))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event set aside whole, with why, so it can be inspected and replayed."""

    raw: bytes
    code: str
    reason: str
    mapping_version: str
    stage: str  # "receive" (mapping/validation) or "delivery" (Metronome refused it)
    transaction_id: str | None = None
    payload: bytes | None = None
    source: str | None = None
    message_id: str | None = None  # so the Delivery view finds an event's fate by messageId or customer
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class BillingProblem:
    """An accepted (or held) usage event the billing check says will not bill, and why."""

    reason: str
    event_type: str
    transaction_id: str
    customer_id: str
    message: str
    payload: bytes


@dataclass(slots=True)  # per event, like QueuedEvent
class ClaimedEvent:
    id: int
    transaction_id: str
    payload: bytes
    timestamp_ms: int
    attempts: int
    received_at_ms: int = 0
    customer_id: str | None = None  # as the usage event names it: the billing catalog looks it up


@dataclass(frozen=True, slots=True)
class DeliveryNote:
    """What one delivery attempt got from Metronome, for the delivery log."""

    at_ms: int
    status: int | None
    answer: str


@dataclass(frozen=True, slots=True)
class Claim:
    owner: str
    events: list[ClaimedEvent]


class Queue(Protocol):
    def enqueue(self, events: list[QueuedEvent], dead_letters: list[DeadLetter], now_ms: int,
                samples: tuple = (), source: str | None = None, problems: tuple = (), tally=None,
                checkpoint: tuple | None = None) -> int:
        """Store accepted events, refusals, preview samples and billing problems atomically, with
        an import's `checkpoint` (id, position, counts JSON); return how many events were stored.
        The Delivery view's `tally` of them is counted once they are stored, written within a second."""

    def claim(self, limit: int, lease_ms: int, now_ms: int) -> Claim:
        """Lease up to `limit` ready events to one owner, oldest first."""

    def ack_many(self, owner: str, batches: list[tuple[list[int], DeliveryNote | None]]) -> list[int]:
        """Delivered: remove each batch's events this owner still holds, in one transaction;
        return how many rows each batch removed."""

    def retry_later(self, owner: str, ids: list[int], available_at_ms: int, error: str, count_attempt: bool = True,
                    note: DeliveryNote | None = None) -> None:
        """Put events back to be claimed again at `available_at_ms`."""

    def flush_counts(self) -> None:
        """Write the accept counts this process holds for the Delivery view (buffered for a second)."""

    def make_due(self, now_ms: int) -> int:
        """Every event waiting out a retry delay is ready now (Metronome recovered); return how many."""

    def dead_letter(self, owner: str, refusals: list[tuple[int, str, str]], now_ms: int,
                    note: DeliveryNote | None = None) -> None:
        """Move (id, code, reason) events from the outbox to the dead-letter store."""

    def depth(self) -> int: ...

    def oldest_pending_ms(self) -> int | None:
        """received_at of the oldest queued event, or None when empty."""

    def dead_letter_count(self) -> int: ...

    def list_dead_letters(self, limit: int = 100) -> list[dict]: ...

    def search_deliveries(self, *, transaction_id: str | None = None, message_id: str | None = None,
                          customer_id: str | None = None, limit: int = 100) -> list[dict]: ...

    def prune_delivery_log(self, before_ms: int) -> int: ...

    def billing_problems(self, since_ms: int) -> dict:
        """`counts`: (minute_ms, reason, event_type, count) since then; `examples`: the latest of each pair."""

    def prune_billing_problems(self, before_ms: int) -> None: ...

    def customer_lookups(self, limit: int) -> list[str]:
        """Customer ids an accept found unknown to the billing catalog, oldest first."""

    def forget_customer_lookups(self, customer_ids: list[str]) -> None: ...

    def take_lease(self, name: str, owner: str, ttl_ms: int, now_ms: int) -> bool:
        """Hold a named lease shared by every process, if free, expired or already this owner's."""

    def drop_lease(self, name: str, owner: str) -> None:
        """Free the named lease if `owner` still holds it."""

    def lease(self, name: str) -> tuple[int, str] | None:
        """The named lease's (until_ms, owner), expired or not; None when nobody holds it."""

    def raise_state(self, key: str, value: int) -> None:
        """Set a numeric state to `value` unless it holds a larger one already."""

    def ping(self) -> None: ...

    def write_probe(self) -> None:
        """Raise if the store cannot take a write now (a full disk answers reads)."""

    def save_mapping_version(self, document: str, author: str, comment: str, now_ms: int, if_latest=...) -> int | None:
        """Store a new version; with `if_latest`, only if that id (None: no version) is still the newest."""

    def latest_mapping_version(self) -> int | None: ...

    def get_mapping_version(self, version: int) -> dict | None: ...

    def list_mapping_versions(self, limit: int = 100) -> list[dict]: ...

    def recent_events(self, limit: int) -> list[dict]: ...

    def schema_version(self) -> int: ...

    def migrate(self) -> int:
        """Apply the schema steps this database lacks; return how many ran."""

    def get_state(self, key: str) -> str | None: ...

    def set_state(self, key: str, value: str | None) -> None: ...

    def close(self) -> None: ...

