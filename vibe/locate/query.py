"""The photo-to-views step of a query, in one place: what an uploaded photo is searched as. The product framed on
white when framing finds a plain backdrop; else the whole photo, nine crops and the segmenter's cut-out, of which
retrieval keeps the view that looks most like some catalogue photo."""
from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from .framing import VERSION as FRAMING_VERSION
from .framing import Framing, crops, frame_product

GRID = 3  # crops: GRID x GRID windows


@dataclass
class QueryViews:
    """What one query photo is searched as: its views (PIL images, ready to embed), what each one is, and what
    framing found (None when the backbone does not frame photos)."""

    views: list[Image.Image]
    names: list[str]
    framing: Framing | None = None
    boxes: list[tuple[int, int, int, int] | None] = field(default_factory=list)

    def note(self, picked: int) -> str:
        """How the query was searched, for the page and the CLI."""
        if self.framing is None:
            return "searched as it is (this backbone does not frame photos)"
        if self.framing.applied:
            return "the product was found on a plain backdrop and framed on white"
        return (f"no plain backdrop to frame it on ({self.framing.reason}): searched as {self.names[picked]}, the best "
                f"of {len(self.views)} views")


class Locator:
    """Makes the views of query photos for an encoder: `side` is the long side the encoder needs (its frame_side)."""

    def __init__(self, frames: bool, side: int, segmenter=None):
        """`segmenter`: a Segmenter, False for none, or None for the shipped one (loaded when first needed)."""
        self.frames, self.side = frames, side
        self._segmenter = segmenter

    @classmethod
    def for_encoder(cls, encoder) -> "Locator":
        return cls(encoder.framing, encoder.frame_side)

    @property
    def segmenter(self):
        """The product segmenter (vibe.locate.segment), loaded on the first photo framing leaves alone."""
        if self._segmenter is None:
            from .segment import load_segmenter

            self._segmenter = load_segmenter() or False
        return self._segmenter or None

    @property
    def version(self) -> str:
        """What decides a photo's views besides the photo: part of the cache key of an embedded re-shot photo."""
        seg = self.segmenter.digest if self.frames and self.segmenter else None
        return f"{FRAMING_VERSION if self.frames else None}:crops-{GRID * GRID}:segmenter-{seg}"

    def views(self, photo: Image.Image) -> QueryViews:
        """The views of one decoded RGB photo (see the module doc)."""
        if not self.frames:
            return QueryViews([photo], ["the photo as it is"])
        framed, found = frame_product(photo, self.side)
        if found.applied:
            return QueryViews([framed], ["the framed product"], found, [found.box])
        cut = self.segmenter.cut_out(photo) if self.segmenter else None
        views = [photo, *crops(photo, grid=GRID)]
        names = ["the whole photo", *(f"crop {i} of {GRID * GRID} (70 % of each side)" for i in range(1, GRID * GRID + 1))]
        if cut is not None:
            views.append(self.segmenter.view(photo, self.side, cut))
            names.append("the product as the segmenter cut it out, on white")
        return QueryViews(views, names, found)
