"""The Responses API: POST /v1/responses and the stored responses' routes. Views stay thin.

The logic is in `flux_worker.responses`: the request model, the chat turn behind each request,
the Response objects and events, the store and the background jobs. These views parse, build
the caller, and send what comes back, as JSON or as server-sent events.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterable

from flask import Blueprint, Response, g, jsonify, request

from ..errors import InvalidRequest, NotFound
from ..responses import events
from ..responses.background import Cutoff
from ..responses.output import FINAL
from ..responses.request import parse_response_request
from ..responses.store import Record, owner_of
from .auth import caller_key, require_api_key
from .base_url import image_linker, public_base_url
from .body import json_body
from .callers import request_caller
from .context import services
from .image_answers import tell_neurons
from .streams import in_background, sse_response

bp = Blueprint("responses", __name__)

# How long a cancel waits for its job to reach a final state before answering as it stands.
CANCEL_WAIT = 10.0
LIST_LIMIT_MAX = 100


@bp.before_request
def authenticate() -> None:
    require_api_key()


@bp.post("/responses")
def create_response() -> Response:
    """Turn the input into an image; answer a Response, its events, or a queued Response."""
    svc = services()
    req = parse_response_request(json_body())
    caller = request_caller()
    cutoff = None
    if req.background:
        # The job outlives this request: its cancel is the cancel endpoint's, not the socket's.
        cutoff = Cutoff()
        caller = replace(caller, cancel=cutoff)
    answer = svc.responses.start(req, caller, image_linker(public_base_url()))
    g.model = answer.turn.model
    if cutoff is not None:
        try:
            queued = svc.jobs.start(answer, cutoff)
        except BaseException:
            if answer.turn.generation is not None:
                answer.turn.generation.close()
            raise
        owner = answer.owner
        reply = (_follow(answer.shell.id, owner) if req.stream else jsonify(queued))
        tell_neurons(reply, answer.turn.estimate)
        return reply
    if not req.stream:
        final = answer.read_all()
        answer.keep(final)
        reply = jsonify(final)
        tell_neurons(reply, answer.turn.neurons)
        return reply
    pieces: Iterable[object] = answer.turn.pieces
    if answer.turn.generation is not None:
        pieces = in_background(answer.turn.pieces, caller)
    reply = sse_response(events.stream(answer, pieces), caller=caller)
    tell_neurons(reply, answer.turn.estimate)     # headers go first: the estimate
    return reply


@bp.get("/responses/<response_id>")
def get_response(response_id: str) -> Response:
    """A stored response, as it stands (a background one: queued, in progress or final).

    `?stream=true` sends its events from the first, following a running one to its end;
    `starting_after=N` leaves out the events numbered up to N.
    """
    svc = services()
    record = _record(response_id)
    stream = request.args.get("stream", "false").lower()
    if stream not in ("true", "false"):
        raise InvalidRequest("`stream` must be true or false.", param="stream")
    if stream == "false":
        return jsonify(svc.responses.view(record))
    after = request.args.get("starting_after", "-1")
    if not after.lstrip("-").isdigit():
        raise InvalidRequest("`starting_after` must be a whole number: the last "
                             "`sequence_number` received.", param="starting_after")
    return _follow(response_id, record.owner, starting_after=int(after))


def _follow(response_id: str, owner: str, *, starting_after: int = -1) -> Response:
    """A stored response's events, as server-sent events (events.follow)."""
    svc = services()

    def read() -> dict | None:
        record = svc.responses.read(response_id, owner)
        return svc.responses.view(record) if record is not None else None

    return sse_response(events.follow(read, starting_after=starting_after))


@bp.delete("/responses/<response_id>")
def delete_response(response_id: str) -> Response:
    svc = services()
    if not svc.responses.store.delete(response_id, owner_of(caller_key())):
        raise _missing(response_id)
    svc.jobs.cancel_here(response_id)     # still running here: stop it (elsewhere: the mark)
    return jsonify({"id": response_id, "object": "response", "deleted": True})


@bp.post("/responses/<response_id>/cancel")
def cancel_response(response_id: str) -> Response:
    """Stop a background response before its upstream call; else say how it ended."""
    svc = services()
    owner = owner_of(caller_key())
    record = _record(response_id)
    if not record.response.get("background"):
        raise InvalidRequest("Only background responses can be cancelled.", param="response_id")
    if record.status not in FINAL:
        svc.responses.store.mark_cancel(response_id, owner)
        svc.jobs.cancel_here(response_id)
        deadline = time.monotonic() + CANCEL_WAIT
        while record.status not in FINAL and time.monotonic() < deadline:
            time.sleep(0.1)
            record = svc.responses.read(response_id, owner) or record
    return jsonify(svc.responses.view(record))


@bp.get("/responses/<response_id>/input_items")
def input_items(response_id: str) -> Response:
    """The items a response was made from, as OpenAI lists them (limit, order, after)."""
    items = list(_record(response_id).input)
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest('`order` must be "asc" or "desc".', param="order")
    raw_limit = request.args.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIST_LIMIT_MAX:
        raise InvalidRequest(f"`limit` must be a whole number from 1 to {LIST_LIMIT_MAX}.",
                             param="limit")
    if order == "desc":
        items.reverse()
    after = request.args.get("after")
    if after:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"`after` names no item of this response: {after!r}.",
                                 param="after")
        items = items[ids.index(after) + 1:]
    page = items[:int(raw_limit)]
    return jsonify({"object": "list", "data": page,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                    "has_more": len(items) > len(page)})


def _record(response_id: str) -> Record:
    found = services().responses.read(response_id, owner_of(caller_key()))
    if found is None:
        raise _missing(response_id)
    return found


def _missing(response_id: str) -> NotFound:
    kept = services().config.image_expiration
    return NotFound(f"Response {response_id!r} was not found: it was not stored, was made with "
                    "another key, was deleted, or has expired with its image"
                    + (f" (kept {kept} seconds)." if kept else "."),
                    param="response_id", code="response_not_found")
