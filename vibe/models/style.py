"""The 256-D style projection: the model, project, save, load (training: vibe.build.style)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..util.checkpoint import load_module, save_module
from ..util.vectors import l2_normalize


class ProjectionHead(torch.nn.Module):
    """dim -> hidden -> out, L2-normalised: a style space where complementary items sit close."""

    def __init__(self, dim_in: int, dim_out: int = 256, hidden: int = 512):
        super().__init__()
        self.dim_in, self.dim_out, self.hidden = dim_in, dim_out, hidden
        self.net = torch.nn.Sequential(torch.nn.Linear(dim_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.net(x))

    @torch.inference_mode()
    def project(self, emb: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(np.asarray(emb, dtype=np.float32))).numpy()


def save_projection(path: Path, head: ProjectionHead) -> None:
    save_module(path, head, {"dim_in": str(head.dim_in), "dim_out": str(head.dim_out), "hidden": str(head.hidden),
                             "format": "vibe-projection-1"})


def load_projection(path: Path) -> ProjectionHead:
    return load_module(path, lambda m: ProjectionHead(int(m["dim_in"]), int(m["dim_out"]), int(m["hidden"])), "projection")
