"""Run-time API keys: keys the admin creates, changes and revokes while the service runs.

    records.py   IssuedKey (what is kept of a key: never its secret, only a hash) and its secret
    store.py     where they are kept: the counters store (COUNTERS_URL), so every instance sees
                 a new or revoked key on its next request
    ring.py      KeyRing: the one check of a presented Bearer key, API_KEY's and the issued ones
    wire.py      the admin API's request bodies and key objects
"""
