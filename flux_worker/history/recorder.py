"""History: what a generation stored, recorded for its owner; listed and deleted for the API.

A generation that succeeded is never failed by its history: a write that fails is logged as a
WARNING and counted (metrics), and the image is answered as usual. Reading and deleting do
fail, as a 503 storage_error, because then the history is what was asked for.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from .. import metrics
from ..errors import NotFound, StorageError
from ..generation.job import Caller, ImageJob, ImageResult
from ..storage.base import ImageStore
from .entries import HistoryEntry, Page, UnknownAfter, new_entry_id, owner_of
from .stores import HistoryStore

log = logging.getLogger(__name__)


class History:
    """Each owner's kept images: recorded after each generation, listed newest first."""

    def __init__(self, store: HistoryStore, images: ImageStore, expiration: int,
                 clock: Callable[[], float] = time.time):
        """`expiration` is IMAGE_EXPIRATION: an entry lives as long as its image (0: for ever)."""
        self.store = store
        self._images = images
        self._expiration = expiration
        self._clock = clock

    def record(self, caller: Caller, job: ImageJob, prompt: str,
               results: Sequence[ImageResult]) -> None:
        """Add one entry per stored image; a failure is logged and counted, never raised."""
        now = self._clock()
        revised = prompt if prompt != job.prompt else None
        # The batch's first image listed first (newest): added last, a microsecond later.
        for i, result in reversed(list(enumerate(results))):
            model = result.model or job.model
            entry = HistoryEntry(
                id=new_entry_id(), owner=owner_of(caller.key), image_keys=(result.key,),
                prompt=job.original, revised_prompt=revised, model=model.id,
                provider=model.provider, size=f"{result.width}x{result.height}",
                created=now - i / 1e6,
                expires_at=int(now + self._expiration) if self._expiration else None,
                neurons=result.neurons, usd=result.usd)
            try:
                self.store.add(entry)
            except Exception as exc:  # any store's failure: the image was made and is kept
                metrics.observe_history_failure()
                log.warning("could not record image %s in the history: %s: %s",
                            result.key[:6], type(exc).__name__, exc)

    def page(self, owner: str | None, limit: int, after: str | None) -> Page:
        """`owner`'s entries (None: everyone's), newest first.

        :raises UnknownAfter: `after` is not in that listing.
        :raises StorageError: the history cannot be read.
        """
        return self._guarded(lambda: self.store.page(owner, limit, after))

    def delete(self, entry_id: str, owner: str | None) -> HistoryEntry:
        """Delete `owner`'s entry (None: anyone's) and its images.

        :raises NotFound: no such entry for that owner (another's reads the same).
        :raises StorageError: the history or the images cannot be changed.
        """
        entry = self._guarded(lambda: self.store.get(entry_id))
        if entry is None or (owner is not None and entry.owner != owner):
            raise NotFound(f"No image with id '{entry_id}' in your history: it was deleted, "
                           "has expired, or the id is wrong. GET /v1/images/history lists "
                           "yours.", param="id", code="history_entry_not_found")
        for key in entry.image_keys:
            self._images.delete(key)
        self._guarded(lambda: self.store.remove(entry))
        return entry

    def close(self) -> None:
        """Release connections and files."""
        self.store.close()

    @staticmethod
    def _guarded(call: Callable):
        try:
            return call()
        except (StorageError, UnknownAfter):
            raise
        except Exception as exc:  # Redis, SQLite and OS errors alike: the history is down
            log.warning("history unavailable: %s: %s", type(exc).__name__, exc)
            raise StorageError("The image history cannot be read right now. Try again "
                               "shortly; images themselves are not affected.") from exc
