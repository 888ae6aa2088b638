"""Who asks, as a view hands it to a generation: identity, budget key and cancel signal."""

from __future__ import annotations

from flask import request

from ..chat.streaming import ClientWatch, peer_closed
from ..generation.job import Caller
from .auth import caller_identity, caller_key, caller_terms


def request_caller() -> Caller:
    """The caller of this request, whose cancel event is set once the client has gone.

    A generation checks it before every step that costs, so a client that gave up (timed out,
    closed its stream) stops its generation without any write.
    """
    gone = peer_closed(request.environ.get("gunicorn.socket"))
    return Caller(identity=caller_identity(), key=caller_key(), cancel=ClientWatch(gone),
                  terms=caller_terms())
