"""One redaction for logs, quoted upstream errors and URLs."""

from __future__ import annotations

from flux_worker.redaction import redact, url_secrets


def test_secrets_and_bearer_tokens_are_masked_longest_first():
    text = "key sk-alice-long and sk-alice, header Authorization: Bearer abcdef123456"
    assert redact(text, ("sk-alice", "sk-alice-long", "")) == \
        "key *** and ***, header Authorization: Bearer ***"


def test_url_passwords_as_written_and_decoded():
    assert set(url_secrets("redis://:p%40ss@host:6379/0")) == {"p%40ss", "p@ss"}
    assert url_secrets("redis://host:6379/0") == ()
    assert url_secrets("redis://[bad") == ()
    assert redact("auth p@ss failed", url_secrets("redis://:p%40ss@h/0")) == "auth *** failed"
