"""The image history's stores (memory, disk, Redis: one contract), its recorder and the
activity log."""

from __future__ import annotations

import threading

import pytest

from flux_worker import metrics
from flux_worker.catalog.workers_ai import CATALOG
from flux_worker.cost.ledgers import short_hash
from flux_worker.errors import NotFound, StorageError
from flux_worker.generation.job import Caller, ImageJob, ImageResult
from flux_worker.history.activity import CAP, ActivityLog, activity_from_location
from flux_worker.history.cells import MemoryCells
from flux_worker.history.entries import ANONYMOUS, HistoryEntry, UnknownAfter, owner_of
from flux_worker.history.recorder import History
from flux_worker.history.stores import IndexedHistory, RedisHistory, history_from_location
from flux_worker.storage import open_store
from flux_worker.storage.location import CountersLocation, StorageLocation
from tests.support import FakeClock, wait_until

SCHEMES = ("memory", "disk", "redis")


@pytest.fixture(params=SCHEMES)
def location(request, tmp_path) -> CountersLocation:
    """A counters location of each kind (Redis: a server of the test's own)."""
    if request.param == "redis":
        return CountersLocation.parse(request.getfixturevalue("redis_server").url)
    if request.param == "disk":
        return CountersLocation.parse(f"disk://{tmp_path}/counters")
    return CountersLocation.parse("memory://")


@pytest.fixture
def store(location):
    made = history_from_location(location, cap=5)
    yield made
    made.close()


def entry(n: int, owner: str = "alice", *, ttl: float | None = 600,
          now: float | None = None) -> HistoryEntry:
    created = (now if now is not None else wait_clock()) + n / 1000
    return HistoryEntry(id=f"gen_{owner}_{n}", owner=owner, image_keys=(f"key{n:019d}",),
                        prompt=f"cat {n}", revised_prompt=None, model="m", provider="p",
                        size="512x512", created=created,
                        expires_at=None if ttl is None else int(created + ttl))


def wait_clock() -> float:
    import time
    return time.time()


def ids(page) -> list[str]:
    return [e.id for e in page.entries]


# --- the contract, on every store -------------------------------------------------------------

def test_newest_first_and_paged_with_after(store):
    for n in range(4):
        store.add(entry(n))
    first = store.page("alice", 2, None)
    assert ids(first) == ["gen_alice_3", "gen_alice_2"] and first.has_more
    second = store.page("alice", 2, first.entries[-1].id)
    assert ids(second) == ["gen_alice_1", "gen_alice_0"] and not second.has_more
    assert store.get("gen_alice_2") == first.entries[1]


def test_owners_are_isolated_and_everyones_listing_has_both(store):
    store.add(entry(1, "alice"))
    store.add(entry(2, "bob"))
    assert ids(store.page("alice", 10, None)) == ["gen_alice_1"]
    assert ids(store.page("bob", 10, None)) == ["gen_bob_2"]
    assert ids(store.page(None, 10, None)) == ["gen_bob_2", "gen_alice_1"]
    with pytest.raises(UnknownAfter):
        store.page("alice", 10, "gen_bob_2")     # another's id is no place to start from


def test_the_cap_drops_an_owners_oldest(store):
    for n in range(7):
        store.add(entry(n))
    assert ids(store.page("alice", 10, None)) == [f"gen_alice_{n}" for n in range(6, 1, -1)]
    assert store.get("gen_alice_0") is None
    assert "gen_alice_0" not in ids(store.page(None, 10, None))


def test_removed_entries_leave_every_listing(store):
    store.add(entry(1))
    store.add(entry(2))
    store.remove(store.get("gen_alice_1"))
    assert store.get("gen_alice_1") is None
    assert ids(store.page("alice", 10, None)) == ["gen_alice_2"]
    assert ids(store.page(None, 10, None)) == ["gen_alice_2"]


def test_entries_kept_for_ever_have_no_expiry(store):
    store.add(entry(1, ttl=None))
    assert store.page("alice", 1, None).entries[0].expires_at is None


def test_entries_expire_with_their_images(store):
    store.add(entry(1, ttl=600))
    store.add(entry(2, ttl=1))
    # diskcache and Redis expire by the wall clock: wait for it, no timing asserted.
    wait_until(lambda: store.get("gen_alice_2") is None, timeout=5)
    assert ids(store.page("alice", 10, None)) == ["gen_alice_1"]


# --- expiry and pruning on a fake clock (memory) ------------------------------------------------

def test_listing_skips_and_prunes_expired_entries():
    clock = FakeClock()
    store = IndexedHistory(MemoryCells(clock), clock=clock)
    store.add(entry(1, ttl=100, now=clock()))
    store.add(entry(2, ttl=1000, now=clock()))
    clock.advance(500)
    assert ids(store.page("alice", 10, None)) == ["gen_alice_2"]
    assert store.cells.run(lambda c: c.get("flux-worker:history:owner:alice"))[0] == ["gen_alice_2"]
    clock.advance(1000)
    assert store.page("alice", 10, None).entries == []
    assert store.cells.run(lambda c: c.get("flux-worker:history:owner:alice")) is None


def test_redis_pages_past_expired_entries(redis_server):
    store = RedisHistory(CountersLocation.parse(redis_server.url))
    for n in range(3):
        store.add(entry(n, ttl=600))
    store.client.delete("flux-worker:history:entry:gen_alice_1")   # as if it had expired
    page = store.page("alice", 2, None)
    assert ids(page) == ["gen_alice_2", "gen_alice_0"] and not page.has_more
    assert store.client.zcard("flux-worker:history:owner:alice") == 2
    store.close()


# --- the recorder -------------------------------------------------------------------------------

