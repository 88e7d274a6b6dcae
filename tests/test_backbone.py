import io
import pickle

import numpy as np
import pytest
from conftest import SAMPLE
from PIL import Image

from vibe import Encoder
from vibe.errors import VibeError
from vibe.models.registry import FASHION_CLIP_ID
from vibe.util.images import ImageError


def _some_images(n=6):
    root = SAMPLE
    return sorted((root / "images").iterdir())[:n]


def test_local_clip_folder_loads_through_from_pretrained(tiny_clip_dir):
    enc = Encoder(str(tiny_clip_dir))
    assert enc.kind == "clip" and enc.dim == 512
    assert enc.source == str(tiny_clip_dir)
    assert enc.preprocess.crop == 32  # read from the saved preprocessor_config.json
    emb = enc.encode_images(_some_images(), batch_size=4)
    assert emb.shape == (6, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)


def test_fingerprint_follows_the_weights(tiny_clip_dir):
    a, b = Encoder(str(tiny_clip_dir)), Encoder("tiny-random")  # same architecture, different seed
    assert a.fingerprint != b.fingerprint
    assert Encoder(str(tiny_clip_dir)).fingerprint == a.fingerprint


def test_preprocessing_matches_the_transformers_image_processor(tiny_clip_dir):
    from transformers import CLIPImageProcessor

    enc = Encoder(str(tiny_clip_dir))
    processor = CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    im = Image.open(_some_images(1)[0]).convert("RGB").resize((60, 80))
    ours = enc.preprocess(im).numpy()
    theirs = processor(images=[im], return_tensors="pt")["pixel_values"][0].numpy()
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 0.05  # same resize/crop/normalise up to resampling rounding


def test_paths_bytes_and_pil_images_embed_identically(tiny_encoder):
    path = _some_images(1)[0]
    data = path.read_bytes()
    by_path, by_bytes, by_pil = tiny_encoder.encode_images([path, data, Image.open(io.BytesIO(data))])
    np.testing.assert_allclose(by_path, by_bytes, atol=1e-6)
    np.testing.assert_allclose(by_path, by_pil, atol=1e-6)
    np.testing.assert_allclose(tiny_encoder.encode_image(path), by_path, atol=1e-5)


def test_batching_does_not_change_embeddings(tiny_encoder):
    imgs = _some_images(7)
    np.testing.assert_allclose(tiny_encoder.encode_images(imgs, batch_size=3), tiny_encoder.encode_images(imgs, batch_size=7), atol=1e-5)


def test_views_are_prepared_one_batch_at_a_time_and_embed_as_in_one_batch(tiny_encoder, monkeypatch):
    # an evaluation or a build's calibration embeds thousands of views: the model's input of all of them at once is GBs
    views = [Image.open(p).convert("RGB") for p in _some_images(7)]
    whole = tiny_encoder.embed_many(tiny_encoder.pixels(views), batch_size=7)
    sizes, pixels = [], tiny_encoder.pixels
    monkeypatch.setattr(tiny_encoder, "pixels", lambda vs: sizes.append(len(vs)) or pixels(vs))
    np.testing.assert_allclose(tiny_encoder.encode_views(views, batch_size=3), whole, atol=1e-5)
    assert sizes == [3, 3, 1]


def test_bad_image_raises_one_clear_error_or_is_reported(tiny_encoder, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    with pytest.raises(ImageError, match="not an image"):
        tiny_encoder.encode_images([bad])
    errors = []
    emb = tiny_encoder.encode_images([_some_images(1)[0], bad], on_error=lambda i, e: errors.append(i))
    assert errors == [1] and np.isnan(emb[1]).all() and not np.isnan(emb[0]).any()


def test_the_default_backbone_is_auto_everywhere_and_fashion_clip_fails_clearly_offline(monkeypatch):
    import inspect

    from vibe.config import BuildConfig, default_backbone

    monkeypatch.delenv("VIBE_BACKBONE", raising=False)
    assert default_backbone() == "auto" == BuildConfig().backbone
    assert inspect.signature(Encoder).parameters["name"].default is None  # None = default_backbone()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VibeError, match=f"{FASHION_CLIP_ID}.*hf download {FASHION_CLIP_ID}"):
        Encoder("fashion-clip")


def test_no_core_module_or_script_hard_codes_the_shared_folder():
    from conftest import REPO

    for path in [*(REPO / "vibe").rglob("*.py"), *(REPO / "scripts").iterdir()]:
        assert "shared/" not in path.read_text(), path


def test_a_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(VibeError, match="neither a CLIP config.json"):
        Encoder(str(tmp_path))


def test_the_runtime_is_measured_once_and_keeps_cosine_above_0_99(tiny_clip_dir, monkeypatch):
    from vibe.models import runtime
    from vibe.models.backbone import bf16_native

    fast, exact = Encoder(str(tiny_clip_dir)), Encoder(str(tiny_clip_dir), precision="fp32")
    assert exact.precision == "fp32" and fast.fingerprint == exact.fingerprint
    assert fast.precision in runtime.RUNTIMES and (fast.precision != "bf16" or bf16_native())
    assert fast.runtime.cosine >= 0.99 and "fastest" in fast.runtime.why
    # ONNX Runtime is a requirement: its three runtimes are always candidates, each timed and checked
    assert set(fast.runtime.timings) >= {"fp32", "int8", "int8-static", "onnx-fp32", "int8-static_cosine"}
    assert fast.info()["runtime"]["name"] == fast.precision  # recorded in every manifest
    images = _some_images(6)
    cos = (fast.encode_images(images) * exact.encode_images(images)).sum(axis=1)
    assert cos.min() >= 0.99

    # remembered per machine and backbone: the next process does not measure again
    monkeypatch.setattr(runtime, "_measure", lambda *a: pytest.fail("measured twice"))
    assert Encoder(str(tiny_clip_dir)).runtime == fast.runtime

    forced = Encoder(str(tiny_clip_dir), precision="int8")  # the ONNX Runtime path itself, whatever auto chose
    assert forced.precision == "int8"
    q = forced.encode_images(images)
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-4) and (q * exact.encode_images(images)).sum(1).min() > 0.9
    assert Encoder("tiny-random").precision == "fp32"  # cheap backbones stay exact
    with pytest.raises(VibeError, match="precision must be"):
        Encoder("tiny-random", precision="int4")


