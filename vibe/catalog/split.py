"""The deterministic splits: by a hash of the item id (the train/holdout subset, the heads' held-out items, the audit's
folds), stable across machines, rebuilds and catalogue versions; and a stratified split for early stopping."""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np


def id_fraction(item_id: int, salt: str = "") -> float:
    """A number in [0, 1) fixed by the item id: deterministic splits that hold across machines, rebuilds and catalogue
    versions. Different salts give independent splits."""
    return int.from_bytes(hashlib.blake2b(f"{salt}{item_id}".encode(), digest_size=8).digest(), "big") / 2**64


def in_holdout(item_id: int, fraction: float, salt: str = "") -> bool:
    """The deterministic split by item id (the catalogue subset, or with another salt the heads' held-out items)."""
    return id_fraction(item_id, salt) < fraction


def stratified_split(strata: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (keep, heldout), stratified by `strata` where every stratum has at least two rows."""
    from sklearn.model_selection import (
        train_test_split,  # here, not at the top: embedding workers never need sklearn
    )

    rows = np.arange(len(strata))
    counts = Counter(strata.tolist())
    stratify = strata if min(counts.values()) >= 2 and len(counts) <= len(rows) * fraction else None
    keep, held = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(held)
