"""The two retrieval modes over one build: `same` (the same item: filtered by predicted attributes, ranked in the 512-D
space) and `combo` (an outfit of complementary items, ranked in the 256-D style space; vibe.search.outfit)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..catalog.reader import as_label
from ..catalog.rules import (
    COMPLETES,
    QueryFilter,
    gender_compatible,
    relax_order,
    seasons_compatible,
)
from ..config import HEADS, OTHER
from ..errors import VibeError
from ..locate.query import Locator
from ..models.encoder import Encoder
from ..store.artifacts import Artifacts, check_backbone
from ..util.files import content_hash
from ..util.images import ImageSource, load_image, read_bytes
from . import outfit
from .results import FindResult, Match, Prediction, WordResult, same_item_verdict
from .words import fuse, in_names, parse, rank

MODES = ("same", "combo")
# the filters of each mode; on a confidence tie the later one relaxes first
SAME_FILTERS = ("item_type", "gender", "colour")  # a same item in another colour before one for another gender
COMBO_FILTERS = ("style", "gender", "season")


def apart(value: float, limit: float) -> tuple[str, str]:
    """`value` and the `limit` it fell short of, with the fewest decimals (2 to 4) that tell them apart: a confidence of
    0.966 under a limit of 0.971 reads 0.966 and 0.971, not 0.97 and 0.97."""
    digits = next((d for d in (2, 3) if f"{value:.{d}f}" != f"{limit:.{d}f}"), 4)
    return f"{value:.{digits}f}", f"{limit:.{digits}f}"


class Matcher:
    """Answers queries against one loaded build with the encoder that built it."""

    def __init__(self, artifacts: Artifacts, encoder: Encoder, locator: Locator | None = None):
        check_backbone(artifacts.manifest, encoder.fingerprint, encoder.name, artifacts.workdir)
        self.art, self.encoder = artifacts, encoder
        self.locator = locator or Locator.for_encoder(encoder)
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
        self.labels = {h: [as_label(v) for v in items[h]] for h in (*HEADS, "slot")}
        # a predicted item type's slot: the most common slot of that type in this catalogue
        self.slot_of_type = items.groupby("item_type")["slot"].agg(lambda s: s.value_counts().index[0]).to_dict()
        self.hashes = items["hash"].astype(str).tolist()
        # filters compare the catalogue's own labels: one integer code per distinct label, -1 when missing
        self.label_codes, self.label_values = {}, {}
        for h in self.labels:
            codes, values = pd.factorize(pd.Series(self.labels[h], dtype=object))
            self.label_codes[h], self.label_values[h] = codes, {v: i for i, v in enumerate(values)}
        self._masks: dict[tuple, np.ndarray] = {}
        self._all_probs, self._vectors = None, None

    @property
    def thresholds(self) -> dict[str, float]:
        """Per head, the confidence from which its prediction filters (calibrated at build time; none: always)."""
        return self.art.metrics.get("filters", {}).get("thresholds", {})

    @property
    def familiar_cosine(self) -> float | None:
        """The 512-D cosine to its nearest catalogue photo under which a query counts as far from the catalogue (the
        median of the build's calibration photos): its filters then apply from `unfamiliar_thresholds`, calibrated on
        the photos that far, instead (None: one set for all)."""
        return self.art.metrics.get("filters", {}).get("familiar_cosine")

    def familiarity(self, emb: np.ndarray) -> float:
        """A query's 512-D cosine to its nearest catalogue photo, any of them (a catalogue photo's own: 1.0): how close
        it is to the catalogue, which decides its filters' thresholds (see `search`, which reads it off the same search)."""
        _, scores = self.art.clip.search(emb, 1)
        return float(scores[0]) if len(scores) else float("nan")

    def thresholds_for(self, familiarity: float | None) -> tuple[dict[str, float], bool]:
        """(per head, the confidence from which its prediction filters a query this close to the catalogue; whether
        the query counts as far from the catalogue)."""
        cut, unfamiliar = self.familiar_cosine, self.art.metrics.get("filters", {}).get("unfamiliar_thresholds")
        if familiarity is None or cut is None or not unfamiliar or familiarity >= cut:
            return self.thresholds, False
        return unfamiliar, True

    @property
    def filter_precision(self) -> float | None:
        return self.art.metrics.get("filters", {}).get("precision")

    @property
    def same_photo_cosine(self) -> float | None:
        """The 512-D cosine from which a catalogue photo is, at the build's calibrated precision, the query's own item."""
        return self.art.metrics.get("filters", {}).get("same_photo_cosine")

    # --- queries -------------------------------------------------------------------------------------------
    def find(self, image: ImageSource | None = None, *, item_id: int | None = None, mode: str = "same", k: int = 10,
             per_slot: int = 4, name: str | None = None, box=None, proposal: int | None = None) -> FindResult:
        """Matches for an uploaded image (path, bytes, file) or a catalogue item id. The query never matches itself.
        An upload is searched as its best product proposal (vibe.locate.query), or as proposal number `proposal`
        (0: the best), or as the product inside `box` (left, top, right, bottom in the photo's pixels)."""
        if (image is None) == (item_id is None):
            raise VibeError("Give either an image or a catalogue item id.")
        if item_id is not None:
            row = self.row_of_id.get(int(item_id))
            if row is None:
                raise VibeError(f"Item {item_id} is not in the built catalogue.")
            known = {h: self.labels[h][row] for h in (*HEADS, "slot")}
            return self.search(self.art.clip.vector(row), mode=mode, k=k, exclude=self.rows_of_hash[self.hashes[row]] + [row],
                               known=known, per_slot=per_slot, query_id=int(item_id))
        found, exclude = self.locate(image, name, box, proposal)
        return self.search_views(found, mode=mode, k=k, per_slot=per_slot, exclude=exclude)

    def locate(self, image: ImageSource, name: str | None = None, box=None, proposal: int | None = None,
               every: bool = False):
        """(what the photo is searched as: vibe.locate.query.QueryViews, the catalogue rows of its very bytes). An
        upload identical to a catalogue photo is that item: its stored embedding is used, nothing is embedded twice."""
        name = str(image) if isinstance(image, (str, Path)) else name  # what an error message calls the photo
        exclude = []
        if not isinstance(image, Image.Image):
            image = read_bytes(image)
            exclude = self.rows_of_hash.get(content_hash(image), [])
        if exclude and box is None and proposal is None and not every:
            return None, exclude
        return self.locator.views(load_image(image, name, self.encoder.decode_side), box, proposal, every), exclude

    def locate_pixels(self, image: ImageSource, name: str | None = None, box=None, proposal: int | None = None,
                      every: bool = False):
        """`locate`, and the views as the model's input (None for a catalogue photo's very bytes): what a caller that
        batches many photos' forward passes (vibe.serve, vibe.search.batch) prepares on the photo's own thread."""
        found, exclude = self.locate(image, name, box, proposal, every)
        return found, exclude, None if found is None else self.encoder.pixels(found.views)

    def search_views(self, found, *, mode: str = "same", k: int = 10, per_slot: int = 4, exclude=(),
                     embedded: np.ndarray | None = None, include_same: bool = False) -> FindResult:
        """Search a located photo (`locate`): its views embedded (or their `embedded` vectors, when a caller batched
        the forward passes of many photos: vibe.serve, vibe.search.batch), the one most like a catalogue photo kept.
        A photo with a catalogue photo's very bytes is searched by that item's stored vector, the item itself left out
        unless `include_same` (batch matching: that item is the answer)."""
        exclude = list(exclude)
        if found is None:  # the same bytes as a catalogue photo
            same_as = int(self._ids[exclude[0]])
            result = self.search(self.art.clip.vector(exclude[0]), mode=mode, k=k, per_slot=per_slot,
                                 exclude=None if include_same else exclude)
            result.query_view = {"views": 1, "picked": 0, "note": f"the same photo as catalogue item {same_as}",
                                 "same_as": same_as, "proposals": [], "proposal": None, "box": None, "others": []}
            return result
        embedded = np.atleast_2d(self.encoder.encode_views(found.views) if embedded is None else embedded)
        picked, nearest = self._pick(embedded)
        result = self.search(embedded[picked], mode=mode, k=k, exclude=exclude, per_slot=per_slot)
        result.query_view = {"views": len(found.views), "picked": picked, "note": found.note(picked),
                             "proposals": [{"box": found.in_photo(p.box), "score": round(p.score, 3)} for p in found.proposals],
                             "proposal": found.proposal(picked), "box": found.in_photo(found.boxes[picked]) if found.boxes else None,
                             "others": self._others(found, picked, nearest, exclude)}
        result.query_image = found.views[picked]  # what was searched: the framed product, its cut-out, a crop...
        return result

    def find_every(self, image: ImageSource, *, mode: str = "same", k: int = 10, per_slot: int = 4,
                   name: str | None = None) -> list[FindResult]:
        """Matches for every product proposed in the photo, best proposal first (`find --all`)."""
        found, exclude = self.locate(image, name, every=True)
        return self.search_every(found, exclude, mode=mode, k=k, per_slot=per_slot)

    def search_every(self, found, exclude=(), *, mode: str = "same", k: int = 10, per_slot: int = 4,
                     embedded: np.ndarray | None = None) -> list[FindResult]:
        """Search each view of a photo located with `every=True` on its own (its embeddings computed in one batch)."""
        embedded = self.encoder.encode_views(found.views) if embedded is None else embedded
        out = []
        for i, (view, view_name, box) in enumerate(zip(found.views, found.names, found.boxes)):
            one = dataclasses.replace(found, views=[view], names=[view_name], boxes=[box], sources=[found.proposal(i)])
            out.append(self.search_views(one, mode=mode, k=k, per_slot=per_slot, exclude=exclude,
                                         embedded=embedded[i:i + 1]))
        return out

    def pick_view(self, views: np.ndarray) -> tuple[np.ndarray, int]:
        """Of a query's views (the photo and its crops), the one whose best catalogue match is closest: the view that
        looks most like a catalogue photo of some item."""
        views = np.atleast_2d(views)
        best, _ = self._pick(views)
        return views[best], best

    def _pick(self, views: np.ndarray) -> tuple[int, tuple[np.ndarray, np.ndarray] | None]:
        """pick_view's rule: the view whose nearest catalogue photo is closest, and every view's nearest (None for a
        single view, which needs no scan)."""
        if len(views) == 1:
            return 0, None
        nearest = self.nearest_of_views(views)
        return int(np.argmax(nearest[1])), nearest

    def nearest_of_views(self, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each view's nearest catalogue photo, any item: (rows, cosines), one pass for all the views."""
        scores, rows = self.art.clip.index.search(np.ascontiguousarray(np.atleast_2d(views), dtype=np.float32), 1)
        return rows[:, 0], scores[:, 0]

    def _others(self, found, picked: int, nearest, exclude) -> list[dict]:
        """The other products a default search tried in the photo (views cut from proposals other than the kept one),
        each with its nearest catalogue photo and whether that is close enough to be the same item: Google Lens'
        "also in this photo", so that a wrong pick (a cup beside the bag) shows the bag's match at a glance. Most
        catalogue-like first; from the same scan that picked the view."""
        if nearest is None:
            return []
        rows, scores = nearest
        seen, out = {found.proposal(picked)}, []
        for v in np.argsort(-scores, kind="stable"):
            source = found.proposal(int(v))
            if source is None or source in seen or rows[v] < 0 or rows[v] in exclude or rows[v] == rows[picked]:
                continue  # not a proposal, one already listed, or one that finds what the kept view finds
            seen.add(source)
            m = self.match(rows[v], scores[v])
            out.append({"proposal": source, "box": found.in_photo(found.boxes[v]), "view": found.names[v], "id": m.id,
                        "name": m.name, "path": m.path, "score": round(m.score, 4),
                        "verdict": same_item_verdict([m], self.same_photo_cosine)["verdict"]})
        return out

    def search_words(self, query: str, k: int = 10, label_evidence: bool = True) -> WordResult:
        """Catalogue items for a query in words ("white sports shoes men"): see vibe.search.words.rank."""
        if k < 1:
            raise VibeError("k must be at least 1.")
        values = {h: sorted({*self.label_values[h], *self.vocabs[h]} - {None}) for h in HEADS}  # rare labels too
        parsed = parse(query, values)
        if self._all_probs is None:  # every item's head probabilities, once per build: ranking by photo, not by label
            self._all_probs = self.art.heads.predict_proba(self.vectors)
        hits = {w: in_names(w, self._names) for w in parsed.words}  # each word's names, read once
        unmatched = [w for w, found in hits.items() if not found.any()]
        if parsed.words and not parsed.attributes and len(unmatched) == len(parsed.words) and not self.encoder.has_text:
            # nothing to rank by ("xyzzy"): any list would be arbitrary items (a text tower still ranks by meaning)
            return WordResult(query, parsed.attributes, parsed.words, False, [], unmatched)
        score = rank(self._all_probs, self.labels, self._names, parsed, self.vocabs, label_evidence, hits)
        if self.encoder.has_text:
            score = fuse(score, self.vectors @ self.encoder.encode_text([query])[0])
        top = np.argsort(-score, kind="stable")[:k]
        return WordResult(query, parsed.attributes, parsed.words, self.encoder.has_text,
                          [self.match(r, score[r]) for r in top], unmatched)

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

    def query_filters(self, preds: dict[str, Prediction], known: dict[str, str | None] | None, names: tuple[str, ...],
                      familiarity: float | None = None) -> list[QueryFilter]:
        """The mode's filters for this query: a catalogue item's own labels, else the heads' predictions, each from its
        head's calibrated confidence up (calibrated apart for photos far from the catalogue: `familiarity`, the cosine
        to the nearest catalogue photo, under `familiar_cosine`). A prediction of the merged class `Other` names no class, so
        it filters nothing."""
        thresholds, unfamiliar = self.thresholds_for(familiarity)
        filters = []
        for h in names:
            if known and known.get(h) is not None:
                filters.append(QueryFilter(h, known[h], 1.0, "catalogue"))
            elif preds[h].label == OTHER:
                filters.append(QueryFilter(h, OTHER, preds[h].confidence, "predicted", "skipped",
                                           f"it looks like one of the rare kinds grouped as '{OTHER}': nothing to filter on",
                                           f"the {h} head's top class is '{OTHER}' ({preds[h].confidence:.2f}), the classes "
                                           "with too few items merged"))
            elif preds[h].confidence < thresholds.get(h, 0.0):
                sure, needed = apart(preds[h].confidence, thresholds[h])
                limit, needs = ("never", "it never applies") if thresholds[h] > 1 else (f"from confidence {needed} up",
                                                                                         f"it needs {needed}")
                far = unfamiliar and thresholds[h] != self.thresholds.get(h)  # the distance is what skipped it
                near, median = apart(familiarity, self.familiar_cosine or 0.0) if far else ("", "")
                unsure = f"the model is not sure enough ({sure}; {needs})"
                filters.append(QueryFilter(h, preds[h].label, preds[h].confidence, "predicted", "skipped",
                                           ("the photo is further from the catalogue than half the calibration photos, "
                                            "and that far " if far else "") + unsure,
                                           (f"its nearest catalogue photo is at similarity {near}, under {median} (the "
                                            "calibration photos' median): on photos that far " if far else "") +
                                           f"the {h} filter applies {limit}: from there the head is right "
                                           f"{self.filter_precision or 0:.0%} of the time on held-out photos"))
            else:
                filters.append(QueryFilter(h, preds[h].label, preds[h].confidence, "predicted"))
        return filters

    def search(self, emb: np.ndarray, *, mode: str = "same", k: int = 10, exclude: list[int] | None = None,
               known: dict[str, str | None] | None = None, per_slot: int = 4, query_id: int | None = None) -> FindResult:
        """Filter by attributes (predicted, or a catalogue item's `known` labels), relax the least confident filter
        until enough items pass, rank in the mode's space. `combo` answers as an outfit (vibe.catalog.rules.COMPLETES)."""
        if mode not in MODES:
            raise VibeError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
        if k < 1:
            raise VibeError("k must be at least 1.")
        preds = self.predict(emb)
        query = {h: (known or {}).get(h) or (preds[h].label if preds[h].label != OTHER else None) for h in HEADS}
        base = np.ones(len(self._ids), dtype=bool)
        if exclude:
            base[exclude] = False
        # the nearest catalogue photos, any of them: how close the photo is to the catalogue (what its filters'
        # thresholds depend on; the query's own excluded photo counts, as at calibration), and, less the excluded
        # rows, same mode's near-identical ones
        nearest, familiarity = None, None
        if mode == "same" or not known:
            rows, scores = self.art.clip.search(emb, min(k, 5) + len(exclude or ()) if mode == "same" else 1)
            familiarity = float(scores[0]) if len(scores) and not known else None
            shown = base[rows]
            nearest = rows[shown][: min(k, 5)], scores[shown][: min(k, 5)]
        slot, enough = None, 0
        if mode == "combo":
            slot = outfit.query_slot(self, emb, preds, known, self.thresholds_for(familiarity)[0].get("item_type", 0.0))
            wanted = COMPLETES.get(slot["slot"], ())
            base &= self.slot_mask(wanted)
            enough = min(3, len(wanted))  # outfit slots that must have an item before filters stop relaxing
        names = SAME_FILTERS if mode == "same" else COMBO_FILTERS
        filters = self.query_filters(preds, known, names, familiarity)
        allowed, relaxed = self._relax(filters, names, base, k, enough)
        board: dict[str, list[Match]] = {}
        if mode == "same":
            matches = [self.match(r, s) for r, s in zip(*self.art.clip.search(emb, k, allowed))]
            matches = self._same_photo_first(nearest, k, allowed, matches)
        else:
            options = outfit.board(self, emb, allowed, COMPLETES.get(slot["slot"], ()), max(per_slot, 1))
            matches = outfit.outfit_order(options, k)
            board = outfit.by_slot(matches, options)  # the board shows exactly the k matches the list (and CSV) holds
            slot["beyond_k"] = [s for s in options if s not in board]  # slots with items, past the first k
        return FindResult(mode=mode, k=k, predictions=preds, query_labels=query,
                          filters={f.head: f.value for f in filters if f.applied}, relaxed=relaxed, matches=matches,
                          query_id=query_id, filter_notes=filters, query_slot=slot, outfit=board, familiarity=familiarity,
                          same_item=same_item_verdict(matches, self.same_photo_cosine) if mode == "same" else None)

    def _relax(self, filters: list[QueryFilter], names: tuple[str, ...], base: np.ndarray, k: int,
               slots_needed: int) -> tuple[np.ndarray, list[str]]:
        """The items every applied filter lets through, after dropping the least confident filters (vibe.catalog.rules.
        relax_order) until at least k pass (and, for an outfit, items of `slots_needed` slots)."""
        masks = {f.head: self.label_mask(f.head, f.value) for f in filters if f.applied}
        relaxed: list[str] = []
        for dropped in [None, *relax_order(filters, names)]:
            if dropped is not None:
                dropped.status, dropped.reason = "relaxed", f"fewer than {k} items matched every filter"
                dropped.detail = f"the least sure filter goes first ({dropped.confidence:.2f})"
                relaxed.append(dropped.head)
            allowed = base.copy()
            for f in filters:
                if f.applied:
                    allowed &= masks[f.head]
            if allowed.sum() >= k and len(np.unique(self.label_codes["slot"][allowed])) >= slots_needed:
                break
        return allowed, relaxed

    def _same_photo_first(self, nearest: tuple[np.ndarray, np.ndarray], k: int, allowed: np.ndarray,
                          matches: list[Match]) -> list[Match]:
        """The filters exist to keep lookalikes of other types and colours out, not the product itself: catalogue
        photos at or above `same_photo_cosine` join the results even when a predicted label disagrees (the
        prediction is the likelier mistake), in score order, each with a note."""
        tau = self.same_photo_cosine
        if tau is None or tau > 1:
            return matches
        shown = {m.row for m in matches}
        extra = [self.match(r, sc) for r, sc in zip(*nearest) if sc >= tau and r not in shown and not allowed[r]]
        for m in extra:
            m.note = (f"shown although its labels fail a filter: its photo is as close as the same item's are (similarity "
                      f"{m.score:.3f}, from {tau:.3f} up)")
        return sorted(matches + extra, key=lambda m: -m.score)[:k] if extra else matches

    # --- helpers -------------------------------------------------------------------------------------------
    def slot_mask(self, slots) -> np.ndarray:
        """Items whose outfit slot is one of `slots`."""
        codes = [self.label_values["slot"][s] for s in slots if s in self.label_values["slot"]]
        return np.isin(self.label_codes["slot"], codes)

    def label_mask(self, head: str, value: str) -> np.ndarray:
        """Items whose `head` label passes a filter on `value`: compatible for gender and season (vibe.catalog.rules),
        equal for the rest. Computed once per distinct label value, then cached."""
        key = (head, value)
        if key not in self._masks:
            rule = {"gender": gender_compatible, "season": seasons_compatible}.get(head)
            if rule is None:
                mask = self.label_codes[head] == self.label_values[head].get(value, -2)
            else:
                ok = [i for v, i in self.label_values[head].items() if rule(v, value)]
                mask = np.isin(self.label_codes[head], ok) | ((self.label_codes[head] < 0) & rule(None, value))
            self._masks[key] = mask
        return self._masks[key]

    def match(self, row: int, score: float, slot: str | None = None) -> Match:
        r = int(row)
        return Match(row=r, id=int(self._ids[r]), name=self._names[r], path=self._paths[r],
                     labels={h: self.labels[h][r] for h in HEADS}, score=float(score), slot=slot)
