"""Training the 256-D style projection: a triplet loss, an in-batch InfoNCE and a term that keeps the backbone's cosines."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..catalog.rules import Compatibility
from ..config import ProjectionConfig
from ..errors import VibeError
from ..models.style import ProjectionHead
from ..util.progress import Progress, silent


def train_projection(emb: np.ndarray, sample_triplets: Callable[[int], np.ndarray], cfg: ProjectionConfig,
                     seed: int = 0, progress: Progress = silent, init: ProjectionHead | None = None,
                     compat: Compatibility | None = None) -> tuple[ProjectionHead, dict]:
    """`sample_triplets(epoch)` gives that epoch's (m, 3) row triplets. Three terms: `torch.nn.TripletMarginLoss` on
    each triplet; an InfoNCE over the batch (each anchor against every positive and negative of the batch, the ones that
    also complete its outfit masked out), so distances rank across the whole space; and the mean squared difference
    between the batch's cosines here and in the backbone space, so items of one label group keep their order instead
    of collapsing onto one point.
    With `init` (the previous build's head) only `cfg.warm_epochs` epochs run: the space is already shaped."""
    torch.manual_seed(seed)
    x = torch.from_numpy(emb.astype(np.float32))
    head = ProjectionHead(emb.shape[1], cfg.dim)
    epochs = cfg.epochs
    if init is not None and (init.dim_in, init.dim_out, init.hidden) == (head.dim_in, head.dim_out, head.hidden):
        head.load_state_dict(init.state_dict())
        epochs = min(cfg.epochs, cfg.warm_epochs)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr)
    triplet_loss = torch.nn.TripletMarginLoss(margin=cfg.margin)
    losses = []
    for epoch in range(epochs):
        trip = torch.from_numpy(sample_triplets(epoch))
        if not len(trip):
            raise VibeError("No triplets could be mined: the catalogue needs items of several outfit slots (tops, bottoms, "
                            "footwear...) sharing a usage label.")
        head.train()
        total = 0.0
        for start in range(0, len(trip), cfg.batch_size):
            a, p, n = trip[start:start + cfg.batch_size].T
            za, zp, zn = head(x[a]), head(x[p]), head(x[n])
            loss = triplet_loss(za, zp, zn)
            if cfg.batch_weight and len(a) > 1:
                logits = za @ torch.cat([zp, zn]).T / cfg.temperature
                if compat is not None:  # another anchor's positive that completes this outfit too is no negative
                    also = torch.from_numpy(compat(a.numpy()[:, None], p.numpy()[None, :])) & ~torch.eye(len(a), dtype=torch.bool)
                    logits[:, : len(a)] = logits[:, : len(a)].masked_fill(also, float("-inf"))
                loss = loss + cfg.batch_weight * torch.nn.functional.cross_entropy(logits, torch.arange(len(a)))
            if cfg.structure_weight:  # the batch's cosines stay near the backbone's: ranks within a label group survive
                z, xb = torch.cat([za, zp, zn]), torch.nn.functional.normalize(x[torch.cat([a, p, n])], dim=1)
                loss = loss + cfg.structure_weight * ((z @ z.T - xb @ xb.T) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(a)
        losses.append(total / len(trip))
        progress("projection", epoch + 1, epochs)
    return head.eval(), {"epochs": epochs, "warm_start": init is not None, "loss": losses}
