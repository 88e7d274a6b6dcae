"""Atomic file and folder writes: a crash or a full disk leaves the previous version in place."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the published file gets the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it takes `target`'s place (the old one, if any, is
    moved aside first and removed after), so readers see the old folder or the new one, never a mix of files."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(staging, target)
        if old is not None:
            remove_tree(old)
    finally:
        remove_tree(staging)


def write_json(target: Path, data) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str))


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_hash(data: bytes) -> str:
    """The key of an image in the embedding cache: its bytes, whatever its name."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


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

    from .errors import VibeError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        module = make(meta)
        module.load_state_dict(load_file(str(path)))
    except Exception as e:  # noqa: BLE001 - whatever went wrong, this is not a checkpoint we wrote
        raise VibeError(f"{path} is not a valid {what} checkpoint ({type(e).__name__}); {fix}.") from None
    return module.eval()
