"""The two retrieval modes: `same` (strict same item, 512-D) and `combo` (mix & match by style, 256-D)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .artifacts import Artifacts, check_backbone
from .backbone import Encoder
from .config import HEADS, OTHER
from .errors import VibeError
from .fsutil import content_hash
from .images import ImageSource, load_image, read_bytes
from .search import fuse, parse, rank
from .rules import COMPLETES, QueryFilter, gender_compatible, relax_order, seasons_compatible

MODES = ("same", "combo")
# the filters of each mode; on a confidence tie the later one relaxes first
SAME_FILTERS = ("item_type", "gender", "colour")  # a same item in another colour before one for another gender
COMBO_FILTERS = ("style", "gender", "season")


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

    def to_dict(self) -> dict:
        return asdict(replace(self, query_image=None))  # JSON-ready: no pixels

    def to_frame(self):
        """One row per match (rank, id, name, score, labels): what the dashboard offers as CSV."""
        return pd.DataFrame([{"rank": i, "id": m.id, "name": m.name, "score": round(m.score, 4), **m.labels,
                              **({"slot": m.slot} if m.slot else {}), **({"note": m.note} if m.note else {}), "image": m.path} for i, m in enumerate(self.matches, 1)])


@dataclass
class WordResult:
    """A search by words: what the words were read as, whether a text tower ranked too, and the matches."""

    query: str
    attributes: dict[str, tuple[str, ...]]  # head -> the catalogue values asked for
    words: list[str]  # matched against product names
    text_tower: bool
    matches: list[Match] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _view_note(found, n_views: int, picked: int) -> str:
    if found is None:
        return "searched as it is (this backbone does not frame photos)"
    if found.applied:
        return "the product was found on a plain backdrop and framed on white"
    which = ("the whole photo" if picked == 0 else f"crop {picked} of 9 (70 % of each side)" if picked <= 9
             else "the product as the segmenter cut it out, on white")
    return f"framing left it alone ({found.reason}): searched with {which}, the best of {n_views} views"


class Matcher:
    """Answers queries against one loaded build with the encoder that built it."""

    def __init__(self, artifacts: Artifacts, encoder: Encoder):
        check_backbone(artifacts.manifest, encoder.fingerprint, encoder.name, artifacts.workdir)
        self.art, self.encoder = artifacts, encoder
        items = artifacts.items
        self.vocabs = artifacts.heads.vocabs
        self.row_of_id = {int(i): r for r, i in enumerate(items["id"])}
        self.rows_of_hash: dict[str, list[int]] = {}
        for r, h in enumerate(items["hash"]):
            self.rows_of_hash.setdefault(h, []).append(r)
        # plain columns: building a Match must not cost a pandas row lookup (~0.1 ms each) on the query path
        self._ids = items["id"].to_numpy()
        self._names = items["name"].astype(str).tolist()
        self._paths = items["path"].astype(str).tolist()
        # the catalogue's own labels, and each item's outfit slot
        self.labels = {h: [None if v is None or v != v else str(v) for v in items[h]] for h in (*HEADS, "slot")}
        # a predicted item type's slot: the most common slot of that type in this catalogue
        self._slot_of_type = items.groupby("item_type")["slot"].agg(lambda s: s.value_counts().index[0]).to_dict()
        self.hashes = items["hash"].astype(str).tolist()
        # filters compare the catalogue's own labels: one integer code per distinct label, -1 when missing
        self._label_codes, self._label_values = {}, {}
        for h in self.labels:
            codes, values = pd.factorize(pd.Series(self.labels[h], dtype=object))
            self._label_codes[h], self._label_values[h] = codes, {v: i for i, v in enumerate(values)}
        self._masks: dict[tuple, np.ndarray] = {}
        self._all_probs, self._vectors = None, None

    @property
    def thresholds(self) -> dict[str, float]:
        """Per head, the confidence from which its prediction filters (calibrated at build time; none: always)."""
        return self.art.metrics.get("filters", {}).get("thresholds", {})

    @property
    def filter_precision(self) -> float | None:
        return self.art.metrics.get("filters", {}).get("precision")

    # --- queries -------------------------------------------------------------------------------------------
    def find(self, image: ImageSource | None = None, *, item_id: int | None = None, mode: str = "same", k: int = 10,
             per_slot: int = 4, name: str | None = None) -> FindResult:
        """Matches for an uploaded image (path, bytes, file) or a catalogue item id. The query never matches itself."""
        if (image is None) == (item_id is None):
            raise VibeError("Give either an image or a catalogue item id.")
        if item_id is not None:
            row = self.row_of_id.get(int(item_id))
            if row is None:
                raise VibeError(f"Item {item_id} is not in the built catalogue.")
            emb = self.art.clip.vector(row)
            known = {h: self.labels[h][row] for h in (*HEADS, "slot")}
            return self.search(emb, mode=mode, k=k, exclude=self.rows_of_hash[self.hashes[row]] + [row],
                               known=known, per_slot=per_slot, query_id=int(item_id))
        exclude, view, shown = [], None, None
        name = str(image) if isinstance(image, (str, Path)) else name  # what an error message calls the photo
        if not isinstance(image, Image.Image):
            image = read_bytes(image)
            exclude = self.rows_of_hash.get(content_hash(image), [])
        if exclude:  # an upload identical to a catalogue photo reuses its stored embedding: nothing is embedded twice
            emb = self.art.clip.vector(exclude[0])
            same_as = int(self._ids[exclude[0]])
            view = {"views": 1, "picked": 0, "note": f"the same photo as catalogue item {same_as}", "same_as": same_as}
        else:
            photo = load_image(image, name, self.encoder.decode_side)
            images, found = self.encoder.query_views(photo)  # (Encoder.encode_query, keeping the views to show)
            emb, picked = self.pick_view(self.encoder.encode_views(images))
            view = {"views": len(images), "picked": picked, "note": _view_note(found, len(images), picked)}
            # what was searched, when it is not the upload itself: the framed product, a crop or the cut-out
            shown = images[picked] if picked or (found is not None and found.applied) else None
        result = self.search(emb, mode=mode, k=k, exclude=exclude, per_slot=per_slot)
        result.query_view, result.query_image = view, shown
        return result

    def pick_view(self, views: np.ndarray) -> tuple[np.ndarray, int]:
        """Of a query's views (the photo and its crops), the one whose best catalogue match is closest: the view that
        looks most like a catalogue photo of some item."""
        views = np.atleast_2d(views)
        if len(views) == 1:
            return views[0], 0
        scores, _ = self.art.clip.index.search(np.ascontiguousarray(views, dtype=np.float32), 1)
        best = int(np.argmax(scores[:, 0]))
        return views[best], best

    def search_words(self, query: str, k: int = 10) -> WordResult:
        """Catalogue items for a query in words ("white sports shoes men"): see vibe.search."""
        if k < 1:
            raise VibeError("k must be at least 1.")
        values = {h: sorted({*self._label_values[h], *self.vocabs[h]} - {None}) for h in HEADS}  # rare labels too
        parsed = parse(query, values)
        if self._all_probs is None:  # every item's head probabilities, once per build: ranking by photo, not by label
            self._all_probs = self.art.heads.predict_proba(self.vectors)
        score = rank(self._all_probs, self.labels, self._names, parsed, self.vocabs)
        if self.encoder.has_text:
            score = fuse(score, self.vectors @ self.encoder.encode_text([query])[0])
        top = np.argsort(-score, kind="stable")[:k]
        return WordResult(query, parsed.attributes, parsed.words, self.encoder.has_text,
                          [self._match(r, score[r]) for r in top])

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self.art.clip.vectors()
        return self._vectors

    def predict(self, emb: np.ndarray) -> dict[str, Prediction]:
        probs = self.art.heads.predict_proba(emb[None])
        out = {}
        for h in HEADS:
            p = probs[h][0]
            order = np.argsort(-p)[:3]
            out[h] = Prediction(self.vocabs[h][order[0]], float(p[order[0]]), [(self.vocabs[h][i], float(p[i])) for i in order])
        return out

    def query_filters(self, preds: dict[str, Prediction], known: dict[str, str | None] | None, names: tuple[str, ...]) -> list[QueryFilter]:
        """The mode's filters for this query: a catalogue item's own labels, else the heads' predictions.
        A prediction of the merged class `Other` names no class, so it filters nothing."""
        filters = []
        for h in names:
            if known and known.get(h) is not None:
                filters.append(QueryFilter(h, known[h], 1.0, "catalogue"))
            elif preds[h].label == OTHER:
                filters.append(QueryFilter(h, OTHER, preds[h].confidence, "predicted", "skipped",
                                           f"the {h} head predicts '{OTHER}' (rare classes merged): no single class to filter on"))
            elif preds[h].confidence < self.thresholds.get(h, 0.0):
                filters.append(QueryFilter(h, preds[h].label, preds[h].confidence, "predicted", "skipped",
                                           f"the {h} head is unsure ({preds[h].confidence:.2f}; it is right "
                                           f"{self.filter_precision or 0:.0%} of the time from {self.thresholds[h]:.2f} up)"))
            else:
                filters.append(QueryFilter(h, preds[h].label, preds[h].confidence, "predicted"))
        return filters

    def search(self, emb: np.ndarray, *, mode: str = "same", k: int = 10, exclude: list[int] | None = None,
               known: dict[str, str | None] | None = None, per_slot: int = 4, query_id: int | None = None) -> FindResult:
        """Filter by attributes (predicted, or a catalogue item's `known` labels), relax the least confident filter
        until enough items pass, rank in the mode's space. `combo` answers as an outfit (vibe.rules.COMPLETES)."""
        if mode not in MODES:
            raise VibeError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
        if k < 1:
            raise VibeError("k must be at least 1.")
        preds = self.predict(emb)
        query = {h: (known or {}).get(h) or (preds[h].label if preds[h].label != OTHER else None) for h in HEADS}
        base = np.ones(len(self._ids), dtype=bool)
        if exclude:
            base[exclude] = False
        slot = None
        if mode == "combo":
            slot = self.query_slot(emb, preds, known)
            wanted = COMPLETES.get(slot["slot"], ())
            base &= np.isin(self._label_codes["slot"], [self._label_values["slot"][w] for w in wanted if w in self._label_values["slot"]])
            enough = min(3, len(wanted))  # outfit slots that must have an item before filters stop relaxing
        filters = self.query_filters(preds, known, SAME_FILTERS if mode == "same" else COMBO_FILTERS)
        masks = {f.head: self._label_mask(f.head, f.value) for f in filters if f.applied}
        relaxed: list[str] = []
        for dropped in [None, *relax_order(filters, SAME_FILTERS if mode == "same" else COMBO_FILTERS)]:
            if dropped is not None:
                dropped.status, dropped.reason = "relaxed", f"fewer than {k} items matched every filter"
                relaxed.append(dropped.head)
            allowed = base.copy()
            for f in filters:
                if f.applied:
                    allowed &= masks[f.head]
            if allowed.sum() >= k and (mode == "same" or len(np.unique(self._label_codes["slot"][allowed])) >= enough):
                break
        outfit: dict[str, list[Match]] = {}
        if mode == "same":
            matches = [self._match(r, s) for r, s in zip(*self.art.clip.search(emb, k, allowed))]
            matches = self._same_photo_first(emb, k, base, allowed, matches)
        else:
            outfit = self._outfit(emb, allowed, COMPLETES.get(slot["slot"], ()), max(per_slot, 1))
            matches = outfit_order(outfit, k)
        return FindResult(mode=mode, k=k, predictions=preds, query_labels=query,
                          filters={f.head: f.value for f in filters if f.applied}, relaxed=relaxed, matches=matches,
                          query_id=query_id, filter_notes=filters, query_slot=slot, outfit=outfit)

    @property
    def same_photo_cosine(self) -> float | None:
        """The 512-D cosine from which a catalogue photo is, at the build's calibrated precision, the query's own item."""
        return self.art.metrics.get("filters", {}).get("same_photo_cosine")

    def _same_photo_first(self, emb: np.ndarray, k: int, base: np.ndarray, allowed: np.ndarray,
                          matches: list[Match]) -> list[Match]:
        """The filters exist to keep lookalikes of other types and colours out, not the product itself: catalogue
        photos at or above `same_photo_cosine` join the results even when a predicted label disagrees (the
        prediction is the likelier mistake), in score order, each with a note."""
        tau = self.same_photo_cosine
        if tau is None or tau > 1:
            return matches
        shown = {m.row for m in matches}
        extra = [self._match(r, sc) for r, sc in zip(*self.art.clip.search(emb, min(k, 5), base))
                 if sc >= tau and r not in shown and not allowed[r]]
        for m in extra:
            m.note = f"a near-identical photo (cosine {m.score:.3f} >= {tau:.3f}): shown although it fails a filter"
        return sorted(matches + extra, key=lambda m: -m.score)[:k] if extra else matches

    def query_slot(self, emb: np.ndarray, preds: dict[str, Prediction], known: dict | None = None) -> dict:
        """The query's outfit slot: a catalogue item's own; else the slot of the predicted item type when the head is
        sure of it; else the most common slot among its 10 nearest catalogue photos."""
        if known and known.get("slot"):
            return {"slot": known["slot"], "how": "the item's own catalogue labels"}
        t = preds["item_type"]
        if t.label in self._slot_of_type and t.confidence >= self.thresholds.get("item_type", 0.0):
            return {"slot": self._slot_of_type[t.label], "how": f"the predicted item type {t.label} ({t.confidence:.2f})"}
        rows, _ = self.art.clip.search(emb, 10)
        votes = pd.Series([self.labels["slot"][r] for r in rows]).value_counts()
        return {"slot": str(votes.index[0]), "how": f"{votes.iloc[0]} of its 10 nearest catalogue photos"}

    # --- helpers -------------------------------------------------------------------------------------------
    def _label_mask(self, head: str, value: str) -> np.ndarray:
        """Items whose `head` label passes a filter on `value`: compatible for gender and season (vibe.rules), equal for
        the rest. Computed once per distinct label value, then cached."""
        key = (head, value)
        if key not in self._masks:
            rule = {"gender": gender_compatible, "season": seasons_compatible}.get(head)
            if rule is None:
                mask = self._label_codes[head] == self._label_values[head].get(value, -2)
            else:
                ok = [i for v, i in self._label_values[head].items() if rule(v, value)]
                mask = np.isin(self._label_codes[head], ok) | ((self._label_codes[head] < 0) & rule(None, value))
            self._masks[key] = mask
        return self._masks[key]

    def _outfit(self, emb: np.ndarray, allowed: np.ndarray, slots: tuple[str, ...], per_slot: int) -> dict[str, list[Match]]:
        """Per complementary slot (in the outfit table's order), its best `per_slot` items in the style space."""
        style_q = self.art.projection.project(emb[None])[0]
        outfit = {}
        for slot in slots:
            code = self._label_values["slot"].get(slot)
            if code is None:
                continue
            rows, scores = self.art.style.search(style_q, per_slot, allowed & (self._label_codes["slot"] == code))
            if len(rows):
                outfit[slot] = [self._match(r, s, slot) for r, s in zip(rows, scores)]
        return outfit

    def _match(self, row: int, score: float, slot: str | None = None) -> Match:
        r = int(row)
        return Match(row=r, id=int(self._ids[r]), name=self._names[r], path=self._paths[r],
                     labels={h: self.labels[h][r] for h in HEADS}, score=float(score), slot=slot)


def outfit_order(outfit: dict[str, list[Match]], k: int) -> list[Match]:
    """The flat list of an outfit: the best item of every slot first (slots in the outfit table's order), then the
    second options, and so on, up to k. Within a slot, options keep their score order."""
    flat, depth = [], max((len(v) for v in outfit.values()), default=0)
    for r in range(depth):
        flat += [options[r] for options in outfit.values() if r < len(options)]
    return flat[:k]
