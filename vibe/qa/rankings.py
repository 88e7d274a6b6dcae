"""Ways to rank a catalogue's labels by how likely each is wrong, all over the same evidence: the build's out-of-fold
head probabilities and the 512-D photos. The project's own score and cleanlab's (the well-kept library for exactly
this), side by side, so `audit planted` can measure which one finds planted flips first. Every method returns one
score per item, higher = more suspicious (NaN where the item has no label)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

NEIGHBOURS = 10
SMOOTHING = 1 / NEIGHBOURS  # a label no neighbour carries counts as if one in ten did: one vote is weak evidence


@dataclass
class Evidence:
    """What the audit knows of one attribute's labels."""

    labels: np.ndarray  # (n,) class codes, -1 where the catalogue has no (or a too rare) label
    probs: np.ndarray  # (n, classes) out-of-fold probabilities: heads that never saw the item
    vectors: np.ndarray  # (n, d) L2-normalised photo embeddings
    neighbours: np.ndarray  # (n, NEIGHBOURS) rows of each item's nearest other photos (not the same bytes), -1 padded

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.labels >= 0)

    def shares(self) -> np.ndarray:
        """(n, classes): the share of each class among the labels of each item's nearest other photos."""
        n, k = self.probs.shape
        out = np.zeros((n, k), dtype=np.float32)
        nb = self.neighbours
        lab = np.where(nb >= 0, self.labels[np.maximum(nb, 0)], -1)
        counts = (lab >= 0).sum(1)
        for c in range(k):
            out[:, c] = (lab == c).sum(1)
        return out / np.maximum(counts, 1)[:, None]


