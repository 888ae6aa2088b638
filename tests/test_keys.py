"""Run-time keys without HTTP: the records, the three stores, the one key check, the admin's
changes, and a key's own terms in the books and the rate limiter."""

from __future__ import annotations

import pytest

from flux_worker.cost.books import Books
from flux_worker.cost.budgets import BudgetRules
from flux_worker.cost.ledgers import MemoryLedger, short_hash
from flux_worker.cost.terms import KeyTerms
from flux_worker.cost.throttle import RateLimiter
from flux_worker.errors import (
    AuthenticationError,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    QuotaExceeded,
    RateLimited,
    StorageError,
)
from flux_worker.keys.admin import KeyAdmin
from flux_worker.keys.records import SECRET_PREFIX, IssuedKey, digest_of
from flux_worker.keys.ring import KeyRing
from flux_worker.keys.store import DiskKeys, MemoryKeys, keys_from_location
from flux_worker.keys.wire import KeyChange, KeyCreate, key_object
from flux_worker.storage.location import CountersLocation

MODELS = {"schnell": "@cf/black-forest-labs/flux-1-schnell",
          "@cf/black-forest-labs/flux-1-schnell": "@cf/black-forest-labs/flux-1-schnell",
          "@cf/black-forest-labs/flux-2-klein-4b": "@cf/black-forest-labs/flux-2-klein-4b"}


class Clock:
    def __init__(self, now: float = 1_800_000_000):
        self.now = now

    def __call__(self) -> float:
        return self.now


def model_id(name: str) -> str:
    if name not in MODELS:
        raise ModelNotFound(f"no model {name}", param="models")
    return MODELS[name]


def admin_of(store, clock=None) -> KeyAdmin:
    return KeyAdmin(store, model_id, clock or Clock())


# --- records ------------------------------------------------------------------------------

def test_a_key_keeps_only_a_hash_and_reads_back_the_same():
    key, secret = admin_of(MemoryKeys()).create(KeyCreate(
        name="Alice", daily_usd=1.5, rate_limit="3/minute", models=["schnell"]))
    assert secret.startswith(SECRET_PREFIX) and len(secret) > 40
    text = key.dumps()
    assert secret not in text and secret[len(SECRET_PREFIX):] not in text
    assert IssuedKey.loads(text) == key
    assert key.owner == short_hash(secret) and key.matches(digest_of(secret))
    assert key.terms == KeyTerms(daily_usd=1.5, rate_limit="3/minute",
                                 models=("@cf/black-forest-labs/flux-1-schnell",))
    shown = key_object(key, Clock()())
    assert shown["status"] == "active" and secret not in str(shown)
    assert shown["prefix"].startswith(SECRET_PREFIX) and shown["prefix"].endswith("…")


# --- the stores -----------------------------------------------------------------------------

