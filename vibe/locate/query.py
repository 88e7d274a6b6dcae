"""The photo-to-views step of a query, in one place: what an uploaded photo is searched as. A photo of one product on a
plain backdrop is framed on white, as catalogue photos are shot. Any other photo gets product proposals (every product
found, best first, as in Google Lens); the first few are cut out of their boxes, re-centred on white and searched, the
most catalogue-like kept, and any other one, or a box the user draws, can be searched instead."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import VibeError
from .boxes import check_box, iou
from .framing import VERSION as FRAMING_VERSION
from .framing import Framing, crops, frame_product, on_white, reduced
from .grabcut import VERSION as GRABCUT_VERSION
from .grabcut import cut_in_box
from .proposals import Proposal

VERSION = "views-8"  # how views are made from proposals and framing: change it when that changes (6: FRAME_LIGHT;
# 8: a clipped backdrop channel's cast read off the other two; 7 was an experiment's, not kept)
EXTRA = ("whole", "cutout")  # searched beside the first proposals of a photo framing cannot take
# A photo framing cannot take is searched as each of its first TRY proposals (and EXTRA), the most catalogue-like kept:
# on a real-photo backdrop the most prominent box is often a piece of the backdrop (a cat, coins, a motorcycle). A
# proposal under TRY_AREA of the first one's area is left out: a page's thumbnails of other products are catalogue-like
# too. Chosen on the held-out calibrate part (300 photos a kind, same mode recall@1): the first proposal alone: real
# backdrop 0.327, page 0.897; the first 4: 0.403, 0.733; the first 4 with TRY_AREA 0.4: 0.383, 0.903 (phone 0.670 all).
TRY, TRY_AREA = 4, 0.4
GRID = 3  # without a detector: GRID x GRID fixed crops
# a plain backdrop this light and this close to grey, but not white, may be white under a colour cast (a warm or a cool
# white balance) or a cream sheet of paper: the product is searched both as it is and evened out so the backdrop is white
LIGHT_BACKDROP, MAX_CAST = 175, 1.3
CLIPPED = 252  # a backdrop channel this bright may be clipped (a warm light's red on a white sheet): its cast is unread
PAD = 0.06  # a box is cropped with this share of its side around it: the edges of the product stay in
# a box whose plain backdrop is this light in every channel (white, a page, a light card) is framed; on any other plain
# backdrop (a table, the floor, a coloured sheet under uneven light) GrabCut cuts it out, as it finds the product more
# often there (why is not clear: both cut-outs' silhouettes are as close to the catalogue photo's). Chosen on the
# held-out calibrate part (150 photos a kind, the detector's first box where framing applies in it, rank 1 with no
# filters): framing in every box: phone shot 75 of 101, real backdrop 9 of 28, page 138 of 147; GrabCut in every box:
# 82, 11, 134; this rule, at any cut from 215 to 240: 82, 11, 138. A whole photo that framing takes stays framed
# whatever its backdrop: GrabCut there lost tinted re-shoots (uniform colour, where framing is exact; 150 holdout
# photos, 0.987 -> 0.933)
FRAME_LIGHT = 230
# the views of several proposals are cut at once (GrabCut and the segmenter release the GIL): a query waits for the
# slowest cut, not their sum
_VIEWS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vibe-views")


@dataclass
class QueryViews:
    """What one query photo is searched as. `views` (PIL images, ready to embed) with what each one is (`names`) and the
    box it was cut from; `proposals`: every product found in the photo, best first; `sources`: the proposal each view
    was cut from (None: the whole photo, a cut-out of it, a drawn box); `framing`: what framing found (None: this
    backbone does not frame)."""

    views: list[Image.Image]
    names: list[str]
    framing: Framing | None = None
    boxes: list[tuple[int, int, int, int] | None] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    sources: list[int | None] = field(default_factory=list)
    photo: Image.Image | None = field(default=None, repr=False)  # the decoded photo the boxes are in

    def proposal(self, view: int) -> int | None:
        """The proposal view number `view` was cut from (None: not a proposal)."""
        return self.sources[view] if view < len(self.sources) else None

    @property
    def scale(self) -> float:
        """The original photo's pixels per pixel of `photo` (a large JPEG is decoded reduced)."""
        return float(self.photo.info.get("scale", 1.0)) if self.photo is not None else 1.0

    def in_photo(self, box) -> list[int] | None:
        """A box of the decoded photo in the original photo's pixels (what the user sees and gives)."""
        return None if box is None else [int(round(v * self.scale)) for v in box]

    def note(self, view: int) -> str:
        """How the query was searched, for the page and the CLI."""
        if self.framing is None:
            return "searched as it is (this backbone does not frame photos)"
        name = self.names[view]
        if len(self.views) > 1:
            return f"searched as {name}: of the {len(self.views)} views tried, the one closest to a catalogue photo"
        return f"searched as {name}"


