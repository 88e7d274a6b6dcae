import numpy as np
from conftest import SAMPLE

from vibe.store.cache import EmbeddingStore, embed_files


def test_second_pass_embeds_nothing_and_changed_images_are_re_embedded(tiny_encoder, tmp_path):
    src = sorted((SAMPLE / "images").iterdir())[:12]
    paths = []
    for p in src:
        (tmp_path / p.name).write_bytes(p.read_bytes())
        paths.append(tmp_path / p.name)
    store = EmbeddingStore(tmp_path / "cache", tiny_encoder.fingerprint, tiny_encoder.dim)
    first, hashes, stats = embed_files(tiny_encoder, paths, store)
    assert stats.embedded == 12 and stats.reused == 0 and not stats.failed

    reopened = EmbeddingStore(tmp_path / "cache", tiny_encoder.fingerprint, tiny_encoder.dim)
    calls = []
    original = tiny_encoder.embed_pixels
    tiny_encoder.embed_pixels = lambda px: calls.append(len(px)) or original(px)
    try:
        again, _, stats2 = embed_files(tiny_encoder, paths, reopened)
        assert calls == [] and stats2.embedded == 0 and stats2.reused == 12
        np.testing.assert_array_equal(first, again)

        paths[0].write_bytes(src[5].read_bytes())  # the same name, content the cache knows under another name
        _, hashes3, stats3 = embed_files(tiny_encoder, paths, reopened)
        assert hashes3[0] == hashes[5] and stats3.embedded == 0 and calls == []
        fresh = sorted((SAMPLE / "images").iterdir())[40]
        paths[1].write_bytes(fresh.read_bytes())  # the same name, content never seen: embedded, once
        changed, hashes4, stats4 = embed_files(tiny_encoder, paths, reopened)
    finally:
        tiny_encoder.embed_pixels = original
    assert stats4.embedded == 1 and stats4.reused == 11 and calls == [1] and hashes4[1] != hashes[1]
    np.testing.assert_allclose(changed[1], tiny_encoder.encode_images([fresh])[0], atol=1e-6)
    assert not np.allclose(changed[1], first[1])


def test_unreadable_files_are_reported_not_fatal(tiny_encoder, tmp_path):
    good = sorted((SAMPLE / "images").iterdir())[0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    missing = tmp_path / "missing.jpg"
    store = EmbeddingStore(tmp_path / "cache", tiny_encoder.fingerprint, tiny_encoder.dim)
    emb, _, stats = embed_files(tiny_encoder, [good, bad, missing], store)
    assert sorted(r for r, _ in stats.failed) == [1, 2]
    assert not np.isnan(emb[0]).any() and np.isnan(emb[1:]).all()
    assert any("no such file" in m for _, m in stats.failed)


def test_a_damaged_shard_is_only_a_cache_miss(tiny_encoder, tmp_path):
    store = EmbeddingStore(tmp_path, "fp", 4)
    store.add(["a" * 32], np.ones((1, 4), np.float32))
    shard = next((tmp_path / "fp").glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:20])
    assert len(EmbeddingStore(tmp_path, "fp", 4)) == 0


def test_two_writers_never_overwrite_or_delete_each_others_shards(tmp_path, monkeypatch):
    from contextlib import contextmanager

    import vibe.store.cache

    a, b = EmbeddingStore(tmp_path, "fp", 4), EmbeddingStore(tmp_path, "fp", 4)  # a build and an eval, say
    real = vibe.store.cache.atomic_path

    @contextmanager
    def b_writes_meanwhile(target):  # b saves its shard while a's is still being written (two processes at once)
        monkeypatch.setattr(vibe.store.cache, "atomic_path", real)
        b.add(["b" * 32], np.full((1, 4), 2.0, np.float32))
        with real(target) as tmp:
            yield tmp

    monkeypatch.setattr(vibe.store.cache, "atomic_path", b_writes_meanwhile)
    a.add(["a" * 32], np.full((1, 4), 1.0, np.float32))
    both = EmbeddingStore(tmp_path, "fp", 4)
    assert len(both) == 2 and both.get(["a" * 32])[0, 0] == 1.0 and both.get(["b" * 32])[0, 0] == 2.0
    monkeypatch.setattr(vibe.store.cache, "MAX_SHARDS", 1)
    a.add(["c" * 32], np.full((1, 4), 3.0, np.float32))
    a.compact()  # merges what a holds (a..., c...), leaves b's shard, which a never read
    after = EmbeddingStore(tmp_path, "fp", 4)
    assert len(after) == 3 and after.get(["b" * 32])[0, 0] == 2.0
    assert len(list((tmp_path / "fp").glob("shard-*.npz"))) == 2
