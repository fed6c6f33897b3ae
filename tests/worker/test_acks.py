"""The acker commits delivered batches off the send path, on a real store."""
import threading

from conftest import wait_until
from destination.queue.outbox import DeliveryNote, QueuedEvent
from destination.worker.acks import Acker


def queued(queue, n):
    queue.enqueue([QueuedEvent(f"a{i}", b'{"transaction_id":"a%d"}' % i, b"{}", "v1", 1000, f"a{i}")
                   for i in range(n)], [], 1000)
    return queue.claim(n, 60_000, 2000)


class Recorder:
    def __init__(self):
        self.calls, self.acked = [], threading.Event()

    def __call__(self, items, removed):
        self.calls.append((len(items), sum(removed)))
        self.acked.set()


def note():
    return DeliveryNote(3000, 200, "")


def test_batches_wait_for_each_other_up_to_the_event_count_then_go_in_one_commit(queue):
    claim, seen = queued(queue, 300), Recorder()
    acker = Acker(queue, seen, every_events=300, wait_s=60)
    for start in (0, 100):
        acker.add(claim.owner, claim.events[start:start + 100], note())
    assert not seen.acked.wait(0.2) and queue.depth() == 300  # 200 of 300: the thread waits (its timer is a minute)
    acker.add(claim.owner, claim.events[200:], note())
    assert seen.acked.wait(10)
    assert seen.calls == [(3, 300)] and queue.depth() == 0


def test_a_lone_batch_is_committed_once_it_has_waited(queue):
    claim, seen = queued(queue, 10), Recorder()
    Acker(queue, seen, every_events=1000, wait_s=0.05).add(claim.owner, claim.events, note())
    assert seen.acked.wait(10) and seen.calls == [(1, 10)]
    wait_until(lambda: queue.depth() == 0)


def test_a_commit_the_database_refuses_keeps_every_batch_for_the_next(queue):
    claim, seen = queued(queue, 20), Recorder()
    acker = Acker(queue, seen, every_events=1000, wait_s=60)
    real, failures = queue.ack_many, []

    def refuse_once(owner, batches):
        if not failures:
            failures.append(owner)
            raise OSError("disk full")
        return real(owner, batches)
    queue.ack_many = refuse_once
    acker.add(claim.owner, claim.events[:10], note())
    acker.add(claim.owner, claim.events[10:], note())
    try:
        acker.flush()
    except OSError:
        pass
    assert failures and acker.pending() == 20 and queue.depth() == 20
    acker.flush()
    assert acker.pending() == 0 and queue.depth() == 0 and seen.calls == [(2, 20)]
