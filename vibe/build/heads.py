"""Training the five attribute heads on frozen embeddings: jointly, with cross-entropy and early stopping; and the
out-of-fold heads whose predictions the label audit reads (an item is judged only by heads that never saw its label)."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from ..catalog.split import id_fraction, stratified_split
from ..config import HeadsConfig
from ..models.heads import AttributeHeads, Vocabs
from ..util.progress import Progress, silent


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


FOLDS = 5


def fold_of(ids: np.ndarray, folds: int = FOLDS) -> np.ndarray:
    """A fixed fold per item id (a salted hash), so an item is judged by the same heads across rebuilds."""
    return np.array([int(id_fraction(int(i), "fold") * folds) for i in ids])


def out_of_fold_columns(probs: dict[str, np.ndarray], codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per head, three numbers per item from its out-of-fold probabilities (`out_of_fold_probs`): the predicted class,
    its probability and the catalogue label's probability. Stored with the build's items; the whole matrices go to
    the build's audit.safetensors (the label audit's estimate and rankings read them)."""
    out = {}
    for h, p in probs.items():
        rows = np.arange(len(p))
        out[f"oof_pred_{h}"] = p.argmax(1).astype(np.int16)
        out[f"oof_p_pred_{h}"] = p.max(1).astype(np.float32)
        out[f"oof_p_label_{h}"] = np.where(codes[h] >= 0, p[rows, np.maximum(codes[h], 0)], np.nan).astype(np.float32)
    return out


def out_of_fold_probs(emb: np.ndarray, codes: dict[str, np.ndarray], vocabs: dict, ids: np.ndarray, cfg: HeadsConfig,
                      seed: int = 0, folds: int = FOLDS, progress: Progress = silent) -> dict[str, np.ndarray]:
    """Per head, (items, classes) probabilities from heads trained without the item (k-fold cross-fitting by a fixed
    fold per id, so an item's own label never trains the head that judges it)."""
    fold = fold_of(ids, folds)
    out = {h: np.zeros((len(emb), len(v)), dtype=np.float32) for h, v in vocabs.items()}
    quick = replace(cfg, patience=min(cfg.patience, 5), epochs=min(cfg.epochs, 100))
    for f in range(folds):
        test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if not len(test) or len(train) < 10:
            continue
        heads, _ = train_heads(emb[train], {h: c[train] for h, c in codes.items()}, vocabs, quick, seed)
        for h, p in heads.predict_proba(emb[test]).items():
            out[h][test] = p
        progress("audit: out-of-fold heads", f + 1, folds)
    return out