def nearest_others(index, vectors: np.ndarray, hashes: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """(n, k) rows of each item's k nearest other photos in `index`, photos with the same bytes skipped (a duplicate
    upload would vote for its own label), -1 where fewer exist."""
    _, found = index.search(np.ascontiguousarray(vectors, dtype=np.float32), k + 4)
    out = np.full((len(vectors), k), -1, dtype=np.int64)
    for i, row in enumerate(found):
        others = [r for r in row if r >= 0 and r != i and hashes[r] != hashes[i]][:k]
        out[i, :len(others)] = others
    return out


def _on_labelled(ev: Evidence, score: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.full(len(ev.labels), np.nan)
    rows = ev.labelled
    if len(rows):
        out[rows] = score(ev.labels[rows], ev.probs[rows])
    return out


def surprise(ev: Evidence) -> np.ndarray:
    """The project's score: how surprising the label is to two independent witnesses, added in nats: the held-out
    heads (-ln p(label)) and the 10 nearest other photos (-ln(share carrying the label + 0.1)). A label the heads give
    1 % and no neighbour carries scores 4.6 + 2.3 = 6.9; one they give 40 % and half the neighbours carry, 1.4."""
    shares = ev.shares()
    rows = np.arange(len(ev.labels))
    lab = np.maximum(ev.labels, 0)
    s = -np.log(np.maximum(ev.probs[rows, lab], 1e-6)) - np.log(shares[rows, lab] + SMOOTHING)
    return np.where(ev.labels >= 0, s, np.nan)


def cleanlab_quality(method: str) -> Callable[[Evidence], np.ndarray]:
    def score(ev: Evidence) -> np.ndarray:
        from cleanlab.rank import get_label_quality_scores

        return _on_labelled(ev, lambda y, p: 1 - get_label_quality_scores(y, p, method=method))
    score.__doc__ = f"cleanlab.rank.get_label_quality_scores(method={method!r}): 1 - quality."
    return score


def cleanlab_filter(rank_by: str = "self_confidence") -> Callable[[Evidence], np.ndarray]:
    def score(ev: Evidence) -> np.ndarray:
        from cleanlab.rank import get_label_quality_scores

        def both(y, p):
            flagged = _find_label_issues(y, p)
            return flagged + (1 - get_label_quality_scores(y, p, method=rank_by))  # the filter's items first, ranked
        return _on_labelled(ev, both)
    score.__doc__ = (f"cleanlab.filter.find_label_issues (confident learning, prune by noise rate) first, ranked by "
                     f"{rank_by}; the rest after, by the same score.")
    return score


def _find_label_issues(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    return find_label_issues(*_compact(y, p)).astype(float)


def _compact(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered over the classes that occur, probabilities over those classes (renormalised): cleanlab's
    counting wants every class it is given to hold labelled examples."""
    classes = np.unique(y)
    q = p[:, classes]
    return np.searchsorted(classes, y), q / np.maximum(q.sum(1, keepdims=True), 1e-12)


def datalab_knn(ev: Evidence) -> np.ndarray:
    """cleanlab Datalab with features= the embeddings and no model: its label issue manager's kNN out-of-sample
    probabilities, scored by its label score (1 - score)."""
    def score(y, _):
        import logging

        from cleanlab import Datalab

        logging.getLogger("cleanlab").setLevel(logging.ERROR)
        lab = Datalab(data={"label": y}, label_name="label", verbosity=0)
        lab.find_issues(features=ev.vectors[ev.labelled], issue_types={"label": {}})
        return 1 - lab.get_issues("label")["label_score"].to_numpy()
    return _on_labelled(ev, score)


def surprise_per_class(ev: Evidence) -> np.ndarray:
    """The shipped score: `surprise` measured against what is usual for the label's class, plus the heads' margin.
    -ln p(label) + ln t(label), where t(c) is the geometric mean of p(c) over the items labelled c (a class the heads
    are always unsure of, Trunk or Free Gifts, no longer fills the top of the list with the model's own errors), plus
    the neighbours' -ln(share + 0.1), plus 2 x (the best other class's probability - p(label)) (a look-alike flip,
    Tshirts -> Tops, keeps a fair p(label) but loses the margin)."""
    rows, lab = np.arange(len(ev.labels)), np.maximum(ev.labels, 0)
    p_label = ev.probs[rows, lab]
    log_p = np.log(np.maximum(p_label, 1e-6))
    labelled = ev.labels >= 0
    typical = np.zeros(ev.probs.shape[1])
    np.add.at(typical, ev.labels[labelled], log_p[labelled])
    typical /= np.maximum(np.bincount(ev.labels[labelled], minlength=len(typical)), 1)
    others = ev.probs.copy()
    others[rows, lab] = -1
    score = surprise(ev) + typical[lab] + 2 * (others.max(1) - p_label)
    return np.where(labelled, score, np.nan)


def rank_mean(*methods: Callable[[Evidence], np.ndarray]) -> Callable[[Evidence], np.ndarray]:
    def score(ev: Evidence) -> np.ndarray:
        rows = ev.labelled
        out = np.full(len(ev.labels), np.nan)
        ranks = [np.argsort(np.argsort(m(ev)[rows])) / max(1, len(rows) - 1) for m in methods]
        out[rows] = np.mean(ranks, axis=0)
        return out
    score.__doc__ = "the mean of the normalised ranks of: " + ", ".join(m.__name__ for m in methods)
    return score


METHODS: dict[str, Callable[[Evidence], np.ndarray]] = {
    "vibe: surprise per class + margin": surprise_per_class,
    "vibe: surprise (before)": surprise,
    "cleanlab self_confidence": cleanlab_quality("self_confidence"),
    "cleanlab normalized_margin": cleanlab_quality("normalized_margin"),
    "cleanlab confidence_weighted_entropy": cleanlab_quality("confidence_weighted_entropy"),
    "cleanlab find_label_issues + self_confidence": cleanlab_filter("self_confidence"),
    "cleanlab Datalab features= (kNN)": datalab_knn,
    "rank mean: vibe + cleanlab normalized_margin": rank_mean(surprise_per_class, cleanlab_quality("normalized_margin")),
}


def estimate_errors(ev: Evidence, method: str = "off_diagonal_calibrated") -> int:
    """Confident learning's estimate of how many labels are wrong (cleanlab.count.num_label_issues)."""
    from cleanlab.count import num_label_issues

    y = ev.labels[ev.labelled]
    if len(np.unique(y)) < 2:
        return 0
    return int(num_label_issues(*_compact(y, ev.probs[ev.labelled]), estimation_method=method))
