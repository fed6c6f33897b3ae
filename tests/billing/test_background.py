"""One process at a time does billing's background work: a lease in the shared store decides."""
from types import SimpleNamespace

from destination.billing.background import LEASE_MS, Background


def test_a_lease_is_taken_when_free_renewed_by_its_owner_and_taken_over_only_once_it_expires(queue):
    assert queue.take_lease("l", "a", 1000, now_ms=10_000)
    assert not queue.take_lease("l", "b", 1000, now_ms=10_500)  # a holds it until 11,000
    assert queue.take_lease("l", "a", 1000, now_ms=10_900)  # a renews: now until 11,900
    assert not queue.take_lease("l", "b", 1000, now_ms=11_500)
    assert queue.take_lease("l", "b", 1000, now_ms=11_901)  # expired: b takes over
    assert not queue.take_lease("l", "a", 1000, now_ms=12_000)
    assert queue.take_lease("other", "a", 1000, now_ms=12_000)  # leases are by name


def test_of_two_processes_backgrounds_only_the_lease_holder_works_and_the_other_takes_over_when_it_stops(queue):
    now = {"s": 100.0}
    calls = []

    def background(name):
        part = SimpleNamespace(queue=queue, clock=lambda: now["s"], step=lambda: calls.append(name))
        return Background(part, SimpleNamespace(step=lambda: None), owner=name)

    first, second = background("first"), background("second")
    assert (first.step(), second.step()) == (True, False)
    now["s"] += 1
    assert (second.step(), first.step()) == (False, True)
    now["s"] += LEASE_MS / 1000 + 1  # the first stopped stepping: its lease runs out
    assert second.step() is True and first.step() is False
    assert calls == ["first", "first", "second"]


def test_customer_ids_an_accept_found_unknown_wait_in_the_store_until_looked_up(queue):
    from destination.queue.outbox import BillingProblem

    problems = [BillingProblem("customer_lookup_pending", "transfer", f"t{i}", cid, "m", b"{}")
                for i, cid in enumerate(["new-b", "new-a", "new-b"])]
    queue.enqueue([], [], 1000, problems=problems)
    queue.enqueue([], [], 2000, problems=[BillingProblem("customer_lookup_pending", "x", "t9", "new-c", "m", b"{}")])
    assert queue.customer_lookups(10) == ["new-a", "new-b", "new-c"]
    queue.forget_customer_lookups(["new-a", "new-c"])
    assert queue.customer_lookups(10) == ["new-b"]


def test_while_metronome_fails_the_metrics_are_asked_for_again_only_after_a_pause_unless_an_admin_asks(queue):
    from destination.billing.catalog import RETRY_AFTER_FAILURE_S, Refresher
    from destination.billing.client import MetronomeUnavailable

    now = {"s": 1000.0}
    calls = []

    def failing():
        calls.append(now["s"])
        raise MetronomeUnavailable("GET /v1/billable-metrics: HTTP 429")

    client = SimpleNamespace(billable_metrics=failing, customer_by_alias=lambda cid: None)
    refresher = Refresher(queue, client, lambda: now["s"], refresh_s=300, lookups_per_minute=60, hit_s=86400, miss_s=60)
    refresher.step()
    now["s"] += 1
    refresher.step()  # too soon after the failure: not asked
    now["s"] += RETRY_AFTER_FAILURE_S
    refresher.step()
    refresher.step(force=True)  # an admin's refresh asks at once
    assert calls == [1000.0, 1000.0 + 1 + RETRY_AFTER_FAILURE_S, 1000.0 + 1 + RETRY_AFTER_FAILURE_S]
    assert "HTTP 429" in queue.get_state("billing_catalog")
