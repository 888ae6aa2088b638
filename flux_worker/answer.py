"""The chat answer: the markdown lines of one generation, produced as each becomes known.

`chat_answer` is a generator so the same code serves both forms: the non-stream view joins
the pieces, the stream view sends each as a chunk. That is what keeps the two identical.
"""

from __future__ import annotations

from typing import Iterator

from .messages import Phrasebook
from .pipeline import ImageJob, ImageResult, Pipeline


def chat_answer(job: ImageJob, pipeline: Pipeline, words: Phrasebook,
                image_url) -> Iterator[str]:
    """Yield the answer's pieces: the prompt line, the plan, then the image once it exists.

    `image_url(key)` turns a storage key into an absolute link. Errors from the pipeline
    propagate; the caller decides whether they become an HTTP error or a last chunk.
    """
    yield words("original", job.original) + "\n"
    choice = pipeline.choose_prompt(job)
    lines = [
        words("prompt_model", choice.model or words("no_translation")),
        words("translated", choice.prompt),
    ]
    if choice.skipped:
        lines.append(words("skipped", reason=choice.skipped))
    lines.append(words("size", job.size))
    if job.seed is not None:
        lines.append(words("seed", job.seed))
    if job.ignored:
        lines.append(words("ignored", model=job.model.short_name, options=", ".join(job.ignored)))
    yield "\n".join(lines) + "\n"
    result: ImageResult = pipeline.render(job, choice.prompt)
    yield (f"{words('success')}\n{words('result')}\n\n"
           f"![{words('alt')}]({image_url(result.key)})")
