"""The chat answer: the markdown lines of one generation, and their SSE events.

`chat_answer` is a generator so the same code serves both forms: the non-stream view joins
the pieces, the stream sends each as a chunk. That is what keeps the two identical.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable, Iterator

from ..cost.admission import Ticket
from ..cost.books import Hold
from ..cost.money import neurons_text, usd_text
from ..errors import APIError
from ..generation.pipeline import ImageJob, ImageResult, Pipeline
from ..openai_api import answers
from .phrases import Phrasebook
from .streaming import HEARTBEAT

log = logging.getLogger(__name__)


def chat_answer(job: ImageJob, pipeline: Pipeline, words: Phrasebook,
                image_url: Callable[[str], str],
                cancel: threading.Event | None = None, hold: Hold | None = None,
                show_cost: bool = False) -> Iterator[str]:
    """Yield the answer's pieces: the prompt line, the plan, then the image once it exists.

    `image_url(key)` turns a storage key into an absolute link. Errors from the pipeline
    propagate; the caller decides whether they become an HTTP error or a last chunk. The image's
    neurons are settled on `hold` and, with `show_cost`, told in a last line.
    """
    yield words("original", job.original) + "\n"
    choice = pipeline.choose_prompt(job, cancel)
    lines = [
        words("prompt_model", choice.model or words("no_translation")),
        words("translated", choice.prompt),
    ]
    if choice.skipped:
        lines.append(words("skipped", reason=choice.skipped))
    yield "\n".join(lines + plan_lines(job, words)) + "\n"
    result: ImageResult = pipeline.render(job, choice.prompt, cancel=cancel, hold=hold)
    yield from image_pieces(result, words, image_url, show_cost)


def plan_lines(job: ImageJob, words: Phrasebook) -> list[str]:
    """The lines every answer shows about its plan: size, seed, options ignored or clamped."""
    lines = [words("size", job.size)]
    if job.seed is not None:
        lines.append(words("seed", job.seed))
    if job.ignored:
        lines.append(words("ignored", model=job.model.short_name, options=", ".join(job.ignored)))
    if job.clamped:
        lines.append(words("clamped", model=job.model.short_name, options=", ".join(job.clamped)))
    return lines


def image_pieces(result: ImageResult, words: Phrasebook, image_url: Callable[[str], str],
                 show_cost: bool = False) -> Iterator[str]:
    """Yield the image piece of a chat answer (and, with show_cost, what it cost).

    The end of every chat answer that made an image: a new picture's and an edit's.
    """
    yield (f"{words('success')}\n{words('result')}\n\n"
           f"![{words('alt')}]({image_url(result.key)})")
    if show_cost and result.neurons is not None:
        yield "\n\n" + words("cost", neurons=neurons_text(result.neurons),
                              usd=usd_text(result.neurons))


class ImageLinks:
    """Turns storage keys into links and keeps them, for answers that also list their images.

    The answer calls it just before yielding the piece with the image, so by the time a reader
    has that piece, its link is here (OpenRouter's `images`, asked for with `modalities`).
    """

    def __init__(self, link: Callable[[str], str]):
        self._link = link
        self.urls: list[str] = []

    def __call__(self, key: str) -> str:
        url = self._link(key)
        self.urls.append(url)
        return url


def holding(pieces: Iterator[str], ticket: Ticket) -> Iterator[str]:
    """The pieces of an answer, giving the ticket (slots, unsettled neurons) back when they end."""
    try:
        yield from pieces
    finally:
        ticket.release()


def sse_events(pieces: Iterable[object], writer: answers.ChunkWriter, prompt: str,
               words: Phrasebook, images: ImageLinks | None = None) -> Iterator[str]:
    """The SSE events of one streamed answer; a failure becomes the last content chunk.

    With `images`, the chunk that brings an image also carries it as `delta.images`.
    """
    yield writer.role()
    sent: list[str] = []
    shown = 0
    try:
        for piece in pieces:
            if piece is HEARTBEAT:
                yield writer.content("")
                continue
            assert isinstance(piece, str)
            sent.append(piece)
            new = images.urls[shown:] if images is not None else []
            shown += len(new)
            yield writer.content(piece, images=new or None)
    except APIError as exc:
        log.warning("stream failed after %d pieces: %s %s", len(sent), exc.code, exc.message)
        yield writer.content(("\n" if sent else "") + words("failed", exc.message))
    except Exception:
        log.exception("stream failed unexpectedly")
        yield writer.content(("\n" if sent else "") + words(
            "failed", "the server hit an unexpected error; try again."))
    yield writer.finish("stop")
    if writer.include_usage:
        yield writer.usage(answers.usage(prompt, "".join(sent)))
    yield answers.DONE
