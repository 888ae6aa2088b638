"""The chat answer: the markdown lines of one generation, and their SSE events (no Flask).

`chat_answer` and `edit_answer` are generators so the same code serves both forms: the
non-stream view joins the pieces, the stream sends each as a chunk. That is what keeps the two
identical.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

from ..cost.money import dollars_text, neurons_text, usd_text
from ..errors import APIError
from ..generation.job import ImageJob, ImageResult
from ..generation.service import Generation
from ..openai_api import answers
from .phrases import Phrasebook
from .streaming import HEARTBEAT, Progress

log = logging.getLogger(__name__)


def chat_answer(generation: Generation, words: Phrasebook, image_url: Callable[[str], str],
                show_cost: bool = False) -> Iterator[str]:
    """Yield a new picture's answer: the prompt line, the plan, then the image once it exists.

    `image_url(key)` turns a storage key into an absolute link. Errors from the pipeline
    propagate; the caller decides whether they become an HTTP error or a last chunk. With
    `show_cost`, a last line tells what the image cost. The generation is closed when the
    pieces end, however they end.
    """
    with generation:
        job = generation.job
        yield words("original", job.original) + "\n"
        choice = generation.choose_prompt()
        lines = [
            words("prompt_model", choice.model or words("no_translation")),
            words("translated", choice.prompt),
        ]
        if choice.skipped:
            lines.append(words("skipped", reason=choice.skipped))
        yield "\n".join(lines + plan_lines(job, words)) + "\n"
        yield from image_pieces(generation.render(choice.prompt), words, image_url, show_cost)


def edit_answer(generation: Generation, words: Phrasebook, image_url: Callable[[str], str],
                show_cost: bool = False) -> Iterator[str]:
    """Yield an edit's answer: references, instruction, model, size, then the image."""
    with generation:
        job = generation.job
        refs = []
        for index, image in enumerate(job.images, start=1):
            refs.append(f"[{index}]({image.link})" if image.link
                        else words("attached", n=index, size=image.size))
        yield words("references", " ".join(refs)) + "\n"
        lines = [words("instruction", job.prompt)]
        choice = generation.choose_prompt()
        if choice.model:
            lines += [words("prompt_model", choice.model), words("translated", choice.prompt)]
        if choice.skipped:
            lines.append(words("skipped", reason=choice.skipped))
        if job.requested is not None:
            lines.append(words("model_instead", model=job.model.short_name,
                               requested=job.requested.short_name))
        else:
            lines.append(words("model", job.model.short_name))
        yield "\n".join(lines + plan_lines(job, words)) + "\n"
        yield from image_pieces(generation.render(choice.prompt), words, image_url, show_cost)


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
    fallback = ""
    if result.fallback is not None and result.model is not None and result.tried:
        # The EDIT_MODEL line's sibling: the model that drew, known only now.
        fallback = words("model_fallback", model=result.model.short_name,
                         requested=result.tried[0], reason=result.fallback) + "\n"
    yield (f"{fallback}{words('success')}\n{words('result')}\n\n"
           f"![{words('alt')}]({image_url(result.key)})")
    if show_cost and result.neurons is not None:
        yield "\n\n" + words("cost", neurons=neurons_text(result.neurons),
                              usd=usd_text(result.neurons))
    elif show_cost and result.usd is not None:
        # A model billed in dollars only (a partner model): its price, no neurons.
        yield "\n\n" + words("cost_usd", usd=dollars_text(result.usd))


class LinkCollector:
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


def sse_events(pieces: Iterable[object], writer: answers.ChunkWriter, prompt: str,
               words: Phrasebook, images: LinkCollector | None = None) -> Iterator[str]:
    """The SSE events of one streamed answer; a failure becomes the last content chunk.

    With `images`, the chunk that brings an image also carries it as `delta.images`.
    """
    yield writer.role()
    sent: list[str] = []
    shown = 0
    steps: Progress | None = None      # the last progress shown, on the line still open
    try:
        for piece in pieces:
            if piece is HEARTBEAT:
                yield writer.content("")
                continue
            if isinstance(piece, Progress):
                # One line of steps while the model draws ("⏳ Step 3 of 20 … Step 4 of 20"),
                # ended before the next piece; a repeated step is not shown twice.
                if piece != steps:
                    text = (" … " if steps else "") + words("progress", step=piece.step,
                                                            total=piece.total)
                    steps = piece
                    sent.append(text)
                    yield writer.content(text)
                continue
            assert isinstance(piece, str)
            if steps is not None:
                piece, steps = "\n" + piece, None
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