def _inside(box, outer, share: float = 0.8) -> bool:
    """Whether at least `share` of `box` lies inside `outer`."""
    w = max(0, min(box[2], outer[2]) - max(box[0], outer[0]))
    h = max(0, min(box[3], outer[3]) - max(box[1], outer[1]))
    return w * h >= share * max(1, (box[2] - box[0]) * (box[3] - box[1]))


def _area(box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def tried(proposals: list[Proposal]) -> list[int]:
    """The proposals a default search tries: the first TRY, less those under TRY_AREA of the first one's area."""
    first = _area(proposals[0].box)
    return [i for i, p in enumerate(proposals[:TRY]) if i == 0 or _area(p.box) >= TRY_AREA * first]


def white_gains(background) -> np.ndarray | None:
    """Per-channel gains that make a light, near-neutral backdrop white (a white balance read off the backdrop, the
    way a camera's white-patch correction works); None when it is white already, dark, or plainly coloured."""
    if background is None:
        return None
    bg = np.asarray(background, dtype=np.float32)
    r, g, b = bg
    if bg.min() < LIGHT_BACKDROP or bg.max() / max(bg.min(), 1.0) > MAX_CAST or 255 - bg.min() <= 6:
        return None
    if not min(r, b) - 4 <= g <= max(r, b) + 4:  # light casts run from warm to cool (red against blue): a pink or a
        return None  # green backdrop is a colour, not a white balance
    gains = 255.0 / np.maximum(bg, 1.0)
    clipped = bg >= CLIPPED
    if clipped[0] != clipped[2] and not clipped[1]:
        # red (or blue) clipped on the backdrop, the other two under it: along the warm-cool axis a change of light
        # scales red and blue reciprocally against green ((R/G)(B/G) stays put, as cameras' white-balance multipliers
        # do), so the clipped channel's cast is read off the other two. Chosen on the held-out calibrate part (300
        # white-balance photos, same mode recall@1): 0.797 with the clipped channel left alone, 0.910 with it read so
        # (236 of the 300 had one channel clipped); tinted re-shoots 0.957 both
        cast = bg / 255.0
        clipped_at, other = (0, 2) if clipped[0] else (2, 0)
        gains[clipped_at] = cast[other] / cast[1] ** 2
    return gains


def balanced(photo: Image.Image, gains: np.ndarray) -> Image.Image:
    """`photo` with each channel multiplied by its gain (clipped at white); its info (the decode scale) kept. A channel
    clipped in the photo stays clipped (a gain under 1 does not turn a white backdrop cyan: 0.910 -> 0.937 on the
    calibrate part's white-balance photos)."""
    lut = [255 if v >= CLIPPED else min(255, int(round(v * g))) for g in gains for v in range(256)]
    out = photo.point(lut)
    out.info.update(photo.info)
    return out


class Locator:
    """Makes the views of query photos for an encoder: `side` is the long side the encoder needs (its frame_side)."""

    def __init__(self, frames: bool, side: int, segmenter=None, detector=None):
        """`segmenter`, `detector`: the model to use, False for none, or None for the shipped one (loaded when needed)."""
        self.frames, self.side = frames, side
        self._segmenter, self._detector = segmenter, detector

    @classmethod
    def for_encoder(cls, encoder) -> "Locator":
        return cls(encoder.framing, encoder.frame_side)

    @property
    def segmenter(self):
        """The product segmenter (vibe.locate.segment): the cut-out of a box that GrabCut and framing cannot take."""
        if self._segmenter is None:
            from .segment import load_segmenter

            self._segmenter = load_segmenter() or False
        return self._segmenter or None

    @property
    def detector(self):
        """The proposal detector (vibe.locate.proposals)."""
        if self._detector is None:
            from .proposals import load_detector

            self._detector = load_detector() or False
        return self._detector or None

    @property
    def version(self) -> str:
        """What decides a photo's views besides the photo: part of the cache key of an embedded re-shot photo."""
        if not self.frames:
            return "unframed"
        seg = self.segmenter.digest if self.segmenter else None
        det = self.detector.digest if self.detector else f"none:crops-{GRID * GRID}"
        return f"{FRAMING_VERSION}:{VERSION}:{GRABCUT_VERSION}:proposals-{det}:segmenter-{seg}"

    def propose(self, photo: Image.Image) -> tuple[list[Proposal], Framing | None, Image.Image | None, Proposal | None]:
        """Every product in the photo, best first; what framing found; the framed photo when framing applies; and the
        detector's own best box when it disagrees with framing's (a gradient or a vignette can pass for a plain
        backdrop). A photo of one product on a plain backdrop is its own proposal (the framed box) and comes first."""
        if not self.frames:
            return [], None, None, None
        framed, found = frame_product(photo, self.side)
        found_boxes = self.detector.propose(photo) if self.detector else []
        if found.applied:  # a plain backdrop: framing knows where the product is (other products stay to pick from)
            others = [p for p in found_boxes if iou(p.box, found.box) < 0.3]
            rival = found_boxes[0] if found_boxes and iou(found_boxes[0].box, found.box) < 0.5 else None
            framed_box = Proposal(found.box, 1.0)
            if rival is not None and rival in others and _inside(rival.box, found.box):
                # framing boxed several things as one (a page: the photo, its text, the thumbnails; a table of products):
                # the detector's product inside it comes first
                return [rival, framed_box, *[p for p in others if p is not rival]], found, framed, rival
            return [framed_box, *others], found, framed, rival
        return found_boxes, found, None, None

    def view(self, photo: Image.Image, box: tuple[int, int, int, int]) -> tuple[Image.Image, str]:
        """The product inside `box`, re-centred on white: framed when the box's own backdrop is plain and light
        (FRAME_LIGHT), else cut out of its box (vibe.locate.grabcut), else framed if its backdrop is plain, else cut
        out by the segmenter, else the box's contents as they are on a white margin. (view, how it was made)."""
        w, h = box[2] - box[0], box[3] - box[1]
        pad = (int(w * PAD), int(h * PAD))
        crop = photo.crop((max(0, box[0] - pad[0]), max(0, box[1] - pad[1]), min(photo.width, box[2] + pad[0]),
                           min(photo.height, box[3] + pad[1])))
        framed, found = frame_product(crop, self.side)
        if found.applied and min(found.background) >= FRAME_LIGHT:
            return framed, "framed on white"
        cut = cut_in_box(photo, box, self.side)
        if cut is not None:
            return cut, "cut out of its box"
        if found.applied:
            return framed, "framed on white"
        cut = self.segmenter.cut_out(crop) if self.segmenter else None
        if cut is not None:
            return self.segmenter.view(crop, self.side, cut), "cut out on white"
        return on_white(reduced(crop, self.side)), "as it is"

    def views(self, photo: Image.Image, box=None, proposal: int | None = None, every: bool = False) -> QueryViews:
        """The views of one decoded RGB photo: of `box` (one the user drew), of proposal number `proposal` (0: the best),
        of `every` proposal, or by default of those `tried`, the whole photo and the segmenter's cut-out. Without a
        detector: the whole photo, nine crops and the cut-out. Retrieval keeps the view that looks most like a
        catalogue photo (vibe.search.matcher.Matcher.pick_view)."""
        if not self.frames:
            return QueryViews([photo], ["the photo as it is"], boxes=[None], photo=photo)
        if box is not None:  # given in the photo's own pixels, checked there
            scale = float(photo.info.get("scale", 1.0))
            full = (round(photo.width * scale), round(photo.height * scale))
            box = tuple(v / scale for v in check_box(box, full))
            box = tuple(int(round(v)) for v in box)
            view, how = self.view(photo, box)
            return QueryViews([view], [f"the box you drew ({how})"], Framing(False, "a box drawn by hand"), [box],
                              sources=[None], photo=photo)
        proposals, found, framed, rival = self.propose(photo)
        if proposals and proposal is not None and not 0 <= proposal < len(proposals):
            raise VibeError(f"There is no product {proposal + 1} in this photo: {len(proposals)} were found.")
        if framed is not None and not every and proposal is None:
            framed_at = next(i for i, p in enumerate(proposals) if p.box == found.box)
            views, names, boxes = [framed], ["the product on a plain backdrop, framed on white"], [found.box]
            gains = white_gains(found.background)
            if gains is not None:  # a white backdrop under a colour cast, or a cream one: retrieval keeps the closer
                views, names, boxes = [*views, balanced(framed, gains)], [
                    *names, "the product framed on white, under the light that makes its backdrop white"], [*boxes, found.box]
            sources = [framed_at] * len(views)
            if rival is not None:  # framing and the detector disagree: retrieval keeps the more catalogue-like view
                view, how = self.view(photo, rival.box)
                views, names, boxes = [*views, view], [*names, f"the detector's product ({how})"], [*boxes, rival.box]
                sources.append(proposals.index(rival) if rival in proposals else None)  # not listed: it overlaps framing's
            return QueryViews(views, names, found, boxes, proposals, sources, photo)
        if proposals:
            default = not every and proposal is None
            chosen = range(len(proposals)) if every else tried(proposals) if default else [proposal]
            made = list(_VIEWS.map(lambda i: self.view(photo, proposals[i].box), chosen))
            views, names = [v for v, _ in made], [f"product {i + 1} of {len(proposals)} ({how})" for i, (_, how)
                                                  in zip(chosen, made)]
            boxes, sources = [proposals[i].box for i in chosen], list(chosen)
            if default:  # also the views that serve a cut-off or busy photo
                more = self._fallback(photo, found, EXTRA)
                views, names, boxes = [*views, *more.views], [*names, *more.names], [*boxes, *more.boxes]
                sources += more.sources
            return QueryViews(views, names, found, boxes, proposals, sources, photo)
        return self._fallback(photo, found)

    def _fallback(self, photo: Image.Image, found: Framing, which=("whole", "crops", "cutout")) -> QueryViews:
        """No product proposed: the whole photo, fixed crops when there is no detector, and the segmenter's cut-out."""
        views, names = ([photo], ["the whole photo"]) if "whole" in which else ([], [])
        if not self.detector and "crops" in which:
            views += crops(photo, grid=GRID)
            names += [f"crop {i} of {GRID * GRID} (70 % of each side)" for i in range(1, GRID * GRID + 1)]
        cut = self.segmenter.cut_out(photo) if self.segmenter and "cutout" in which else None
        if cut is not None:
            views.append(self.segmenter.view(photo, self.side, cut))
            names.append("the product as the segmenter cut it out, on white")
        return QueryViews(views, names, found, [None] * len(views), sources=[None] * len(views), photo=photo)