def test_a_worker_spec_rebuilds_the_int8_encoder_without_the_backbone(tiny_clip_dir):
    driver = Encoder(str(tiny_clip_dir), precision="int8")
    spec = driver.worker_spec()
    assert isinstance(spec["onnx"], bytes) and "model" not in spec
    worker = Encoder.from_worker_spec(pickle.loads(pickle.dumps(spec)))  # as it travels to a Ray worker
    assert worker.fingerprint == driver.fingerprint and worker.info() == driver.info() and worker.model is None
    images = _some_images(4)
    np.testing.assert_allclose(worker.encode_images(images), driver.encode_images(images), atol=1e-5)
    assert Encoder(str(tiny_clip_dir), precision="fp32").worker_spec() is None  # torch runtimes: workers load it


def test_a_damaged_cached_int8_model_is_made_again(tiny_clip_dir):
    from vibe.models import runtime

    first = Encoder(str(tiny_clip_dir), precision="int8")
    cached = runtime.cache_dir() / f"{first._model_key}-int8.onnx"
    assert cached.is_file()
    cached.write_bytes(cached.read_bytes()[:100])  # truncated, as a full disk or a killed copy leaves it
    again = Encoder(str(tiny_clip_dir), precision="int8")
    images = _some_images(3)
    np.testing.assert_allclose(again.encode_images(images), first.encode_images(images), atol=1e-5)
    assert cached.stat().st_size > 100


def test_a_clip_downloaded_from_the_hub_gets_its_text_tower_from_the_hub_too(tiny_clip_dir, monkeypatch):
    import transformers

    import vibe.models.registry as registry

    real_model, real_tok = transformers.CLIPModel.from_pretrained, transformers.AutoTokenizer.from_pretrained
    asked = []

    def model(source, local_files_only=False, **kw):  # a machine whose cache lacks the model but whose hub answers
        if local_files_only:
            raise OSError("not in the local cache")
        return real_model(tiny_clip_dir)

    def tokenizer(source, local_files_only=False, **kw):
        asked.append(local_files_only)
        if local_files_only:
            raise OSError("not in the local cache")
        return real_tok(tiny_clip_dir)

    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(transformers.utils, "cached_file", lambda *a, **k: str(tiny_clip_dir / "preprocessor_config.json"))
    monkeypatch.setattr(registry, "hub_reachable", lambda timeout=3.0: True)
    parts = registry.load_clip("someone/some-clip")
    assert parts.text is not None and asked == [False]  # fetched where the weights came from, not looked up offline


@pytest.mark.parametrize("precision", ["int8", "int8-static", "onnx-fp32"])
def test_an_onnx_embedding_does_not_depend_on_the_other_images_of_its_batch(tiny_clip_dir, precision):
    # dynamic int8 quantisation scales each activation by its tensor's range: batched together, images would change
    # each other's embeddings (cosine 0.991 here between alone and in a batch of 16, on an AVX2 CPU); static int8 and
    # fp32 run a batch as one tensor, and must not
    encoder = Encoder(str(tiny_clip_dir), precision=precision)
    assert float((encoder.encode_images(_some_images(4)) * Encoder(str(tiny_clip_dir), precision="fp32").encode_images(
        _some_images(4))).sum(axis=1).min()) > 0.9  # the same network (a tiny random one quantises coarsely)
    images = _some_images(16)
    batched = encoder.encode_images(images, batch_size=16)
    for size in (1, 3, 8):
        assert float((encoder.encode_images(images, batch_size=size) * batched).sum(axis=1).min()) >= 0.99999
    query = encoder.encode_image(images[5])  # a query is one image on its own: it meets its catalogue embedding
    assert float(query @ batched[5]) >= 0.99999