def _job() -> ImageJob:
    return ImageJob(original="a cat 16:9", prompt="a cat", model=CATALOG[0], width=1024,
                    height=576, ratio="16:9")


def _result(key: str) -> ImageResult:
    return ImageResult(key=key, data=b"x", width=1024, height=576, neurons=5.0, usd=0.001)


@pytest.fixture
def images():
    made = open_store(StorageLocation.parse("memory://"), max_bytes=1 << 20)
    yield made
    made.close()


def test_record_keeps_one_entry_per_image_for_the_keys_hash(images):
    clock = FakeClock(1000.0)
    history = History(IndexedHistory(MemoryCells(clock), clock=clock), images, 1800, clock)
    history.record(Caller(identity="k", key="sk-a"), _job(), "a cat, photo",
                   [_result("a" * 22), _result("b" * 22)])
    page = history.page(short_hash("sk-a"), 10, None)
    assert [e.image_keys for e in page.entries] == [("a" * 22,), ("b" * 22,)]
    first = page.entries[0]
    assert (first.owner, first.prompt, first.revised_prompt, first.size, first.expires_at,
            first.model, first.neurons) == (short_hash("sk-a"), "a cat 16:9", "a cat, photo",
                                            "1024x576", 2800, CATALOG[0].id, 5.0)
    assert "sk-a" not in first.to_json().decode()


def test_record_without_a_key_is_anonymous_and_unrevised_prompt_is_none(images):
    history = History(IndexedHistory(MemoryCells()), images, 0)
    history.record(Caller(identity="1.2.3.4"), _job(), "a cat", [_result("c" * 22)])
    [only] = history.page(ANONYMOUS, 10, None).entries
    assert only.revised_prompt is None and only.expires_at is None
    assert owner_of(None) == ANONYMOUS


class _Broken:
    def add(self, entry):
        raise OSError("disk full")

    def get(self, entry_id):
        raise ConnectionError("redis down")

    def page(self, owner, limit, after):
        raise ConnectionError("redis down")

    def close(self):
        return None


def test_a_failing_write_never_fails_the_generation_but_is_counted(images, caplog):
    history = History(_Broken(), images, 600)  # type: ignore[arg-type]
    before = metrics.HISTORY_FAILURES._value.get()
    history.record(Caller(identity="k", key="sk-a"), _job(), "a cat", [_result("d" * 22)])
    assert metrics.HISTORY_FAILURES._value.get() == before + 1
    assert "could not record" in caplog.text and "sk-a" not in caplog.text


def test_failing_reads_are_storage_errors(images):
    history = History(_Broken(), images, 600)  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        history.page("x", 10, None)
    with pytest.raises(StorageError):
        history.delete("gen_x", "x")


def test_delete_removes_the_images_and_hides_anothers_entry(images):
    history = History(IndexedHistory(MemoryCells()), images, 600)
    images.put("e" * 22, b"img", "image/png", 600)
    history.record(Caller(identity="k", key="sk-a"), _job(), "a cat", [_result("e" * 22)])
    [made] = history.page(short_hash("sk-a"), 1, None).entries
    with pytest.raises(NotFound) as other:
        history.delete(made.id, short_hash("sk-b"))
    with pytest.raises(NotFound) as unknown:
        history.delete("gen_nothing", short_hash("sk-b"))
    assert other.value.message.replace(made.id, "?") == unknown.value.message.replace(
        "gen_nothing", "?")
    assert images.get("e" * 22) is not None
    history.delete(made.id, short_hash("sk-a"))
    assert images.get("e" * 22) is None and history.page(short_hash("sk-a"), 1, None).entries == []


# --- the activity log -------------------------------------------------------------------------

def test_activity_keeps_the_newest_public_messages(location):
    log = activity_from_location(location)
    try:
        for n in range(CAP + 5):
            log.append("anonymous", "POST", f"/v1/x/{n}", 400, "invalid_request_error", "bad")
        log.answered("sk-secret", "POST", "/v1/images/generations",
                     StorageError("down at redis://:pw@10.0.0.1:6379"))
        # Written by the log's own thread: wait for the last line.
        wait_until(lambda: log.newest(1) and log.newest(1)[0].status == 503)
        last, *newest = log.newest(4)
        assert [a.path for a in newest] == [f"/v1/x/{n}" for n in (CAP + 4, CAP + 3, CAP + 2)]
        assert len(log.newest()) == CAP
        assert (last.owner, last.code) == (short_hash("sk-secret"), "storage_error")
        assert "pw" not in last.message and "10.0.0.1" not in last.message
    finally:
        log.close()


def test_an_undecodable_path_is_kept_as_its_escape():
    log = activity_from_location(CountersLocation.parse("memory://"))
    try:
        log.append("anonymous", "GET", "/v1/caf\udce9", 404, "not_found", "No route \udce9")
        wait_until(lambda: log.newest(1))
        [line] = log.newest(1)
        assert (line.path, line.message) == ("/v1/caf\\udce9", "No route \\udce9")
    finally:
        log.close()


class _SlowActivity:
    def __init__(self):
        self.release = threading.Event()
        self.lines: list[bytes] = []

    def push(self, line):
        self.release.wait(10)       # a hung store
        if b"fail" in line:
            raise ConnectionError("down")
        self.lines.append(line)

    def close(self):
        return None


def test_activity_writes_neither_wait_nor_raise(caplog):
    store = _SlowActivity()
    log = ActivityLog(store)  # type: ignore[arg-type]
    log.append("anonymous", "GET", "/v1/models", 401, "invalid_api_key", "fail")
    log.append("anonymous", "GET", "/v1/models", 401, "invalid_api_key", "no key")
    assert store.lines == []           # both answered while the store still hangs
    store.release.set()
    wait_until(lambda: store.lines)
    log.close()
    assert "could not add to the activity log" in caplog.text
