"""Saving a trained locator model (the segmenter, the proposal detector) the one way: weights as safetensors and a
JSON card (its config, what it was trained on, its report) written together, atomically."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from torch import nn

from ..config import CatalogConfig
from ..errors import VibeError
from ..util.checkpoint import save_module
from ..util.files import atomic_folder, write_json


def save_trained(out_dir: Path, net: nn.Module, kind: str, weights_file: str, config_file: str, cfg, root: Path,
                 catalog: CatalogConfig, excluded: int, report: dict, what: str) -> None:
    """Write `net` and its card to `out_dir` as one folder swap; a failure leaves what was there untouched and is one
    VibeError naming `what` was being saved."""
    try:
        with atomic_folder(out_dir) as staging:
            save_module(staging / weights_file, net, {"format": f"{kind}-1"})
            write_json(staging / config_file, {
                "kind": kind, "config": asdict(cfg), "trained_on": str(root), "subset": catalog.subset,
                "holdout_fraction": catalog.holdout_fraction, "excluded_items": excluded, "report": report,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    except OSError as e:
        raise VibeError(f"Could not save {what} to {out_dir} ({e.strerror or e}); what was there before is untouched. "
                        "Free disk space (or fix permissions) and train again.") from None
