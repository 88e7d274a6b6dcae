"""The two retrieval modes: `same` (strict same item, 512-D) and `combo` (mix & match by style, 256-D)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .artifacts import Artifacts, check_backbone
from .backbone import Encoder
from .config import HEADS
from .errors import VibeError
from .fsutil import content_hash
from .images import ImageSource, read_bytes
from .projection import UNISEX

MODES = ("same", "combo")
# filters in the order they apply; relaxed from the end of the list backwards
SAME_FILTERS = ("item_type", "colour", "gender")
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


@dataclass
class FindResult:
    mode: str
    k: int
    predictions: dict[str, Prediction]
    query_labels: dict[str, str]  # what the filters compared against (predicted, or the catalogue's own labels)
    filters: dict[str, str]  # applied, after relaxation
    relaxed: list[str]
    matches: list[Match] = field(default_factory=list)
    query_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_frame(self):
        """One row per match (rank, id, name, score, labels): what the dashboard offers as CSV."""
        import pandas as pd

        return pd.DataFrame([{"rank": i, "id": m.id, "name": m.name, "score": round(m.score, 4), **m.labels, "image": m.path}
                             for i, m in enumerate(self.matches, 1)])


class Matcher:
    """Answers queries against one loaded build with the encoder that built it."""

    def __init__(self, artifacts: Artifacts, encoder: Encoder):
        check_backbone(artifacts.manifest, encoder.fingerprint, encoder.name, artifacts.path.parent.parent)
        self.art, self.encoder = artifacts, encoder
        items = artifacts.items
        self.vocabs = artifacts.heads.vocabs
        self.codes = {h: artifacts.codes(h) for h in HEADS}
        self.row_of_id = {int(i): r for r, i in enumerate(items["id"])}
        self.rows_of_hash: dict[str, list[int]] = {}
        for r, h in enumerate(items["hash"]):
            self.rows_of_hash.setdefault(h, []).append(r)
        g = self.vocabs["gender"]
        self.unisex = g.index(UNISEX) if UNISEX in g else -2
        # plain columns: building a Match must not cost a pandas row lookup (~0.1 ms each) on the query path
        self._ids = items["id"].to_numpy()
        self._names = items["name"].astype(str).tolist()
        self._paths = items["path"].astype(str).tolist()
        self._labels = {h: [None if v is None or v != v else str(v) for v in items[h]] for h in HEADS}

    # --- queries -------------------------------------------------------------------------------------------
    def find(self, image: ImageSource | None = None, *, item_id: int | None = None, mode: str = "same", k: int = 10,
             per_type: int = 2, name: str | None = None) -> FindResult:
        """Matches for an uploaded image (path, bytes, file) or a catalogue item id. The query never matches itself."""
        if (image is None) == (item_id is None):
            raise VibeError("Give either an image or a catalogue item id.")
        if item_id is not None:
            row = self.row_of_id.get(int(item_id))
            if row is None:
                raise VibeError(f"Item {item_id} is not in the built catalogue.")
            emb = self.art.clip.vector(row)
            known = {h: (self.codes[h][row] if self.codes[h][row] >= 0 else None) for h in HEADS}
            return self.search(emb, mode=mode, k=k, exclude=self.rows_of_hash[self.art.items["hash"].iat[row]] + [row],
                               known=known, per_type=per_type, query_id=int(item_id))
        if isinstance(image, Image.Image):
            emb, exclude = self.encoder.encode_image(image), []
        else:
            data = read_bytes(image)
            exclude = self.rows_of_hash.get(content_hash(data), [])
            # an upload identical to a catalogue photo reuses its stored embedding: nothing is embedded twice
            emb = self.art.clip.vector(exclude[0]) if exclude else self.encoder.encode_image(
                data, name=str(image) if isinstance(image, (str, Path)) else name)
        return self.search(emb, mode=mode, k=k, exclude=exclude, per_type=per_type)

    def predict(self, emb: np.ndarray) -> dict[str, Prediction]:
        probs = self.art.heads.predict_proba(emb[None])
        out = {}
        for h in HEADS:
            p = probs[h][0]
            order = np.argsort(-p)[:3]
            out[h] = Prediction(self.vocabs[h][order[0]], float(p[order[0]]), [(self.vocabs[h][i], float(p[i])) for i in order])
        return out

    def search(self, emb: np.ndarray, *, mode: str = "same", k: int = 10, exclude: list[int] | None = None,
               known: dict[str, int | None] | None = None, per_type: int = 2, query_id: int | None = None) -> FindResult:
        """Filter by attributes (predicted, or `known` codes), relax filters until k survive, rank in the mode's space."""
        if mode not in MODES:
            raise VibeError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
        if k < 1:
            raise VibeError("k must be at least 1.")
        preds = self.predict(emb)
        query = {h: self.vocabs[h].index(preds[h].label) for h in HEADS}
        for h, code in (known or {}).items():
            if code is not None:
                query[h] = int(code)
        base = np.ones(len(self.art.items), dtype=bool)
        if exclude:
            base[exclude] = False
        names = SAME_FILTERS if mode == "same" else COMBO_FILTERS
        if mode == "combo":
            base &= self.codes["item_type"] != query["item_type"]  # the point of mix & match: other item types
        masks = {h: self._mask(h, query[h]) for h in names}
        active = list(names)
        relaxed: list[str] = []
        while True:
            allowed = base.copy()
            for h in active:
                allowed &= masks[h]
            if allowed.sum() >= k or not active:
                break
            relaxed.append(active.pop())
        if mode == "same":
            rows, scores = self.art.clip.search(emb, k, allowed)
        else:
            rows, scores = self._combo(emb, k, allowed, per_type)
        return FindResult(mode=mode, k=k, predictions=preds, query_labels={h: self.vocabs[h][query[h]] for h in HEADS},
                          filters={h: self.vocabs[h][query[h]] for h in active}, relaxed=relaxed,
                          matches=[self._match(r, s) for r, s in zip(rows, scores)], query_id=query_id)

    # --- helpers -------------------------------------------------------------------------------------------
    def _mask(self, head: str, code: int) -> np.ndarray:
        codes = self.codes[head]
        if head == "gender":
            return (codes == code) | (codes == self.unisex) | (code == self.unisex)
        return codes == code

    def _combo(self, emb: np.ndarray, k: int, allowed: np.ndarray, per_type: int) -> tuple[np.ndarray, np.ndarray]:
        """Rank in the style space, at most `per_type` per item type so the answer spans several types."""
        style_q = self.art.projection.project(emb[None])[0]
        n_allowed = int(allowed.sum())
        fetch = min(n_allowed, max(50, k * per_type * 5))
        while True:
            rows, scores = self.art.style.search(style_q, fetch, allowed)
            picked, per = [], {}
            for r, s in zip(rows, scores):
                t = self.codes["item_type"][r]
                if per.get(t, 0) < per_type:
                    per[t] = per.get(t, 0) + 1
                    picked.append((r, s))
                    if len(picked) == k:
                        break
            if len(picked) == k or fetch >= n_allowed:
                break
            fetch = min(n_allowed, fetch * 4)
        if len(picked) < k:  # too few item types to honour the cap: fill with the best of the rest
            taken = {r for r, _ in picked}
            picked += [(r, s) for r, s in zip(rows, scores) if r not in taken][: k - len(picked)]
        return np.array([r for r, _ in picked], dtype=np.int64), np.array([s for _, s in picked], dtype=np.float32)

    def _match(self, row: int, score: float) -> Match:
        r = int(row)
        return Match(row=r, id=int(self._ids[r]), name=self._names[r], path=self._paths[r],
                     labels={h: self._labels[h][r] for h in HEADS}, score=float(score))
