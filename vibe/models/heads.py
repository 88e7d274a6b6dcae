"""The five attribute heads (item_type, gender, colour, season, style): vocabularies, the model, predict, save, load
(training: vibe.build.heads)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..catalog.reader import as_label
from ..config import HEADS, OTHER
from ..util.checkpoint import load_module, save_module

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
        codes[head] = np.array([-1 if as_label(v) is None else index.get(as_label(v), other) for v in items[head]],
                               dtype=np.int64)
    return codes


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


def save_heads(path: Path, heads: AttributeHeads) -> None:
    save_module(path, heads, {"vocabs": json.dumps(heads.vocabs), "dim": str(heads.dim), "format": "vibe-heads-1"})


def load_heads(path: Path) -> AttributeHeads:
    """Load heads from safetensors (no code runs); the vocabularies travel in its metadata."""
    return load_module(path, lambda meta: AttributeHeads(int(meta["dim"]), json.loads(meta["vocabs"])), "heads")
