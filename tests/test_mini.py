"""vibe-mini: the shipped checkpoint, a short training run, and `auto` falling back to it offline."""
import json

import numpy as np
import pytest
from conftest import SAMPLE

from vibe import Encoder
from vibe.config import CatalogConfig
from vibe.errors import VibeError
from vibe.models.mini import CONFIG_FILE, MiniConfig
from vibe.models.registry import VIBE_MINI_DIR
from vibe.train.mini import train_mini

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
    assert "using vibe-mini" in enc.note and "hf download patrickjohncyh/fashion-clip" in enc.note


def test_short_training_run_end_to_end(tmp_path):
    out = tmp_path / "mini"
    cfg = MiniConfig(epochs=2, resolution=32, width=8, batch_size=64)
    report = train_mini(CatalogConfig(root=SAMPLE, limit=300), out, cfg)
    assert report["n_train"] + report["n_report"] == 300
    assert set(report["accuracy"]) == {"item_type", "gender", "colour", "season", "style"}
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["kind"] == "vibe-mini" and meta["config"]["resolution"] == 32
    enc = Encoder(str(out))
    emb = enc.encode_images(sorted((SAMPLE / "images").iterdir())[:3])
    assert emb.shape == (3, 512) and not np.isnan(emb).any()


def test_a_broken_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / CONFIG_FILE).write_text('{"config": {}}')
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(VibeError, match="not a valid vibe-mini checkpoint.*train-backbone"):
        Encoder(str(tmp_path))
    (tmp_path / CONFIG_FILE).write_text('{"config": {"no_such_field": 1}}')
    with pytest.raises(VibeError, match="not a usable vibe-mini checkpoint"):
        Encoder(str(tmp_path))


def _digest(folder):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_train_backbone_never_touches_the_shipped_checkpoint_by_default(tmp_path, capsys, small_catalog):
    from vibe.cli import main

    shipped_before = _digest(VIBE_MINI_DIR)
    args = ["train-backbone", "--data", str(SAMPLE), "--limit", "150", "--epochs", "1", "--resolution", "32", "--quiet"]
    assert main([*args, "--workdir", str(tmp_path / "w"), "--exclude", str(small_catalog)]) == 0
    assert _digest(VIBE_MINI_DIR) == shipped_before
    (out,) = (tmp_path / "w" / "backbones").iterdir()
    assert out.name.startswith("vibe-mini-") and {p.name for p in out.iterdir()} == {CONFIG_FILE, "model.safetensors"}
    assert f"--backbone {out}" in capsys.readouterr().out
    meta = json.loads((out / CONFIG_FILE).read_text())
    assert meta["excluded"] == {"catalogues": [str(small_catalog)], "items": 300}
    assert meta["report"]["n_train"] + meta["report"]["n_report"] < 150  # the excluded items were left out

    # --out replaces a folder as a whole: the new weights and config together, nothing half-written beside them
    target = tmp_path / "named"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    assert main([*args, "--out", str(target)]) == 0
    assert {p.name for p in target.iterdir()} == {CONFIG_FILE, "model.safetensors"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    Encoder(str(target))


def test_a_crash_while_saving_a_checkpoint_leaves_the_old_one_whole(tmp_path, monkeypatch):
    import vibe.train.mini

    out = tmp_path / "mini"
    cfg = MiniConfig(epochs=1, resolution=32, width=8, batch_size=64)
    train_mini(CatalogConfig(root=SAMPLE, limit=100), out, cfg)
    before = _digest(out)

    def crash(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vibe.train.mini, "write_json", crash)  # the weights are written, then the config write fails
    with pytest.raises(VibeError, match="No space left on device.*untouched"):
        train_mini(CatalogConfig(root=SAMPLE, limit=100), out, MiniConfig(epochs=1, resolution=32, width=8, batch_size=64, seed=1))
    assert _digest(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["mini"]


def test_re_shot_views_tilt_the_product_and_cast_a_mild_white_balance_but_leave_it_out_when_asked():
    import torch

    from vibe.train.composite import reshoot, tilt, white_balance

    x = torch.ones(6, 3, 64, 64)
    alpha = torch.zeros(6, 1, 64, 64)
    x[:, :, 16:48, 16:48] = torch.tensor([0.8, 0.3, 0.2]).view(3, 1, 1)  # a rust-red square on white
    alpha[:, :, 16:48, 16:48] = 1
    gen = torch.Generator().manual_seed(0)
    # a tilt moves the square's corners (never more than `most` of the side) and keeps it a product: zero outside it
    product, mask = tilt(x * alpha, alpha, gen, 0.08, p=1.0)
    moved = (mask - alpha).abs().sum((1, 2, 3))
    assert bool((moved > 5).all()) and float(mask.sum((1, 2, 3)).min()) > 0.6 * 32 * 32
    assert bool(((mask < 0.5) <= (product.sum(1, keepdim=True) < 1.5)).all())
    same, _ = tilt(x * alpha, alpha, gen, 0.0, p=1.0)
    assert torch.allclose(same, x * alpha, atol=1e-4)
    # channel gains stay within 1 +- most: a rust red stays red (the colour label is kept)
    cast = white_balance(x, gen, 0.08, p=1.0)
    gains = cast[:, :, 30, 30] / x[:, :, 30, 30]
    assert float((gains - 1).abs().max()) <= 0.08 + 1e-6 and float((gains - 1).abs().max()) > 0.01
    assert bool((cast[:, 0, 30, 30] > cast[:, 1, 30, 30]).all())
    # 0 leaves either out and draws nothing for it: a recipe without them makes the same views as before
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(reshoot(x, alpha, a), reshoot(x, alpha, b, 0.0, 0.0))
    assert not torch.equal(reshoot(x, alpha, torch.Generator().manual_seed(5), 0.08, 0.08),
                           reshoot(x, alpha, torch.Generator().manual_seed(5)))
