"""Score a build on a labelled catalogue it was not trained on: head accuracy/macro-F1 and retrieval precision@k per mode."""
from __future__ import annotations

import numpy as np

from .artifacts import Artifacts
from .backbone import Encoder
from .catalog import Catalog
from .config import HEADS
from .heads import encode_labels, evaluate_head
from .progress import Progress, silent
from .retrieve import Matcher
from .rules import gender_compatible
from .store import EmbeddingStore, embed_files


def same_relevant(q: dict, m: dict) -> bool:
    """A strict match: the true articleType and baseColour both equal the query's."""
    return q["item_type"] is not None and m["item_type"] == q["item_type"] and q["colour"] is not None and m["colour"] == q["colour"]


def combo_relevant(q: dict, m: dict) -> bool:
    """A mix & match hit: the query's usage, a compatible gender, a different articleType."""
    return q["style"] is not None and m["style"] == q["style"] and gender_compatible(q["gender"], m["gender"]) and m["item_type"] != q["item_type"]


def evaluate(art: Artifacts, encoder: Encoder, catalog: Catalog, workdir, k: int = 5, batch_size: int = 32,
             progress: Progress = silent) -> tuple[dict, dict]:
    """Returns (scores in the documented JSON shape, extra facts such as overlap with the training catalogue)."""
    matcher = Matcher(art, encoder)
    store = EmbeddingStore(workdir / "cache", encoder.fingerprint, encoder.dim)
    emb, hashes, stats = embed_files(encoder, [catalog.root / p for p in catalog.items["path"]], store, batch_size, progress)
    ok = ~np.isnan(emb).any(axis=1)
    items = catalog.items[ok].reset_index(drop=True)
    emb, hashes = emb[ok], [h for h, good in zip(hashes, ok) if good]
    codes = encode_labels(items, art.heads.vocabs)
    probs = art.heads.predict_proba(emb)
    heads = {}
    for h in HEADS:
        m = evaluate_head(codes[h], probs[h].argmax(1), art.heads.vocabs[h])
        heads[h] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    truth = items[list(HEADS)].astype(object).where(items[list(HEADS)].notna(), None).to_dict("records")
    precision = {"same": [], "combo": []}
    for i in range(len(items)):
        exclude = matcher.rows_of_hash.get(hashes[i], [])
        for mode, relevant in (("same", same_relevant), ("combo", combo_relevant)):
            res = matcher.search(emb[i], mode=mode, k=k, exclude=exclude)
            precision[mode].append(sum(relevant(truth[i], m.labels) for m in res.matches) / k)
        progress("retrieval", i + 1, len(items))
    scores = {"n_queries": int(len(items)), "heads": heads,
              "retrieval": {mode: {"k": k, "precision": float(np.mean(v)) if v else 0.0} for mode, v in precision.items()}}
    built_ids = set(art.items["id"].tolist())
    extra = {"overlap_with_build": int(sum(int(i) in built_ids for i in items["id"])), "failed": stats.failed,
             "report": catalog.report}
    return scores, extra
