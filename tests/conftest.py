"""Shared fixtures: a tiny random CLIP saved to disk, a real catalogue from the shipped sample, a built workdir.

The default suite uses only what a fresh clone has (data/sample). Tests that need ../shared/data/fashion-small are
marked `shared` (`pytest -m shared` runs just those) and skip with a reason where it is absent."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "fashion-small"
SAMPLE = REPO / "data" / "sample"



def requires_shared(test):
    """Mark a test that needs ../shared/data/fashion-small: it runs under `-m shared` and skips without the data."""
    skip = pytest.mark.skipif(not (SHARED / "styles.csv").is_file(),
                              reason="../shared/data/fashion-small is absent (a fresh clone without the shared data set)")
    return pytest.mark.shared(skip(test))


def product_cutout(index: int = 4):
    """Sample photo number `index` (sorted by name) at 180 x 240, its product cut out (RGBA)."""
    from PIL import Image

    from vibe.locate.framing import cutout

    return cutout(Image.open(sorted((SAMPLE / "images").iterdir())[index]).convert("RGB").resize((180, 240)))


def two_products_on_noise():
    """Two catalogue products of a size pasted on noise (no plain backdrop to frame): both among the proposals a default
    search tries."""
    import numpy as np
    from PIL import Image

    busy = Image.fromarray(np.random.default_rng(1).integers(0, 255, (400, 500, 3), dtype=np.uint8))
    for index, at in ((4, (40, 80)), (9, (280, 100))):
        product = product_cutout(index)
        busy.paste(product, at, product)
    return busy


def pytest_configure(config):
    config.addinivalue_line("markers", "shared: needs ../shared/data/fashion-small (extra real-data tests)")
    # runtime choices and quantised models go to a fresh folder, never the user's ~/.cache/vibe (subprocesses inherit it)
    os.environ["VIBE_CACHE_DIR"] = tempfile.mkdtemp(prefix="vibe-test-cache-")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIP + its image processor, saved with save_pretrained so from_pretrained runs for real."""
    from transformers import CLIPImageProcessor

    from vibe.models.registry import TINY_PREPROCESS, tiny_clip_model

    out = tmp_path_factory.mktemp("tiny-clip")
    tiny_clip_model(seed=1).save_pretrained(out)
    CLIPImageProcessor(**TINY_PREPROCESS).save_pretrained(out)
    tiny_tokenizer().save_pretrained(out)  # CLIPTokenizer's vocab files come from the hub: a word-level one instead
    return out


def tiny_tokenizer():
    """A word-level tokenizer built with `tokenizers` for the tiny CLIP's 99-token text tower (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ("white red black blue navy green grey brown pink yellow men women boys girls unisex casual formal sports "
             "ethnic party shirt shirts tshirts shoes sports-shoes sneakers jeans kurta dress heels watch bag cap").split()
    vocab = {"<bos>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", 0), ("<eos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<eos>")


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory) -> Path:
    """A real 300-item catalogue copied from data/sample into a temp folder (safe to modify), with its styles.csv rows."""
    from vibe.catalog.reader import load_catalog

    src = SAMPLE
    cat = load_catalog(src)
    items = cat.items.iloc[::max(1, len(cat.items) // 300)].head(300)
    out = tmp_path_factory.mktemp("catalog")
    (out / "images").mkdir()
    for p in items["path"]:
        shutil.copy(src / p, out / p)
    keep = set(items["id"].astype(str))
    lines = (src / "styles.csv").read_text(encoding="utf-8").splitlines()
    body = [ln for ln in lines[1:] if ln.split(",", 1)[0] in keep]
    (out / "styles.csv").write_text("\n".join([lines[0], *body]) + "\n", encoding="utf-8")
    return out


def fast_build_config(data: Path, workdir: Path, audit_folds: int = 0, **catalog):
    """A build that takes seconds: the tiny backbone, short training, a small ranking check, no label audit."""
    from vibe.config import (
        BuildConfig,
        CatalogConfig,
        HeadsConfig,
        ProjectionConfig,
        QualityConfig,
    )

    return BuildConfig(catalog=CatalogConfig(root=data, **catalog), backbone="tiny-random", workdir=workdir,
                       heads=HeadsConfig(epochs=40, patience=5, min_class_count=5, audit_folds=audit_folds),
                       projection=ProjectionConfig(epochs=2), quality=QualityConfig(per_change=8))


@pytest.fixture(scope="session")
def built(tmp_path_factory, small_catalog):
    """A workdir built on the small real catalogue with the tiny backbone: (workdir, BuildResult)."""
    from vibe.build.pipeline import build

    workdir = tmp_path_factory.mktemp("work")
    return workdir, build(fast_build_config(small_catalog, workdir, audit_folds=3))


@pytest.fixture(scope="session")
def tiny_encoder():
    from vibe.models.encoder import Encoder

    return Encoder("tiny-random")


@pytest.fixture(scope="session")
def built_mini(tmp_path_factory, small_catalog):
    """A build with the shipped vibe-mini (trained embeddings: its calibration and style space mean something), a ranking
    check of 40 held-out photos per change and the default style-space training: (workdir, BuildResult)."""
    from dataclasses import replace

    from vibe.build.pipeline import build
    from vibe.config import ProjectionConfig, QualityConfig

    workdir = tmp_path_factory.mktemp("work-mini")
    cfg = fast_build_config(small_catalog, workdir)
    return workdir, build(replace(cfg, backbone="vibe-mini", projection=ProjectionConfig(), quality=QualityConfig(per_change=40)))
