"""vibe-mini: the shipped checkpoint, a short training run, and `auto` falling back to it offline."""
import json

import numpy as np
import pytest

from conftest import SAMPLE, real_catalog_root
from vibe import Encoder
from vibe.config import CatalogConfig
from vibe.errors import VibeError
from vibe.mini import CONFIG_FILE, MiniConfig, train_mini
from vibe.registry import VIBE_MINI_DIR

shipped = pytest.mark.skipif(not (VIBE_MINI_DIR / CONFIG_FILE).is_file(), reason="no vibe-mini checkpoint in checkpoints/")


@shipped
def test_shipped_checkpoint_loads_through_the_backbone_interface():
    enc = Encoder("vibe-mini")
    assert enc.kind == "vibe-mini" and enc.dim == 512
    assert "not FashionCLIP" in enc.description
    images = sorted((SAMPLE / "images").iterdir())[:8]
    emb = enc.encode_images(images, batch_size=4)
    assert emb.shape == (8, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, rtol=1e-5)
    assert Encoder(str(VIBE_MINI_DIR)).fingerprint == enc.fingerprint


@shipped
def test_auto_falls_back_to_vibe_mini_when_the_hub_is_unreachable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))  # FashionCLIP is not cached here
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache" / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port: the hub does not answer
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    enc = Encoder("auto")
    assert enc.kind == "vibe-mini" and enc.name == "vibe-mini"
    assert "using vibe-mini" in enc.note and "huggingface-cli download patrickjohncyh/fashion-clip" in enc.note


def test_short_training_run_end_to_end(tmp_path):
    out = tmp_path / "mini"
    cfg = MiniConfig(epochs=2, resolution=32, width=8, batch_size=64)
    report = train_mini(CatalogConfig(root=real_catalog_root(), limit=300), out, cfg)
    assert report["n_train"] + report["n_report"] == 300
    assert set(report["accuracy"]) == {"item_type", "gender", "colour", "season", "style"}
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["kind"] == "vibe-mini" and meta["config"]["resolution"] == 32
    enc = Encoder(str(out))
    emb = enc.encode_images(sorted((real_catalog_root() / "images").iterdir())[:3])
    assert emb.shape == (3, 512) and not np.isnan(emb).any()


def test_a_broken_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CONFIG_FILE).write_text('{"config": {}}')
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(VibeError, match="not a usable vibe-mini checkpoint"):
        Encoder(str(tmp_path))
