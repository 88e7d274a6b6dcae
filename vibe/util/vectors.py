"""Vectors: the one place embeddings are L2-normalised (float32)."""
from __future__ import annotations

import numpy as np
import torch


def l2_normalize(x: np.ndarray | torch.Tensor):
    """The one place vectors are L2-normalised (float32)."""
    if isinstance(x, torch.Tensor):
        return torch.nn.functional.normalize(x.float(), dim=-1)
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
