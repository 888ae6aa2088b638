"""A diskcache used from threads of its own: few SQLite connections whatever the threads."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from flux_worker.storage.diskcaches import READERS, OwnThreadsCache


@pytest.fixture
def shared(tmp_path):
    made = OwnThreadsCache(str(tmp_path / "cache"), timeout=10)
    yield made
    made.close()


def test_calls_from_many_threads_run_on_three_threads(shared):
    ran_on: set[int] = set()

    def write(cache):
        ran_on.add(threading.get_ident())
        return cache.incr("count")

    def read(cache):
        ran_on.add(threading.get_ident())
        return cache.get("count", 0)

    callers = [threading.Thread(target=lambda: (shared.write(write), shared.read(read)))
               for _ in range(50)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert shared.read(lambda cache: cache.get("count")) == 50
    # One connection per thread that touched the cache: 1 writer + READERS readers, not 50.
    assert len(ran_on) <= 1 + READERS
    assert threading.get_ident() not in ran_on


def test_errors_come_back_to_the_caller_and_close_can_be_followed_by_use(shared):
    with pytest.raises(ZeroDivisionError):
        shared.write(lambda cache: 1 / 0)
    writer = shared.write(lambda cache: (cache.set("k", b"v"), threading.current_thread())[1])
    reader = shared.read(lambda cache: threading.current_thread())
    shared.close()
    # This cache's threads have ended (other tests' caches may still run threads of their own).
    assert not writer.is_alive() and not reader.is_alive()
    assert shared.read(lambda cache: cache.get("k")) == b"v"


def _child_reads(shared: OwnThreadsCache, out) -> None:
    shared.write(lambda cache: cache.set("child", os.getpid()))
    out.put(shared.read(lambda cache: cache.get("parent")))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_starts_threads_of_its_own(shared):
    # gunicorn forks workers; the parent's threads do not exist in a child, so waiting on them
    # would hang for ever.
    shared.write(lambda cache: cache.set("parent", "yes"))
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child_reads, args=(shared, out))
    child.start()
    child.join(20)
    assert child.exitcode == 0
    assert out.get(timeout=5) == "yes"
    assert shared.read(lambda cache: cache.get("child")) == child.pid


def test_writes_queued_without_waiting_come_before_later_calls(shared, caplog):
    for _ in range(20):
        shared.write_later(lambda cache: cache.incr("n"), "a count")
    # Queued in order: a call made through `write` afterwards sees all of them.
    assert shared.write(lambda cache: cache.get("n")) == 20
    with caplog.at_level("WARNING", logger="flux_worker.storage.diskcaches"):
        shared.write_later(lambda cache: 1 / 0, "a settlement")
        shared.write(lambda cache: None)
    assert "a settlement failed: ZeroDivisionError" in caplog.text
