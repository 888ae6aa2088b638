"""The value types of image input: where an image comes from, and the checked image (no Pillow).

An `ImageSource` is what a request names (an upload's bytes, a `data:` URL, a link); nothing has
been read or decoded yet, so a generation can be admitted (rate limit, slot, budget) before the
first download or decode. The intake turns each source into an `InputImage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageSource:
    """An image a request names, not yet read: uploaded bytes or a URL, and what to call it."""

    label: str                                  # "image[0]", "mask", "attached image 1", ...
    data: bytes | None = field(default=None, repr=False)   # an upload's bytes
    url: str | None = None                      # a data: URL, an own link or a remote link

    @classmethod
    def upload(cls, data: bytes, label: str) -> "ImageSource":
        """An uploaded file's bytes."""
        return cls(label, data=data)

    @classmethod
    def link(cls, url: str, label: str) -> "ImageSource":
        """A URL: `data:`, this service's own image link, or (when allowed) a remote link."""
        return cls(label, url=url)


@dataclass(frozen=True)
class InputImage:
    """One checked input image: PNG bytes of the upright picture, and where it came from."""

    data: bytes = field(repr=False)
    width: int
    height: int
    alpha: bool                 # the picture has an alpha channel (kept for masks)
    label: str                  # what the user called it: "image[0]", "data URL", a link
    link: str | None = None     # an http(s) link worth showing in an answer, when there is one

    @property
    def size(self) -> str:
        """The size as `WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"
