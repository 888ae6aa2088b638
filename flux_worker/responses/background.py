"""Background responses: generated in a thread of the service, followed through storage.

POST with `background: true` admits the generation first (rate limit, slot, budget: a caller
over budget gets its 429/402 at once, as a direct request would), stores the response `queued`,
answers, and then a thread of this process reads the answer's pieces, exactly as the direct
request would have. Its state lives in the stored record, so any instance sharing storage can
report it:

- the record is rewritten when the job starts (`in_progress`), every `heartbeat` seconds while
  it runs (a fresh `heartbeat` time), and when it ends (`completed`, `failed` or `cancelled`);
- a reader that finds a `queued`/`in_progress` record whose heartbeat is older than
  RESPONSES_STALE_SECONDS reports it `failed`: its instance died (kill -9, a crash, or a
  shutdown: gunicorn's graceful stop waits for requests, not for these threads), and nothing
  will finish it;
- a cancel, on whichever instance it lands, leaves a mark beside the record (never rewriting
  the record, which only the job writes); the job sees that mark at its next heartbeat (at
  once, when the cancel lands on its own instance). Until the upstream call begins, a cancel
  stops the job: nothing is drawn and nothing charged, the response ends `cancelled`. Once the
  upstream call has begun it cannot be recalled: the job goes on, the response ends
  `completed` and its cost stands (README: Responses API).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..chat.streaming import HEARTBEAT, Background
from ..errors import APIError, Cancelled, ServerError, StorageError
from .answer import Answer
from .store import Record, ResponseStore

log = logging.getLogger(__name__)


class Cutoff(threading.Event):
    """A cancel event that can be set only until the work it guards passes its point of no
    return (`close`, called in the working thread just before the upstream call)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        """The upstream call begins: from now on a cancel is refused (unless already set)."""
        with self._lock:
            if not self.is_set():
                self.closed = True

    def cancel(self) -> bool:
        """Stop the work if it has not passed its point of no return; return whether it will."""
        with self._lock:
            if self.closed:
                return False
            self.set()
            return True


class Jobs:
    """The background responses running in this process, by id."""

    def __init__(self, store: ResponseStore, heartbeat: float):
        self.store = store
        self.heartbeat = heartbeat          # seconds between two signs of life
        self._lock = threading.Lock()
        self._running: dict[str, Cutoff] = {}

    def start(self, answer: Answer, cutoff: Cutoff) -> dict[str, Any]:
        """Store `answer` queued, run it in a thread, return the queued Response.

        `cutoff` must be the cancel event of the answer's caller.
        """
        queued = answer.in_progress("queued")
        record = answer.record(queued)
        record.heartbeat = answer.responses.clock()
        self.store.save(record)      # StorageError: refused before any work
        if answer.turn.generation is not None:
            answer.turn.generation.before_render = cutoff.close
        with self._lock:
            self._running[answer.shell.id] = cutoff
        thread = threading.Thread(target=self._run, args=(answer, cutoff, record),
                                  name="background-response", daemon=True)
        thread.start()
        return queued

    def cancel_here(self, response_id: str) -> bool | None:
        """Cancel a job of this process: True stopped, False too late, None not here."""
        with self._lock:
            cutoff = self._running.get(response_id)
        return None if cutoff is None else cutoff.cancel()

    def _run(self, answer: Answer, cutoff: Cutoff, record: Record) -> None:
        try:
            record.response = answer.in_progress()
            self._beat(answer, record, cutoff)
            pieces = Background(answer.turn.pieces, self.heartbeat, cutoff)
            try:
                for piece in pieces:
                    if piece is HEARTBEAT:
                        self._beat(answer, record, cutoff)
                        continue
                    answer.text.append(str(piece))
            except Cancelled:
                final = answer.cancelled()
            except APIError as exc:
                final = answer.failed(exc)
            except Exception:
                log.exception("background response %s failed unexpectedly", answer.shell.id[:12])
                final = answer.failed(ServerError("The server hit an unexpected error; try "
                                                  "again."))
            else:
                final = answer.completed()
            pieces.join(5)
            done = answer.record(final)
            done.heartbeat = answer.responses.clock()
            self._write(done)
        finally:
            with self._lock:
                self._running.pop(answer.shell.id, None)

    def _beat(self, answer: Answer, record: Record, cutoff: Cutoff) -> None:
        """Refresh the heartbeat, and pick up a cancel asked for on another instance."""
        try:
            if self.store.cancel_asked(answer.shell.id, answer.owner):
                cutoff.cancel()
        except StorageError as exc:
            log.warning("background response %s: cancel mark unreadable: %s",
                        answer.shell.id[:12], exc.message)
        record.heartbeat = answer.responses.clock()
        self._write(record)

    def _write(self, record: Record) -> None:
        try:
            if self.store.deleted(record.id, record.owner):
                return              # deleted while it ran: nothing to bring back
            self.store.save(record)
            if self.store.deleted(record.id, record.owner):
                # The delete landed between the look and the write: undo the write.
                self.store.images.delete(self.store.storage_key(record.id, record.owner))
        except StorageError as exc:
            # A missed write only ages the heartbeat; the next one, or the final one, may land.
            log.warning("background response %s not saved: %s", record.id[:12], exc.message)
