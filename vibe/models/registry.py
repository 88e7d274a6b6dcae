"""Backbone names -> loaders: auto (default), fashion-clip, vibe-mini, any Hugging Face CLIP id or folder, tiny-random."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..config import REPO_ROOT
from ..errors import VibeError
from .backbone import BackboneParts, Preprocess
from .mini import CONFIG_FILE, load_mini

FASHION_CLIP_ID = "patrickjohncyh/fashion-clip"
ALIASES = {"fashion-clip": FASHION_CLIP_ID}

VIBE_MINI_DIR = REPO_ROOT / "checkpoints" / "vibe-mini"
GET_FASHION_CLIP = (f"to use FashionCLIP, run `hf download {FASHION_CLIP_ID}` on a connected machine "
                    "(or copy its Hugging Face cache here)")

# Deterministic and tiny: runs the real CLIP code path in milliseconds. Its embeddings mean nothing.
TINY_CLIP = {
    "text_config": {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "vocab_size": 99, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
    "vision_config": {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 8},
    "projection_dim": 512,
}
TINY_PREPROCESS = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}


def _quiet_transformers():
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def tiny_clip_model(seed: int = 0):
    """A randomly initialised CLIP of the real architecture, small enough for tests (not saved anywhere)."""
    from transformers import CLIPConfig, CLIPModel

    _quiet_transformers()
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(**TINY_CLIP))


def _clip_parts(name: str, kind: str, source: str, description: str, model, processor_cfg: dict,
                tokenizer=None) -> BackboneParts:
    def forward(pixels: torch.Tensor) -> torch.Tensor:
        out = model.get_image_features(pixel_values=pixels)
        # transformers 5 returns an output object whose pooler_output is the projected embedding
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def text(texts: list[str]) -> torch.Tensor:
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=model.config.text_config.max_position_embeddings,
                           return_tensors="pt")
        out = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    config = model.config.to_dict()
    config = {k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version", "architectures")}
    return BackboneParts(name=name, kind=kind, source=source, description=description, model=model, forward=forward,
                         preprocess=Preprocess.from_processor_config(processor_cfg), dim=int(model.config.projection_dim),
                         config=config, text=text if tokenizer is not None else None)


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the Hugging Face endpoint, so an offline machine fails in seconds, not after retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_clip(source: str | Path, name: str | None = None, local_only: bool = False) -> BackboneParts:
    """Load a CLIP with transformers `CLIPModel.from_pretrained` from a Hugging Face id or a `save_pretrained` folder."""
    from transformers import CLIPModel
    from transformers.utils import cached_file

    _quiet_transformers()
    source = str(source)
    name = name or source
    is_dir = Path(source).is_dir()
    attempts = [True] if (is_dir or local_only) else [True, False]
    model, reason = None, ""
    for offline in attempts:
        if not offline and not hub_reachable():
            break
        try:
            model = CLIPModel.from_pretrained(source, local_files_only=offline)
            processor_file = cached_file(source, "preprocessor_config.json", local_files_only=offline,
                                         _raise_exceptions_for_missing_entries=False)
            processor_cfg = json.loads(Path(processor_file).read_text()) if processor_file else {}
            tokenizer = _tokenizer(source, offline)
            break
        except Exception as e:  # noqa: BLE001 - not cached, hub unreachable, not a CLIP, unsafe or damaged weights
            model, reason = None, str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    if model is None:
        if is_dir:
            raise VibeError(f"Could not load a CLIP model from the folder {source} ({reason}). It needs config.json, "
                            "preprocessor_config.json and safetensors weights, as save_pretrained writes them.")
        raise VibeError(f"Could not load a CLIP model from {source} (not in the local Hugging Face cache, and the hub "
                        f"did not answer). Download it on a connected machine (`hf download {source}`) "
                        "or pass --backbone with a local folder saved by save_pretrained.")
    if source == FASHION_CLIP_ID:
        description = f"FashionCLIP ({FASHION_CLIP_ID})"
    else:
        description = f"CLIP from {source}"
    return _clip_parts(name, "clip", source, description, model.eval(), processor_cfg, tokenizer)


def _tokenizer(source: str, offline: bool = True):
    """The text tokenizer saved with a CLIP, from where its weights came (the local cache, or the hub when the weights
    were just downloaded), or None: text search then uses the attribute heads alone."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=offline)
    except Exception:  # noqa: BLE001 - no tokenizer files next to the weights: an image-only backbone
        return None


