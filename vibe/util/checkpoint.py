"""Checkpoints of torch modules as safetensors with string metadata (saving is atomic, loading never runs code), and
the digest of a module's weights that tells two checkpoints of one name apart."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import VibeError
from .files import atomic_path

if TYPE_CHECKING:
    import torch


def save_module(path: Path, module, meta: dict[str, str]) -> None:
    """A torch module's weights as safetensors (atomically), with string metadata that describes how to rebuild it."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp), metadata=meta)


def load_module(path: Path, make, what: str, fix: str = "rebuild with `python -m vibe build`"):
    """Rebuild a module with `make(metadata)` and load its safetensors weights: loading never runs code.
    Any failure (not safetensors, a pickle, truncated, wrong shapes) is one clear VibeError ending in `fix`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        module = make(meta)
        module.load_state_dict(load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - whatever went wrong, this is not a checkpoint we wrote
        raise VibeError(f"{path} is not a valid {what} checkpoint ({type(e).__name__}); {fix}.") from None
    return module.eval()


def weights_digest(module: torch.nn.Module) -> str:
    """A hash of every parameter and buffer, so two checkpoints with one name still differ."""
    h = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def load_trained(folder: Path, config_file: str, weights_file: str, config_cls, make_net, what: str, command: str):
    """A trained locator model as `vibe.train.saving.save_trained` wrote it: (its config, the network in eval mode,
    a short digest of its weights), or one VibeError saying which file is unusable and the command that trains one."""
    import json

    folder = Path(folder)
    fix = f"train one with `python -m vibe {command} --data DIR`"
    try:
        cfg = config_cls(**json.loads((folder / config_file).read_text())["config"])
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise VibeError(f"{folder} is not a usable {what} ({config_file}: {type(e).__name__}); {fix}.") from None
    net = load_module(folder / weights_file, lambda meta: make_net(cfg), what, fix).eval()
    return cfg, net, weights_digest(net)[:12]

