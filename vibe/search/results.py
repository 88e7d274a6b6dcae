"""What a query returns: predicted attributes, matches, and for mix & match the outfit board; JSON- and CSV-ready."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import pandas as pd
from PIL import Image

from ..catalog.rules import QueryFilter


@dataclass
class Prediction:
    label: str
    confidence: float
    top: list[tuple[str, float]]


@dataclass
class Match:
    row: int
    id: int
    name: str
    path: str
    labels: dict[str, str | None]
    score: float
    slot: str | None = None  # combo: the outfit slot this match fills
    note: str = ""  # same: why it is shown although it fails a filter (a near-identical photo)


@dataclass
class FindResult:
    mode: str
    k: int
    predictions: dict[str, Prediction]
    query_labels: dict[str, str | None]  # what the filters compared against (predicted, or the catalogue's own labels)
    filters: dict[str, str]  # the filters applied to the matches shown
    relaxed: list[str]  # filters dropped so that k items (combo: and enough outfit slots) could be shown
    matches: list[Match] = field(default_factory=list)
    query_id: int | None = None
    filter_notes: list[QueryFilter] = field(default_factory=list)  # every filter considered, with its status and why
    query_view: dict | None = None  # an upload: how many views it was searched with, which one was kept, and why
    query_slot: dict | None = None  # combo: the query's outfit slot and how it was decided
    outfit: dict[str, list[Match]] = field(default_factory=dict)  # combo: per complementary slot, the options in score order
    query_image: Image.Image | None = field(default=None, repr=False)  # an upload: the view searched, if not the upload
    familiarity: float | None = None  # a photo: its 512-D cosine to the nearest catalogue photo (None: a catalogue item)
    # same mode: whether match 1 is close enough to be the query's own item (`same_item_verdict`); None in combo mode
    same_item: dict | None = None

    @property
    def verdict(self) -> str:
        """"match", "no match" (the best is under the build's same-item cut), "unchecked" (no calibrated cut in this
        build) or "outfit" (combo mode): what batch matching writes per photo and the page and the CLI say."""
        return "outfit" if self.same_item is None else self.same_item["verdict"]

    def same_item_note(self) -> str | None:
        """One sentence on whether match 1 is the uploaded photo's own product (same mode), for the page and the CLI;
        None for a catalogue item's query, an upload of a catalogue photo's very bytes, or a build without the cut."""
        v = self.same_item
        if v is None or v["verdict"] == "unchecked" or self.query_id is not None or (self.query_view or {}).get("same_as"):
            return None
        if v["verdict"] == "match":
            return (f"Match 1 is close enough to be this very product: similarity {v['best']:.3f}, and from "
                    f"{v['cut']:.3f} up this build finds a photo's own item.")
        if v["best"] is None:
            return "No catalogue item passed the filters."
        return (f"Not sure match 1 is this very product: its similarity is {v['best']:.3f}, and this build is sure of a "
                f"photo's own item from {v['cut']:.3f} up. Compare the photos.")

    def to_dict(self) -> dict:
        return asdict(replace(self, query_image=None))  # JSON-ready: no pixels

    def to_frame(self) -> pd.DataFrame:
        """One row per match (rank, id, name, score, labels): what the dashboard offers as CSV."""
        return pd.DataFrame([{"rank": i, "id": m.id, "name": m.name, "score": round(m.score, 4), **m.labels,
                              **({"slot": m.slot} if m.slot else {}), **({"note": m.note} if m.note else {}),
                              "image": m.path} for i, m in enumerate(self.matches, 1)])


def same_item_verdict(matches: list[Match], cut: float | None) -> dict:
    """Whether the first match is close enough to be the query's own item: a 512-D cosine at or over `cut` (the build's
    same-item cosine, vibe.search.matcher.Matcher.same_photo_cosine)."""
    best = matches[0].score if matches else None
    if cut is None or cut > 1:
        verdict = "unchecked"
    else:
        verdict = "match" if best is not None and best >= cut else "no match"
    return {"verdict": verdict, "best": best, "cut": cut}


@dataclass
class WordResult:
    """A search by words: what the words were read as, whether a text tower ranked too, and the matches."""

    query: str
    attributes: dict[str, tuple[str, ...]]  # head -> the catalogue values asked for
    words: list[str]  # matched against product names
    text_tower: bool
    matches: list[Match] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # name words that no product name has

    def note(self) -> str | None:
        """What the page and the CLI say when the words did not all find something."""
        if not self.matches:
            return (f"Nothing in the catalogue matches “{self.query}”: no attribute was recognised and no product name "
                    "has these words.")
        if self.unmatched:
            return f"No product name has {', '.join(f'“{w}”' for w in self.unmatched)}: ranked by the rest of the query."
        return None

    def to_dict(self) -> dict:
        return asdict(self)