def load_vibe_mini(folder: str | Path = VIBE_MINI_DIR, name: str = "vibe-mini") -> BackboneParts:
    """The project's own offline encoder (see vibe.models.mini)."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise VibeError(f"No vibe-mini checkpoint in {folder}: train one with `python -m vibe train-backbone --data DIR --out {folder}`.")
    net, preprocess, meta = load_mini(folder)
    trained = meta.get("trained_on", "?")
    return BackboneParts(name=name, kind="vibe-mini", source=str(folder), framing=bool(meta["config"].get("framing", False)),
                         description=f"vibe-mini (offline encoder trained on {Path(trained).name}, not FashionCLIP)",
                         # the mirror image is embedded too and added: +0.7 pt item_type on unseen photos, at ~1 ms/image
                         model=net, forward=lambda x: net(x) + net(x.flip(3)), preprocess=preprocess, dim=net.embed.out_features,
                         config={**meta["config"], "test_time": "hflip-sum"})


def availability(name: str) -> tuple[bool, str]:
    """Whether backbone `name` can be loaded on this machine now, and what it would be, without loading it (a second
    at most: the local Hugging Face cache, then a short check that the hub answers)."""
    from huggingface_hub import try_to_load_from_cache

    if name == "tiny-random":
        return True, "the test backbone: its matches mean nothing"
    if name == "vit-b32-random":
        return True, "a random ViT-B/32 (FashionCLIP's cost): its matches mean nothing"
    if name == "vibe-mini":
        ok = (VIBE_MINI_DIR / CONFIG_FILE).is_file()
        return ok, "the offline encoder shipped in checkpoints/" if ok else f"no checkpoint in {VIBE_MINI_DIR}"
    if name == "auto":
        ok, _ = availability("fashion-clip")
        return True, "FashionCLIP" if ok else "vibe-mini (FashionCLIP cannot be loaded here)"
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) or path.is_dir():
        ok = (path / "config.json").is_file() or (path / CONFIG_FILE).is_file()
        return ok, "a local folder" if ok else f"{path} holds no backbone"
    source = ALIASES.get(name, name)
    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return True, "in the local Hugging Face cache"
    if hub_reachable(timeout=1.0):
        return True, "downloaded from the Hugging Face hub on first use"
    how = GET_FASHION_CLIP if source == FASHION_CLIP_ID else f"download it on a connected machine (`hf download {source}`)"
    return False, f"not in the local Hugging Face cache and the hub is unreachable; {how}"


def load_auto() -> BackboneParts:
    """FashionCLIP from the local cache, else from the hub (a short timeout), else vibe-mini with a warning."""
    try:
        return load_clip(FASHION_CLIP_ID, name="fashion-clip")
    except VibeError:
        pass
    parts = load_vibe_mini()
    note = f"FashionCLIP is not in the local Hugging Face cache and the hub is unreachable: using vibe-mini; {GET_FASHION_CLIP}."
    return BackboneParts(**{**parts.__dict__, "note": note})


def load_parts(name: str) -> BackboneParts:
    """Resolve a backbone name: fashion-clip, tiny-random, a local folder, or a Hugging Face CLIP id."""
    if name == "auto":
        return load_auto()
    if name == "vibe-mini":
        return load_vibe_mini()
    if name == "vit-b32-random":
        from transformers import CLIPConfig, CLIPModel

        _quiet_transformers()
        torch.manual_seed(0)
        return _clip_parts("vit-b32-random", "clip", "CLIPConfig() defaults, seed 0",
                           "random ViT-B/32 CLIP (FashionCLIP's architecture and cost; its matches mean nothing)",
                           CLIPModel(CLIPConfig()), {})
    if name == "tiny-random":
        return _clip_parts("tiny-random", "tiny-random", "built from a config, seed 0",
                           "tiny random CLIP (test backbone: its matches mean nothing)", tiny_clip_model(), TINY_PREPROCESS)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return load_vibe_mini(path, name=str(path))
        if (path / "config.json").is_file():
            return load_clip(path, name=str(path))
        raise VibeError(f"{path} is a folder but holds neither a CLIP config.json (save_pretrained) nor a vibe-mini checkpoint.")
    if name.startswith((".", "/", "~")):
        raise VibeError(f"Backbone folder {name} does not exist.")
    return load_clip(ALIASES.get(name, name), name=name)