@pytest.fixture(params=["memory", "disk", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        made = MemoryKeys()
    elif request.param == "disk":
        made = DiskKeys(str(tmp_path / "keys"))
    else:
        url = request.getfixturevalue("redis_url")
        made = keys_from_location(CountersLocation.parse(url))
        made.client.delete("flux-worker:keys")   # the session's Redis: start empty
    yield made
    made.close()


def test_every_store_keeps_finds_changes_and_lists_keys(store):
    assert not store.any() and store.all() == []
    clock = Clock()
    admin = admin_of(store, clock)
    first, secret = admin.create(KeyCreate(name="first"))
    clock.now += 1
    second, _ = admin.create(KeyCreate(name="second", daily_neurons=100))
    assert store.any()
    assert [k.name for k in store.all()] == ["first", "second"]
    assert store.get(first.id) == first
    ring = KeyRing((), store, clock=clock)
    assert ring.find(secret) == first
    assert ring.find(secret + "x") is None
    admin.revoke(first.id)
    assert store.get(first.id).revoked_at == int(clock.now)


def test_two_disk_stores_on_one_directory_see_each_others_keys(tmp_path):
    one, two = DiskKeys(str(tmp_path / "k")), DiskKeys(str(tmp_path / "k"))
    try:
        key, secret = admin_of(one).create(KeyCreate(name="shared"))
        assert KeyRing((), two).find(secret) == key
        admin_of(one).revoke(key.id)
        assert two.get(key.id).revoked_at is not None
    finally:
        one.close()
        two.close()


# --- the key check --------------------------------------------------------------------------

def test_the_ring_takes_api_keys_and_active_run_time_keys_only():
    store, clock = MemoryKeys(), Clock()
    admin = admin_of(store, clock)
    ring = KeyRing(("sk-static",), store, clock=clock)
    assert ring.check("sk-static").key == "sk-static"
    key, secret = admin.create(KeyCreate(name="Bob", expires_in_days=1, daily_neurons=50))
    access = ring.check(secret)
    assert access.key == secret and access.issued == key and access.terms.daily_neurons == 50
    for bad in (None, "", "sk-wrong", SECRET_PREFIX + "guess"):
        with pytest.raises(AuthenticationError):
            ring.check(bad)
    clock.now += 86400
    with pytest.raises(AuthenticationError, match=r"\(Bob\) expired on"):
        ring.check(secret)
    admin.change(key.id, KeyChange(expires_at=None))
    assert ring.check(secret).key == secret
    admin.revoke(key.id)
    with pytest.raises(AuthenticationError, match=r"\(Bob\) was revoked on"):
        ring.check(secret)


def test_an_open_demo_closes_once_the_admin_hands_out_a_key():
    store = MemoryKeys()
    ring = KeyRing((), store)
    assert not ring.closed() and ring.check(None).key is None
    assert ring.check("sk-anything").key is None     # not a key here: ignored, as before
    _, secret = admin_of(store).create(KeyCreate(name="first"))
    assert ring.closed()
    with pytest.raises(AuthenticationError, match="didn't provide"):
        ring.check(None)
    assert ring.check(secret).key == secret
    assert KeyRing((), MemoryKeys(), closed=True).closed()   # a real provider: always closed


def test_an_unreadable_key_store_refuses_rather_than_lets_in():
    class Broken(MemoryKeys):
        def get(self, key_id):
            raise ConnectionError("redis down at 10.0.0.5:6379")

        def any(self):
            raise ConnectionError("redis down")

    ring = KeyRing(("sk-static",), Broken())
    assert ring.check("sk-static").key == "sk-static"   # API_KEY's keys need no store
    with pytest.raises(StorageError) as info:
        ring.check(SECRET_PREFIX + "x" * 43)
    assert "10.0.0.5" not in info.value.message
    with pytest.raises(StorageError):
        KeyRing((), Broken()).check(None)


# --- the admin's changes --------------------------------------------------------------------

def test_changes_keep_what_they_do_not_name_and_null_clears():
    admin = admin_of(MemoryKeys())
    key, _ = admin.create(KeyCreate(name="c", daily_neurons=10, daily_usd=2, models=["schnell"]))
    changed = admin.change(key.id, KeyChange.model_validate({"daily_usd": None, "name": "d"}))
    assert changed.name == "d" and changed.terms.daily_neurons == 10
    assert changed.terms.daily_usd is None and changed.terms.models == (MODELS["schnell"],)
    changed = admin.change(key.id, KeyChange.model_validate({"models": None}))
    assert changed.terms.models is None and changed.terms.allows("anything")


def test_unknown_models_unknown_ids_and_revoked_keys_are_refused():
    admin = admin_of(MemoryKeys())
    with pytest.raises(ModelNotFound):
        admin.create(KeyCreate(name="x", models=["no-such-model"]))
    with pytest.raises(NotFound):
        admin.get("key_missing")
    key, _ = admin.create(KeyCreate(name="x"))
    first = admin.revoke(key.id).revoked_at
    assert admin.revoke(key.id).revoked_at == first
    with pytest.raises(InvalidRequest, match="revoked"):
        admin.change(key.id, KeyChange(name="y"))


@pytest.mark.parametrize("body", [
    {}, {"name": ""}, {"name": "x", "daily_usd": -1}, {"name": "x", "rate_limit": "lots"},
    {"name": "x", "models": []}, {"name": "x", "expires_in_days": 0},
    {"name": "x", "secret": "sk-mine"}, {"name": "x" * 65}])
def test_bad_create_bodies_are_refused(body):
    with pytest.raises(ValueError):
        KeyCreate.model_validate(body)


# --- a key's own terms where they count -----------------------------------------------------

def test_a_run_time_key_budget_replaces_the_default_per_key():
    books = Books(MemoryLedger(), BudgetRules(key_default=1000))
    terms = KeyTerms(daily_neurons=10)
    books.reserve("sk-run", 8, None, terms).settle(8, estimate=8, model="m")
    with pytest.raises(QuotaExceeded, match="budget of 10.0 neurons"):
        books.reserve("sk-run", 8, None, terms)
    assert not books.fits("sk-run", 8, None, terms)
    assert books.fits("sk-run", 8, None)              # the default of 1000 would take it
    line = books.usage_of_key("sk-run", terms=terms)
    assert line["budget_neurons"] == 10 and line["left_neurons"] == 2


def test_a_run_time_key_rate_limit_replaces_rate_limit(tmp_path):
    limiter = RateLimiter("", CountersLocation.parse("memory://"))
    for _ in range(5):
        limiter.hit("sk-open")                         # no RATE_LIMIT: nothing counts
    limiter.hit("sk-run", 1, "2/minute")
    limiter.hit("sk-run", 1, "2/minute")
    with pytest.raises(RateLimited, match="2 per 1 minute"):
        limiter.test("sk-run", "2/minute")
