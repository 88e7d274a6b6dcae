"""Label problems: how many of an attribute's labels look wrong (confident learning's estimate over the build's
out-of-fold probabilities), and the items whose label the out-of-fold prediction disputes, most certain first,
cut at that estimate by default. Items the catalogue team has decided on (label_fixes.csv) are left out."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..catalog.fixes import decided
from ..config import HEADS, OTHER
from ..errors import VibeError
from .rankings import METHODS, Evidence, estimate_errors, nearest_others

RANKING = "vibe: surprise per class + margin"  # chosen on planted flips of seed 0, confirmed on seed 1 (README)


def audited(art) -> bool:
    """Whether the build has the out-of-fold probabilities the label audit reads (not when built with --audit-folds 0)."""
    return art.oof is not None


def evidence(art, head: str) -> Evidence:
    """The audit's evidence on one attribute of a build (labels, out-of-fold probabilities, photos, neighbours)."""
    if head not in HEADS:
        raise VibeError(f"head must be one of {', '.join(HEADS)}, not {head!r}.")
    if not audited(art):
        raise VibeError("This build has no out-of-fold predictions (it was built with --audit-folds 0): rebuild it "
                        "to audit its labels.")
    vectors = art.clip.vectors()
    return Evidence(labels=art.items[f"{head}_code"].to_numpy(), probs=art.oof[head], vectors=vectors,
                    neighbours=nearest_others(art.clip.index, vectors, art.items["hash"].to_numpy()))


@dataclass
class LabelAudit:
    head: str
    estimate: int  # how many labels look wrong (cleanlab.count.num_label_issues, off_diagonal_calibrated)
    table: pd.DataFrame  # every disagreement not yet decided, most certain first
    decided: int  # disagreements left out: the team fixed or confirmed them (label_fixes.csv)
    method: str
    agreement: float  # the share of labelled items whose out-of-fold prediction is their label: how far to trust the rest

    @property
    def shown(self) -> pd.DataFrame:
        """The list cut at the estimate ("about N labels look wrong; here they are")."""
        return self.table.head(max(0, self.estimate - self.decided))


def audit_labels(art, head: str = "item_type", method: str = RANKING, ev: Evidence | None = None) -> LabelAudit:
    """The estimate and the ranked disagreements of one attribute. The score is `method` of rankings.METHODS over
    the build's out-of-fold probabilities and the photos' neighbours; the columns say what the two witnesses think."""
    ev = ev or evidence(art, head)
    items, vocab = art.items, art.heads.vocabs[head]
    label, probs = ev.labels, ev.probs
    suggested = suggestions(probs, vocab)
    score = METHODS[method](ev)
    shares = ev.shares()
    rows = np.flatnonzero((label >= 0) & (probs.argmax(1) != label) & (suggested != label))
    done = decided(art.catalog_root, head)
    keep = np.array([int(i) not in done or items.at[r, head] not in done[int(i)]
                     for r, i in zip(rows, items["id"].to_numpy()[rows])], dtype=bool)
    n_decided = int((~keep).sum())
    rows = rows[keep]
    lab, sug = label[rows], suggested[rows]
    table = pd.DataFrame({"id": items["id"].to_numpy()[rows], "name": items["name"].to_numpy()[rows],
                          "path": items["path"].to_numpy()[rows], "label": items[head].to_numpy()[rows],
                          "suggested": [vocab[i] for i in sug], "score": score[rows],
                          "p_suggested": probs[rows, sug], "p_label": probs[rows, lab],
                          "neighbours_suggested": shares[rows, sug], "neighbours_label": shares[rows, lab]})
    table = table.sort_values(["score", "id"], ascending=[False, True]).reset_index(drop=True)
    labelled = label >= 0
    agreement = float(np.mean(probs[labelled].argmax(1) == label[labelled])) if labelled.any() else 0.0
    return LabelAudit(head, estimate_errors(ev), table, n_decided, method, agreement)


def suggestions(probs: np.ndarray, vocab: list[str]) -> np.ndarray:
    """Per item, the class the held-out heads find likeliest among the named ones: "Other" (the bucket of types too
    rare to learn) is no label a catalogue team can accept, so an item the heads put there is offered its best named
    class instead."""
    named = probs.copy()
    if OTHER in vocab and len(vocab) > 1:
        named[:, vocab.index(OTHER)] = -1
    return named.argmax(1)


def label_problems(art, head: str = "item_type", top: int | None = None) -> pd.DataFrame:
    """Every undecided disagreement of one attribute, most certain first (the first `top`)."""
    table = audit_labels(art, head).table
    return table.head(top) if top else table
