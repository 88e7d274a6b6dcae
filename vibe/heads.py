"""The five attribute heads (item_type, gender, colour, season, style): vocabularies, train, predict, evaluate, save, load."""
from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import HEADS, OTHER, HeadsConfig
from .fsutil import load_module, save_module
from .progress import Progress, silent

Vocabs = dict[str, list[str]]


def build_vocabularies(items: pd.DataFrame, min_count: int) -> Vocabs:
    """Per head: classes with at least `min_count` items, most frequent first, then `Other` for the rest."""
    vocabs = {}
    for head in HEADS:
        counts = Counter(items[head].dropna())
        keep = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count and c != OTHER]
        if len(keep) < len(counts):
            keep.append(OTHER)
        vocabs[head] = keep
    return vocabs


def encode_labels(items: pd.DataFrame, vocabs: Vocabs) -> dict[str, np.ndarray]:
    """Label strings -> class indices; a class outside the vocabulary is `Other`, a missing label is -1 (ignored)."""
    codes = {}
    for head, vocab in vocabs.items():
        index = {c: i for i, c in enumerate(vocab)}
        other = index.get(OTHER, -1)
        codes[head] = np.array([-1 if v is None or v != v else index.get(v, other) for v in items[head]], dtype=np.int64)
    return codes


def stratified_split(strata: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (keep, heldout), stratified by `strata` where every stratum has at least two rows."""
    from sklearn.model_selection import train_test_split  # here, not at the top: embedding workers never need sklearn

    rows = np.arange(len(strata))
    counts = Counter(strata.tolist())
    stratify = strata if min(counts.values()) >= 2 and len(counts) <= len(rows) * fraction else None
    keep, held = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(held)


class AttributeHeads(torch.nn.Module):
    """One linear classifier per attribute on a frozen embedding."""

    def __init__(self, dim: int, vocabs: Vocabs):
        super().__init__()
        self.vocabs = vocabs
        self.dim = dim
        self.heads = torch.nn.ModuleDict({h: torch.nn.Linear(dim, len(v)) for h, v in vocabs.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {h: layer(x) for h, layer in self.heads.items()}

    @torch.no_grad()
    def warm_from(self, previous: "AttributeHeads") -> int:
        """Copy the weights of every class the previous heads knew (matched by name, whatever its position). Returns how many."""
        copied = 0
        for h, layer in self.heads.items():
            old_index = {c: i for i, c in enumerate(previous.vocabs.get(h, []))}
            old = previous.heads[h] if h in previous.heads else None
            if old is None or old.in_features != layer.in_features:
                continue
            for i, c in enumerate(self.vocabs[h]):
                if c in old_index:
                    layer.weight[i] = old.weight[old_index[c]]
                    layer.bias[i] = old.bias[old_index[c]]
                    copied += 1
        return copied

    @torch.inference_mode()
    def predict_proba(self, emb: np.ndarray) -> dict[str, np.ndarray]:
        logits = self(torch.from_numpy(np.asarray(emb, dtype=np.float32)))
        return {h: torch.softmax(v, dim=-1).numpy() for h, v in logits.items()}


def _loss(heads: AttributeHeads, x: torch.Tensor, y: dict[str, torch.Tensor]) -> torch.Tensor:
    out = heads(x)
    losses = [torch.nn.functional.cross_entropy(out[h], y[h], ignore_index=-1) for h in out if (y[h] >= 0).any()]
    return torch.stack(losses).sum()


def train_heads(emb: np.ndarray, codes: dict[str, np.ndarray], vocabs: Vocabs, cfg: HeadsConfig, seed: int = 0,
                progress: Progress = silent, init: AttributeHeads | None = None) -> tuple[AttributeHeads, dict]:
    """Train all heads jointly with cross-entropy and early stopping on a stratified validation slice.
    `init` (the previous build's heads; classes matched by name) makes an incremental rebuild converge in a few epochs."""
    torch.manual_seed(seed)
    fit, val = stratified_split(codes["item_type"], cfg.val_fraction, seed)
    x = torch.from_numpy(emb.astype(np.float32))
    y = {h: torch.from_numpy(c) for h, c in codes.items()}
    heads = AttributeHeads(emb.shape[1], vocabs)
    patience = cfg.patience
    if init is not None and heads.warm_from(init):
        patience = min(patience, cfg.warm_patience)  # already near the optimum: stop sooner when it stops improving
    else:
        init = None
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, since, history = float("inf"), copy.deepcopy(heads.state_dict()), 0, []
    x_val, y_val = x[val], {h: t[val] for h, t in y.items()}
    if init is not None:
        with torch.no_grad():
            best = float(_loss(heads.eval(), x_val, y_val))  # only keep training if it beats where we start
    for epoch in range(cfg.epochs):
        heads.train()
        order = torch.from_numpy(fit)[torch.randperm(len(fit), generator=gen)]
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            opt.zero_grad()
            _loss(heads, x[idx], {h: t[idx] for h, t in y.items()}).backward()
            opt.step()
        heads.eval()
        with torch.no_grad():
            val_loss = float(_loss(heads, x_val, y_val))
        history.append(val_loss)
        progress("heads", epoch + 1, cfg.epochs)
        if val_loss < best - 1e-4:
            best, best_state, since = val_loss, copy.deepcopy(heads.state_dict()), 0
        else:
            since += 1
            if since >= patience:
                progress("heads", cfg.epochs, cfg.epochs)  # stopped early: close the stage
                break
    heads.load_state_dict(best_state)
    return heads.eval(), {"epochs": len(history), "best_val_loss": best}


def evaluate_head(y_true: np.ndarray, y_pred: np.ndarray, vocab: list[str]) -> dict:
    """scikit-learn metrics for one head over rows with a known label: accuracy, macro-F1, per class, confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    known = y_true >= 0
    t, p = y_true[known], y_pred[known]
    labels = list(range(len(vocab)))
    if not len(t):
        return {"n": 0, "accuracy": float("nan"), "macro_f1": float("nan"), "per_class": [], "confusion": [], "labels": vocab}
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    present = sorted(set(t.tolist()))
    return {
        "n": int(len(t)),
        "accuracy": float(accuracy_score(t, p)),
        # macro over the classes that occur in the truth, so absent classes do not count as zero
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "per_class": [{"class": vocab[i], "precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                       "support": int(support[i])} for i in labels],
        "confusion": confusion_matrix(t, p, labels=labels).tolist(),
        "labels": vocab,
    }


def confidence_thresholds(probs: dict[str, np.ndarray], codes: dict[str, np.ndarray], precision: float,
                          min_items: int = 20, fallback: float = 0.5) -> dict[str, float]:
    """Per head, the lowest confidence from which its predictions are right at least `precision` of the time on these
    (held-out) items. Retrieval applies a filter on a prediction only from that confidence up. A head never that sure
    gets a threshold above 1 (its filter never applies); with fewer than `min_items` labelled items, `fallback`."""
    out = {}
    for head, p in probs.items():
        known = codes[head] >= 0
        if known.sum() < min_items:
            out[head] = fallback
            continue
        out[head] = precision_threshold(p[known].max(1), p[known].argmax(1) == codes[head][known], precision)
    return out


def precision_threshold(scores: np.ndarray, right: np.ndarray, precision: float) -> float:
    """The lowest score from which the cases at or above it are right at least `precision` of the time; above 1 when
    no score is that reliable."""
    scores, right = np.asarray(scores, dtype=float), np.asarray(right, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    accuracy = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(accuracy >= precision)
    return float(scores[order][ok[-1]]) if len(ok) else 1.01


def save_heads(path: Path, heads: AttributeHeads) -> None:
    save_module(path, heads, {"vocabs": json.dumps(heads.vocabs), "dim": str(heads.dim), "format": "vibe-heads-1"})


def load_heads(path: Path) -> AttributeHeads:
    """Load heads from safetensors (no code runs); the vocabularies travel in its metadata."""
    return load_module(path, lambda meta: AttributeHeads(int(meta["dim"]), json.loads(meta["vocabs"])), "heads")
